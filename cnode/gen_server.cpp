#include "cnode/gen_server.hpp"

namespace cnode::gen {

namespace {
struct atoms {
  atom gen_call{"$gen_call"}, gen_cast{"$gen_cast"}, alias{"alias"}, down{"DOWN"}, noproc{"noproc"},
      timeout{"timeout"}, nodedown{"nodedown"}, noconnection{"noconnection"}, already_started{"already_started"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

// {global, Name} and {via, Module, Name}, through the node's resolver (services add their modules to it).
std::optional<std::optional<term>> global_form(const node& n, const term& dest) { return n.resolver().resolve(dest); }

}  // namespace

asio::awaitable<call_result> call(process& self, const term& dest_in, term request, std::chrono::milliseconds timeout) {
  node& n = self.node();
  term dest = dest_in;
  if (auto g = global_form(n, dest)) {
    if (!*g) co_return call_result{false, {}, term(at().noproc)};  // gen:call exits noproc at once
    dest = **g;
  }
  term target;  // what we monitor and send to
  atom where = n.name_atom();
  if (dest.is_pid()) {
    target = dest;
    where = dest.node_of();
  } else if (dest.is_atom()) {
    auto pid = n.whereis(dest.atom_value());
    if (!pid) co_return call_result{false, {}, term(at().noproc)};  // gen:call exits noproc at once
    target = *pid;
  } else if (dest.is_tuple(2) && dest.element(0).is_atom() && dest.element(1).is_atom()) {
    where = dest.element(1).atom_value();
    if (where == n.name_atom()) {
      auto pid = n.whereis(dest.element(0).atom_value());
      if (!pid) co_return call_result{false, {}, term(at().noproc)};
      target = *pid;
    } else {
      target = dest;
    }
  } else {
    co_return call_result{false, {}, term::tuple({term(atom("badarg")), dest})};
  }
  const term mref = self.monitor(target);
  // The reply tag names an alias that is dropped afterwards, so a late reply never reaches the mailbox.
  const term al = self.alias();
  const term tag = term::cons(term(at().alias), al);
  self.send(target, term::tuple({term(at().gen_call), term::tuple({self.pid(), tag}), std::move(request)}));
  auto m = co_await self.receive(
      [&](const term& t) {
        return (t.is_tuple(2) && t.element(0) == tag) ||
               (t.is_tuple(5) && t.element(0).is_atom(at().down) && t.element(1) == mref);
      },
      timeout);
  self.unalias(al);
  if (!m) {
    self.demonitor(mref, true);
    co_return call_result{false, {}, term(at().timeout)};
  }
  if (m->is_tuple(5)) {
    term reason = m->element(4);
    if (reason.is_atom(at().noconnection)) reason = term::tuple({term(at().nodedown), term(where)});
    co_return call_result{false, {}, std::move(reason)};
  }
  self.demonitor(mref, true);
  co_return call_result{true, m->element(1), {}};
}

void cast(process& self, const term& dest, term request) {
  if (auto g = global_form(self.node(), dest)) {
    // gen_server:cast to a global name: global:send, its badarg caught — an unknown name is a no-op.
    if (*g) self.send(**g, term::tuple({term(at().gen_cast), std::move(request)}));
    return;
  }
  self.send(dest, term::tuple({term(at().gen_cast), std::move(request)}));
}

}  // namespace cnode::gen

namespace cnode {

asio::awaitable<void> run_gen_server(process& self, std::shared_ptr<gen_server> server) {
  co_await server->init(self);  // as gen_server:init_it: a failed init runs no terminate
  try {
    for (;;) {
      auto m = co_await self.receive();
      gen::incoming_call c;
      term req;
      if (gen::is_call(*m, c)) {
        auto reply = co_await server->handle_call(self, c.request, c.from);
        if (reply) gen::reply(self, c.from, std::move(*reply));
      } else if (gen::is_cast(*m, req)) {
        co_await server->handle_cast(self, req);
      } else {
        co_await server->handle_info(self, *m);
      }
    }
  } catch (const process_exit& e) {
    server->terminate(self, e.reason);
    throw;
  } catch (const std::exception& e) {
    server->terminate(self, term::tuple({term(atom("cpp_exception")), term::binary(std::string_view(e.what()))}));
    throw;
  }
}

term start_gen_server(node& n, std::shared_ptr<gen_server> server, std::optional<atom> name, spawn_options opts) {
  auto body = [server](process& self) -> asio::awaitable<void> { co_await run_gen_server(self, server); };
  if (!name) return n.spawn(std::move(body), std::move(opts));
  auto pid = n.spawn_registered(*name, std::move(body), std::move(opts));
  if (!pid) {
    // As gen_server:start({local, Name}, ...) when the name is taken: a process that exits {already_started, Pid}.
    auto holder = n.whereis(*name);
    term reason = term::tuple({term(atom("already_started")), holder ? *holder : term(atom("undefined"))});
    return n.spawn([reason](process& self) -> asio::awaitable<void> {
      self.exit(reason);
      co_return;
    });
  }
  return *pid;
}

}  // namespace cnode
