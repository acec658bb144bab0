#include "cnode/builtins.hpp"

#include "cnode/gen.hpp"
#include "cnode/gen_server.hpp"
#include "cnode/log.hpp"
#include "cnode/rpc.hpp"

namespace cnode {

namespace {

struct atoms {
  atom is_auth{"is_auth"}, yes{"yes"}, net_kernel{"net_kernel"}, echo{"echo"}, undefined{"undefined"},
      visible{"visible"}, hidden{"hidden"}, connected{"connected"}, this_{"this"}, known{"known"}, badarg{"badarg"},
      ok{"ok"}, error{"error"}, probe{"probe"}, link{"link"}, unlink{"unlink"}, monitor{"monitor"},
      demonitor{"demonitor"}, trap_exit{"trap_exit"}, exit{"exit"}, send{"send"}, call{"call"},
      register_{"register"}, alias{"alias"}, stop{"stop"}, infinity{"infinity"}, normal{"normal"},
      unknown_call{"unknown_call"}, sleep{"sleep"}, crash{"crash"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

// net_kernel: answers {is_auth, Node} with yes (net_kernel.erl:791), which is what net_adm:ping/1 asks.
asio::awaitable<void> net_kernel(process& self) {
  for (;;) {
    auto m = co_await self.receive();
    gen::incoming_call c;
    if (gen::is_call(*m, c)) {
      if (c.request.is_tuple(2) && c.request.element(0).is_atom(at().is_auth)) {
        gen::reply(self, c.from, term(at().yes));
      } else {
        log::debug("net_kernel: unhandled call");
      }
    }
  }
}

// echo: GenServer.call({:echo, node}, t) returns t; send({:echo, node}, {pid, t}) sends t to pid.
asio::awaitable<void> echo(process& self) {
  for (;;) {
    auto m = co_await self.receive();
    gen::incoming_call c;
    if (gen::is_call(*m, c)) {
      gen::reply(self, c.from, std::move(c.request));
    } else if (m->is_tuple(2) && m->element(0).is_pid()) {
      self.send(m->element(0), m->element(1));
    }
  }
}

void spawn_registered(node& n, atom name, process::body_type body) {
  if (!n.spawn_registered(name, std::move(body))) log::error("could not register {}", name.text());
}

term atoms_list(const std::vector<atom>& v) {
  std::vector<term> out;
  out.reserve(v.size());
  for (atom a : v) out.emplace_back(a);
  return term::list(std::move(out));
}

template <typename F>
function_body sync(F f) {
  return [f](process& self, std::vector<term> args) -> asio::awaitable<term> { co_return f(self, args); };
}

std::chrono::milliseconds to_timeout(const term& t) {
  if (t.is_atom(at().infinity)) return infinity;
  if (t.is_small() && t.small() >= 0) return std::chrono::milliseconds(t.small());
  return std::chrono::milliseconds(5000);
}

// One message to the probe. A coroutine of its own, so that what the probe holds while it waits for the next
// message is only probe()'s small frame (a coroutine frame keeps every local of every branch). msg is probe()'s,
// taken by reference (a term passed by value would be one more temporary in probe()'s frame).
asio::awaitable<void> probe_message(process& self, const term& owner, term& msg) {
  gen::incoming_call c;
  if (!gen::is_call(msg, c)) {
    self.send(owner, term::tuple({term(at().probe), self.pid(), std::move(msg)}));
    co_return;
  }
  const term& r = c.request;
  auto is = [&](atom tag, std::size_t arity) { return r.is_tuple(arity) && r.element(0).is_atom(tag); };
  term reply(at().ok);
  if (is(at().link, 2)) {
    self.link(r.element(1));
  } else if (is(at().unlink, 2)) {
    self.unlink(r.element(1));
  } else if (is(at().monitor, 2)) {
    reply = self.monitor(r.element(1));
  } else if (is(at().demonitor, 2)) {
    self.demonitor(r.element(1));
  } else if (is(at().trap_exit, 2)) {
    reply = term(self.trap_exit(r.element(1).is_atom(atom::true_())));
  } else if (is(at().exit, 2)) {
    gen::reply(self, c.from, term(at().ok));
    self.exit(r.element(1));
  } else if (is(at().exit, 3)) {
    self.exit(r.element(1), r.element(2));
  } else if (is(at().send, 3)) {
    self.send(r.element(1), r.element(2));
  } else if (is(atom("cast"), 3)) {
    gen::cast(self, r.element(1), r.element(2));
  } else if (is(at().call, 4)) {
    auto res = co_await gen::call(self, r.element(1), r.element(2), to_timeout(r.element(3)));
    reply = res.ok ? term::tuple({term(at().ok), res.reply}) : term::tuple({term(at().error), res.reason});
  } else if (is(at().register_, 2) && r.element(1).is_atom()) {
    if (!self.register_name(r.element(1).atom_value())) reply = term(at().badarg);
  } else if (is(at().sleep, 2) && r.element(1).is_small()) {
    // For tests of callers' timeouts: the reply comes after Ms milliseconds.
    // Named first: a lambda turned into a std::function inside a co_await expression is destroyed twice (GCC 12).
    std::function<bool(const term&)> none = [](const term&) { return false; };
    co_await self.receive(none, std::chrono::milliseconds(r.element(1).small()));
  } else if (is(at().crash, 2)) {
    self.exit(r.element(1));  // dies mid-call, without a reply
  } else if (r.is_atom(at().alias)) {
    reply = self.alias();
  } else if (r.is_atom(at().stop)) {
    gen::reply(self, c.from, term(at().ok));
    self.exit(term(at().normal));
  } else if (auto ext = self.node().probe_calls().find(r)) {
    reply = co_await (*ext)(self, r);
  } else {
    reply = term::tuple({term(at().error), term(at().unknown_call)});
  }
  gen::reply(self, c.from, std::move(reply));
}

// owner is the body's capture (spawn_probe's lambda, which the process keeps, in place, until the body is done):
// a reference to it in the frame, not a copy.
asio::awaitable<void> probe(process& self, const term& owner) {
  for (;;) {
    auto msg = co_await self.receive();
    co_await probe_message(self, owner, *msg);
  }
}

void add_builtin_functions(node& n, distribution& d, function_table& fns) {
  // For bench/runtime (node-to-node message rates): cnode:bench_sink(Owner, N) spawns a process that takes N
  // messages, then sends {sink_done, self()} to Owner; cnode:bench_flood(Dest, N, Msg) spawns a process that sends
  // Msg to Dest N times (suspending on a busy connection as a BEAM sender would).
  fns.add("cnode", "bench_sink", 2, sync([&n](process&, const std::vector<term>& a) {
            if (!a[0].is_pid() || !a[1].is_small() || a[1].small() < 0) erl_error(term(at().badarg));
            const term owner = a[0];
            const std::int64_t count = a[1].small();
            return n.spawn([owner, count](process& self) -> asio::awaitable<void> {
              for (std::int64_t i = 0; i < count; ++i) co_await self.receive();
              self.send(owner, term::tuple({term(atom("sink_done")), self.pid()}));
            });
          }));
  fns.add("cnode", "bench_flood", 3, sync([&n](process&, const std::vector<term>& a) {
            if (!a[1].is_small() || a[1].small() < 0) erl_error(term(at().badarg));
            const term dest = a[0], msg = a[2];
            const std::int64_t count = a[1].small();
            n.spawn([dest, msg, count](process& self) -> asio::awaitable<void> {
              for (std::int64_t i = 0; i < count; ++i) {
                self.send(dest, msg);
                if (i % 256 == 255) co_await self.receive(std::chrono::milliseconds(0));  // a busy connection
              }
            });
            return term(at().ok);
          }));
  fns.add("erlang", "node", 0, sync([&n](process&, const std::vector<term>&) { return term(n.name_atom()); }));
  fns.add("erlang", "nodes", 0,
          sync([&d](process&, const std::vector<term>&) { return atoms_list(d.nodes(true, false)); }));
  fns.add("erlang", "nodes", 1, sync([&n, &d](process&, const std::vector<term>& a) {
            std::vector<term> kinds;
            if (a[0].is_atom()) kinds.push_back(a[0]);
            else if (!a[0].list_to_vector(kinds)) erl_error(term(at().badarg));
            bool vis = false, hid = false, self_too = false;
            for (const auto& k : kinds) {
              if (k.is_atom(at().visible)) vis = true;
              else if (k.is_atom(at().hidden)) hid = true;
              else if (k.is_atom(at().connected) || k.is_atom(at().known)) vis = hid = true;
              else if (k.is_atom(at().this_)) self_too = true;
              else erl_error(term(at().badarg));
            }
            std::vector<atom> out;
            if (self_too) out.push_back(n.name_atom());
            for (atom x : d.nodes(vis, hid)) out.push_back(x);
            return atoms_list(out);
          }));
  fns.add("erlang", "registered", 0,
          sync([&n](process&, const std::vector<term>&) { return atoms_list(n.registered()); }));
  fns.add("erlang", "whereis", 1, sync([&n](process&, const std::vector<term>& a) {
            if (!a[0].is_atom()) erl_error(term(at().badarg));
            auto p = n.whereis(a[0].atom_value());
            return p ? *p : term(at().undefined);
          }));
  fns.add("erlang", "is_process_alive", 1, sync([&n](process&, const std::vector<term>& a) {
            if (!a[0].is_pid() || !n.is_local(a[0])) erl_error(term(at().badarg));
            return term(n.find(a[0]) != nullptr);
          }));
  fns.add("erlang", "send", 2, sync([](process& self, const std::vector<term>& a) {
            self.send(a[0], a[1]);
            return a[1];
          }));
  fns.add("erlang", "processes", 0,
          sync([&n](process&, const std::vector<term>&) { return term::list(n.processes()); }));
  fns.add("cnode", "info", 0, sync([&n, &d](process&, const std::vector<term>&) {
            std::uint64_t bytes_in = 0, bytes_out = 0;
            auto conns = d.connections();
            for (const auto& c : conns) {
              bytes_in += c.stats.bytes_in;
              bytes_out += c.stats.bytes_out;
            }
            auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                                 n.started());
            auto& k = n.counters();
            return term::map({
                {term(atom("node")), term(n.name_atom())},
                {term(atom("creation")), term(n.creation())},
                {term(atom("uptime_ms")), term(static_cast<std::int64_t>(uptime.count()))},
                {term(atom("connections")), term(conns.size())},
                {term(atom("visible_nodes")), atoms_list(d.nodes(true, false))},
                {term(atom("hidden_nodes")), atoms_list(d.nodes(false, true))},
                {term(atom("processes")), term(n.process_count())},
                {term(atom("messages_in")), term(k.messages_in.load())},
                {term(atom("messages_out")), term(k.messages_out.load())},
                {term(atom("local_messages")), term(k.local_messages.load())},
                {term(atom("bytes_in")), term(bytes_in)},
                {term(atom("bytes_out")), term(bytes_out)},
            });
          }));
  fns.add("cnode", "spawn_probe", 1, sync([&n](process&, const std::vector<term>& a) {
            if (!a[0].is_pid()) erl_error(term(at().badarg));
            return spawn_probe(n, a[0]);
          }));
}

}  // namespace

term spawn_probe(node& n, const term& owner) {
  // Not a coroutine: the probe's frame is the only one. The lambda (16 bytes) is kept in place by the process's
  // body, and probe() refers to its owner there.
  return n.spawn([owner](process& self) { return probe(self, owner); });
}

void start_builtins(node& n, distribution& d, function_table& functions) {
  add_builtin_functions(n, d, functions);
  add_introspection_functions(n, functions);
  add_net_functions(n, d, functions);
  spawn_registered(n, at().net_kernel, net_kernel);
  spawn_registered(n, at().echo, echo);
  start_rpc(n, d, functions);
}

}  // namespace cnode
