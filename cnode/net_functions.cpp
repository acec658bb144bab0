// The distribution's controls that tests and operators call over rpc, as on a BEAM node: erlang:set_cookie/1,2,
// get_cookie/0,1 (erlang.erl:3834, auth.erl), erlang:disconnect_node/1 and net_kernel:disconnect/1
// (net_kernel.erl:744), net_kernel:connect_node/1 and net_adm:ping/1 (net_adm.erl:61). This is what the schism
// library uses to cut a node off: a wrong cookie for a peer, then a disconnect. cnode is always distributed, so the
// `ignored` of a node without net_kernel never comes back, and setting a cookie never fails with
// distribution_not_started.
#include "cnode/builtins.hpp"
#include "cnode/gen_server.hpp"

namespace cnode {

namespace {

struct atoms {
  atom badarg{"badarg"}, function_clause{"function_clause"}, system_limit{"system_limit"}, pong{"pong"},
      pang{"pang"}, net_kernel{"net_kernel"}, is_auth{"is_auth"}, yes{"yes"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

// What the handshake digests for a cookie atom: atom_to_list(Cookie) (dist_util.erl gen_digest), so the Latin-1
// bytes of a Latin-1 atom (the BEAM cannot digest any other; cnode then digests its UTF-8).
std::string cookie_text(atom a) {
  const std::string_view t = a.text();
  if (!a.latin1()) return std::string(t);
  std::string out;
  out.reserve(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    const auto b = static_cast<unsigned char>(t[i]);
    if (b < 0x80 || i + 1 == t.size()) {
      out += static_cast<char>(b);
    } else {
      out += static_cast<char>(((b & 0x1F) << 6) | (static_cast<unsigned char>(t[++i]) & 0x3F));
    }
  }
  return out;
}

term cookie_atom(const std::string& c) {
  if (auto u = atom::from_utf8(c); u && !u->latin1()) return term(*u);  // set from a non-Latin-1 atom
  if (auto l = atom::from_latin1(c)) return term(*l);
  erl_error(term(at().system_limit));  // a cookie file longer than an atom: the BEAM would not have started
}

atom node_arg(const term& t, atom reason) {
  if (!t.is_atom()) erl_error(term(reason));
  return t.atom_value();
}

}  // namespace

void add_net_functions(node& n, distribution& d, function_table& fns) {
  fns.add("erlang", "set_cookie", 1, [&d](process&, std::vector<term> a) -> asio::awaitable<term> {
    if (!a[0].is_atom()) erl_error(term(at().badarg));
    d.set_cookie(cookie_text(a[0].atom_value()));
    co_return term(true);
  });
  fns.add("erlang", "set_cookie", 2, [&d](process&, std::vector<term> a) -> asio::awaitable<term> {
    if (!a[0].is_atom() || a[0].atom_value() == atom::nonode() || !a[1].is_atom()) erl_error(term(at().badarg));
    d.set_cookie(a[0].atom_value(), cookie_text(a[1].atom_value()));  // our own name: our cookie (auth.erl)
    co_return term(true);
  });
  fns.add("erlang", "get_cookie", 0,
          [&d](process&, std::vector<term>) -> asio::awaitable<term> { co_return cookie_atom(d.cookie()); });
  fns.add("erlang", "get_cookie", 1, [&d](process&, std::vector<term> a) -> asio::awaitable<term> {
    co_return cookie_atom(d.cookie(node_arg(a[0], at().badarg)));
  });

  // true once the connection is down here; false for this node, a node not connected, or a term that is no atom
  // (net_kernel looks it up in sys_dist and finds nothing).
  auto disconnect = [&n, &d](process&, std::vector<term> a) -> asio::awaitable<term> {
    if (!a[0].is_atom() || a[0].atom_value() == n.name_atom()) co_return term(false);
    co_return term(co_await d.disconnect_node(a[0].atom_value()));
  };
  fns.add("erlang", "disconnect_node", 1, disconnect);
  fns.add("net_kernel", "disconnect", 1, disconnect);

  fns.add("net_kernel", "connect_node", 1, [&n, &d](process&, std::vector<term> a) -> asio::awaitable<term> {
    const atom node = node_arg(a[0], at().function_clause);
    if (node == n.name_atom()) co_return term(true);
    co_return term(co_await d.connect(node));
  });

  // net_adm:ping/1: gen:call({net_kernel, Node}, {is_auth, node()}, infinity); anything but yes disconnects and is
  // pang. The connect comes first and is explicit, so that a ping always dials (a send would wait out the back-off
  // after a failed connect, which the BEAM does not have).
  fns.add("net_adm", "ping", 1, [&n, &d](process& self, std::vector<term> a) -> asio::awaitable<term> {
    const atom node = node_arg(a[0], at().function_clause);
    if (node == n.name_atom()) co_return term(at().pong);
    if (!co_await d.connect(node)) co_return term(at().pang);
    const term dest = term::tuple({term(at().net_kernel), term(node)});
    const term request = term::tuple({term(at().is_auth), term(n.name_atom())});
    auto r = co_await gen::call(self, dest, request, infinity);
    if (r.ok && r.reply.is_atom(at().yes)) co_return term(at().pong);
    co_await d.disconnect_node(node);
    co_return term(at().pang);
  });
}

}  // namespace cnode
