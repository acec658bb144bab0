#include "cnode/builtins.hpp"

#include "cnode/gen.hpp"
#include "cnode/log.hpp"

namespace cnode {

namespace {

struct atoms {
  atom is_auth{"is_auth"}, yes{"yes"}, features_request{"features_request"}, features_reply{"features_reply"},
      erpc{"erpc"}, net_kernel{"net_kernel"}, rex{"rex"}, echo{"echo"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

// net_kernel: answers {is_auth, Node} with yes (net_kernel.erl:791), which is what net_adm:ping/1 asks.
asio::awaitable<void> net_kernel(process& self) {
  for (;;) {
    auto m = co_await self.receive();
    gen::call c;
    if (gen::is_call(*m, c)) {
      if (c.request.is_tuple(2) && c.request.element(0).is_atom(at().is_auth)) {
        gen::reply(self, c.from, term(at().yes));
      } else {
        log::debug("net_kernel: unhandled call");
      }
    }
  }
}

// rex: {From, features_request} → From ! {features_reply, node(), [erpc]} (rpc.erl:233).
asio::awaitable<void> rex(process& self) {
  for (;;) {
    auto m = co_await self.receive();
    if (m->is_tuple(2) && m->element(0).is_pid() && m->element(1).is_atom(at().features_request)) {
      self.send(m->element(0), term::tuple({term(at().features_reply), term(self.node().name_atom()),
                                            term::list({term(at().erpc)})}));
    }
  }
}

// echo: GenServer.call({:echo, node}, t) returns t; send({:echo, node}, {pid, t}) sends t to pid.
asio::awaitable<void> echo(process& self) {
  for (;;) {
    auto m = co_await self.receive();
    gen::call c;
    if (gen::is_call(*m, c)) {
      gen::reply(self, c.from, std::move(c.request));
    } else if (m->is_tuple(2) && m->element(0).is_pid()) {
      self.send(m->element(0), m->element(1));
    }
  }
}

void spawn_registered(node& n, atom name, process::body_type body) {
  term pid = n.spawn(std::move(body));
  if (!n.register_name(name, pid)) log::error("could not register {}", name.text());
}

}  // namespace

void start_builtins(node& n, distribution&) {
  spawn_registered(n, at().net_kernel, net_kernel);
  spawn_registered(n, at().rex, rex);
  spawn_registered(n, at().echo, echo);
}

}  // namespace cnode
