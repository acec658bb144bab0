#include "cnode/rpc.hpp"

#include "cnode/gen.hpp"
#include "cnode/log.hpp"

namespace cnode {

namespace {

struct atoms {
  atom erpc{"erpc"}, execute_call{"execute_call"}, execute_cast{"execute_cast"}, link{"link"}, monitor{"monitor"},
      ret{"return"}, throw_{"throw"}, exit{"exit"}, error{"error"}, badrpc{"badrpc"}, exit_tag{"EXIT"},
      call{"call"}, block_call{"block_call"}, cast{"cast"}, rex{"rex"}, features_request{"features_request"},
      features_reply{"features_reply"}, exception{"exception"}, undef{"undef"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

// The reason an erpc:execute_call/4 process exits with (erpc.erl:587).
term erpc_reply(const term& ref, const call_outcome& o) {
  switch (o.k) {
    case call_outcome::kind::value: return term::tuple({ref, term(at().ret), o.value});
    case call_outcome::kind::throw_: return term::tuple({ref, term(at().throw_), o.value});
    case call_outcome::kind::exit: return term::tuple({ref, term(at().exit), o.value});
    case call_outcome::kind::error:
      if (o.stack.is_nil()) return term::tuple({ref, term(at().error), term::tuple({term(at().erpc), o.value})});
      return term::tuple({ref, term(at().error), o.value, o.stack});
  }
  return term();
}

bool has_option(const term& opts, atom a) {
  for (const term* c = &opts; c->is_cons(); c = &c->list_segment_tail())
    for (const term& e : c->list_segment())
      if (e.is_atom(a)) return true;
  return false;
}

void handle_spawn_request(node& n, distribution& d, const function_table& fns, atom from_node,
                          dist::spawn_request_msg req, term args) {
  const bool link = has_option(req.opt_list, at().link);
  const bool mon = has_option(req.opt_list, at().monitor);
  std::vector<term> argv;
  args.list_to_vector(argv);
  const term& mfa = req.mfa;
  const bool is_erpc = mfa.is_tuple(3) && mfa.element(0).is_atom(at().erpc);
  process::body_type body;
  if (is_erpc && mfa.element(1).is_atom(at().execute_call) && argv.size() == 4) {
    body = [&fns, argv](process& self) -> asio::awaitable<void> {
      call_outcome o = co_await fns.apply(self, argv[1], argv[2], argv[3]);
      self.set_exit_reason(erpc_reply(argv[0], o));
    };
  } else if (is_erpc && mfa.element(1).is_atom(at().execute_cast) && argv.size() == 3) {
    body = [&fns, argv](process& self) -> asio::awaitable<void> {
      call_outcome o = co_await fns.apply(self, argv[0], argv[1], argv[2]);
      if (o.k == call_outcome::kind::error) {
        log::warning("rpc cast failed");
        self.set_exit_reason(term::tuple({term(at().exception), term::tuple({o.value, o.stack})}));
      }
    };
  } else if (mfa.is_tuple(3)) {
    // spawn_request of a registered function itself: run it in the new process; an unknown one ends with undef.
    term m = mfa.element(0), f = mfa.element(1);
    body = [&fns, m, f, args](process& self) -> asio::awaitable<void> {
      call_outcome o = co_await fns.apply(self, m, f, args);
      if (o.k == call_outcome::kind::error) self.set_exit_reason(term::tuple({o.value, o.stack}));
      if (o.k == call_outcome::kind::exit) self.set_exit_reason(o.value);
    };
  } else {
    d.send_control(from_node, dist::control_message{dist::spawn_reply_msg{req.req_id, req.from, 0, term(atom("badarg"))},
                                                    {}, {}});
    return;
  }
  spawn_options opts;
  if (link) {
    opts.link = req.from;
    opts.link_silent = true;  // the requester links its side when it sees the link flag in the reply
  }
  if (mon) opts.monitored_by = std::make_pair(req.from, req.req_id);  // the monitor's ref is the request id
  const std::uint32_t flags = (link ? dist::spawn_reply_msg::flag_link : 0) |
                              (mon ? dist::spawn_reply_msg::flag_monitor : 0);
  opts.before_start = [&d, from_node, req, flags](const term& pid) {
    d.send_control(from_node, dist::control_message{dist::spawn_reply_msg{req.req_id, req.from, flags, pid}, {}, {}});
  };
  n.spawn(std::move(body), std::move(opts));
}

// A worker for one rex request, so that a slow function holds up nothing else.
void run_rex_call(node& n, const function_table& fns, term m, term f, term a, std::function<void(process&, term)> done) {
  n.spawn([&fns, m, f, a, done = std::move(done)](process& self) -> asio::awaitable<void> {
    call_outcome o = co_await fns.apply(self, m, f, a);
    done(self, rpc_result(o));
  });
}

asio::awaitable<void> rex(process& self, const function_table& fns) {
  node& n = self.node();
  for (;;) {
    auto msg = co_await self.receive();
    gen::incoming_call c;
    term req;
    if (gen::is_call(*msg, c)) {
      const term& r = c.request;
      if (r.is_tuple(5) && (r.element(0).is_atom(at().call) || r.element(0).is_atom(at().block_call))) {
        term from = c.from;
        run_rex_call(n, fns, r.element(1), r.element(2), r.element(3),
                     [from](process& worker, term result) { gen::reply(worker, from, std::move(result)); });
      }
    } else if (gen::is_cast(*msg, req)) {
      if (req.is_tuple(5) && req.element(0).is_atom(at().cast)) {
        run_rex_call(n, fns, req.element(1), req.element(2), req.element(3), [](process&, term) {});
      }
    } else if (msg->is_tuple(2) && msg->element(0).is_pid()) {
      const term& from = msg->element(0);
      const term& body = msg->element(1);
      if (body.is_atom(at().features_request)) {
        // rpc.erl:233
        self.send(from, term::tuple({term(at().features_reply), term(n.name_atom()), term::list({term(at().erpc)})}));
      } else if (body.is_tuple(5) && body.element(0).is_atom(at().call)) {
        // The C-node form: answered with {rex, Result} to the pid.
        run_rex_call(n, fns, body.element(1), body.element(2), body.element(3), [from](process& worker, term result) {
          worker.send(from, term::tuple({term(at().rex), std::move(result)}));
        });
      }
    }
  }
}

}  // namespace

term rpc_result(const call_outcome& o) {
  // rpc.erl:259 execute_call: a thrown value is returned as it is.
  switch (o.k) {
    case call_outcome::kind::value:
    case call_outcome::kind::throw_: return o.value;
    case call_outcome::kind::exit:
      return term::tuple({term(at().badrpc), term::tuple({term(at().exit_tag), o.value})});
    case call_outcome::kind::error:
      if (o.stack.is_nil()) return term::tuple({term(at().badrpc), term::tuple({term(at().exit_tag), o.value})});
      return term::tuple(
          {term(at().badrpc), term::tuple({term(at().exit_tag), term::tuple({o.value, o.stack})})});
  }
  return term();
}

void start_rpc(node& n, distribution& d, const function_table& functions) {
  d.set_spawn_handler([&n, &d, &functions](atom from_node, dist::spawn_request_msg req, term args) {
    handle_spawn_request(n, d, functions, from_node, std::move(req), std::move(args));
  });
  n.spawn_registered(at().rex, [&functions](process& self) -> asio::awaitable<void> { co_await rex(self, functions); });
}

}  // namespace cnode
