// The process shell around scope_core: one registered process per scope, the registry of running scopes (for the
// lock-protected reads that pg does through ETS), and the C++ call API.
#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "cnode/gen_server.hpp"
#include "cnode/log.hpp"
#include "etf/format.hpp"
#include "pg/core.hpp"
#include "pg/pg.hpp"

namespace cnode::pg {

namespace {

struct scope_state {
  std::shared_mutex mu;
  std::optional<scope_core> core;  // set while the scope process runs
};

struct registry {
  std::mutex mu;
  std::unordered_map<const node*, std::unordered_map<atom, std::shared_ptr<scope_state>>> scopes;
};
registry& reg() {
  static registry r;
  return r;
}

std::shared_ptr<scope_state> find_scope(node& n, atom scope) {
  std::lock_guard lk(reg().mu);
  auto it = reg().scopes.find(&n);
  if (it == reg().scopes.end()) return nullptr;
  auto s = it->second.find(scope);
  return s == it->second.end() ? nullptr : s->second;
}

// scope_io on the scope's own process.
class process_io final : public scope_io {
 public:
  process_io(process& self, distribution& d) : self_(self), d_(d) {}
  void new_message() { connected_.reset(); }

  void send(const term& dest, term msg, bool noconnect) override {
    if (noconnect) {
      atom where = dest.is_pid() ? dest.node_of()
                   : dest.is_tuple(2) && dest.element(1).is_atom() ? dest.element(1).atom_value()
                                                                   : self_.node().name_atom();
      if (where != self_.node().name_atom() && !connected(where)) return;  // erlang:send(.., [noconnect])
    }
    self_.send(dest, std::move(msg));
  }
  term monitor(const term& pid) override { return self_.monitor(pid); }
  void demonitor(const term& ref) override { self_.demonitor(ref); }

 private:
  bool connected(atom n) {
    if (!connected_) connected_ = d_.nodes(true, true);
    return std::find(connected_->begin(), connected_->end(), n) != connected_->end();
  }
  process& self_;
  distribution& d_;
  std::optional<std::vector<atom>> connected_;  // per message handled: a broadcast asks once
};

asio::awaitable<void> run_scope(process& self, std::shared_ptr<scope_state> st, distribution& d, atom scope) {
  process_io io(self, d);
  const bool hidden = d.config().hidden;
  // On exit (killed, or a bug): the reads see an empty scope and the registry forgets it.
  struct cleanup {
    std::shared_ptr<scope_state> st;
    distribution& d;
    process& self;
    atom scope;
    ~cleanup() {
      d.monitor_nodes(self.pid(), false);
      {
        std::lock_guard lk(reg().mu);
        auto it = reg().scopes.find(&self.node());
        if (it != reg().scopes.end() && it->second[scope] == st) it->second.erase(scope);
      }
      std::unique_lock lk(st->mu);
      st->core.reset();
    }
  } guard{st, d, self, scope};
  {
    std::unique_lock lk(st->mu);
    st->core.emplace(scope, self.pid(), io);
  }
  // A hidden node gets no nodeup-driven discover from Erlang scopes: it discovers over its hidden connections
  // itself (wire facts §5: the Erlang scope answers a hidden node's discover).
  d.monitor_nodes(self.pid(), true, hidden);
  {
    std::unique_lock lk(st->mu);
    st->core->init(d.nodes(true, hidden));
  }
  for (;;) {
    auto m = co_await self.receive();
    if (!m) continue;
    io.new_message();
    gen::incoming_call c;
    term request;
    std::unique_lock lk(st->mu);
    if (gen::is_call(*m, c)) {
      auto reply = st->core->handle_call(c.request, c.from.element(0));
      lk.unlock();
      if (reply) gen::reply(self, c.from, std::move(*reply));
      else log::debug("pg {}: ignored call {}", scope.text(), etf::to_string(c.request));
    } else if (gen::is_cast(*m, request)) {
      if (!st->core->handle_cast(request)) log::debug("pg {}: ignored cast {}", scope.text(), etf::to_string(request));
    } else if (!st->core->handle_info(*m)) {
      log::debug("pg {}: ignored message {}", scope.text(), etf::to_string(*m));
    }
  }
}

term call_scope(const gen::call_result& r) {
  if (!r.ok) erl_exit(r.reason);
  return r.reply;
}

void ensure_local(node& n, const term& pid_or_pids) {  // pg.erl:456
  auto check = [&](const term& p) {
    if (!p.is_pid() || !n.is_local(p)) erl_error(term::tuple({term(atom("nolocal")), p}));
  };
  if (pid_or_pids.is_pid()) return check(pid_or_pids);
  std::vector<term> v;
  term tail;
  if (!pid_or_pids.list_to_vector(v, &tail) || !tail.is_nil()) erl_error(term::tuple({term(atom("nolocal")), pid_or_pids}));
  for (const auto& p : v) check(p);
}

}  // namespace

std::optional<term> start_scope(node& n, distribution& d, atom scope) {
  if (n.whereis(scope)) return std::nullopt;
  auto st = std::make_shared<scope_state>();
  auto registered = std::make_shared<bool>(false);
  spawn_options opts;
  // Runs synchronously inside spawn, before the body (node.cpp): the name and the registry entry exist before any
  // message can reach the scope.
  opts.before_start = [&n, st, registered, scope](const term& pid) {
    *registered = n.register_name(scope, pid);
    if (!*registered) return;
    std::lock_guard lk(reg().mu);
    reg().scopes[&n][scope] = st;
  };
  term pid = n.spawn(
      [st, &d, scope, registered](process& self) -> asio::awaitable<void> {
        if (!*registered) co_return;  // the name was taken between whereis and spawn
        co_await run_scope(self, st, d, scope);
      },
      std::move(opts));
  if (!*registered) return std::nullopt;
  return pid;
}

std::vector<atom> scopes(node& n) {
  std::lock_guard lk(reg().mu);
  std::vector<atom> out;
  auto it = reg().scopes.find(&n);
  if (it != reg().scopes.end())
    for (const auto& [s, st] : it->second) out.push_back(s);
  return out;
}

asio::awaitable<term> join(process& self, atom scope, term group, term pid_or_pids) {
  ensure_local(self.node(), pid_or_pids);
  // Named first: a braced temporary inside a co_await expression is destroyed twice by GCC 12 (README).
  term request = term::tuple({term(atom("join_local")), group, pid_or_pids});
  auto r = co_await gen::call(self, term(scope), std::move(request), infinity);
  co_return call_scope(r);
}

asio::awaitable<term> leave(process& self, atom scope, term group, term pid_or_pids) {
  ensure_local(self.node(), pid_or_pids);
  term request = term::tuple({term(atom("leave_local")), group, pid_or_pids});
  auto r = co_await gen::call(self, term(scope), std::move(request), infinity);
  co_return call_scope(r);
}

asio::awaitable<term> monitor_scope(process& self, atom scope) {
  term request(atom("monitor"));
  auto r = co_await gen::call(self, term(scope), std::move(request), infinity);
  co_return call_scope(r);
}

asio::awaitable<term> monitor(process& self, atom scope, term group) {
  term request = term::tuple({term(atom("monitor")), group});
  auto r = co_await gen::call(self, term(scope), std::move(request), infinity);
  co_return call_scope(r);
}

asio::awaitable<bool> demonitor(process& self, atom scope, term ref) {
  term request = term::tuple({term(atom("demonitor")), ref});
  auto r = co_await gen::call(self, term(scope), std::move(request), infinity);
  if (!call_scope(r).is_atom(atom("ok"))) co_return false;
  // pg:demonitor/2 flushes the events already sent (pg.erl:154)
  std::function<bool(const term&)> queued = [ref](const term& t) { return t.is_tuple(4) && t.element(0) == ref; };
  for (;;) {
    auto m = co_await self.receive(queued, std::chrono::milliseconds(0));
    if (!m) break;
  }
  co_return true;
}

term get_members(node& n, atom scope, const term& group) {
  auto st = find_scope(n, scope);
  if (!st) return term::nil();
  std::shared_lock lk(st->mu);
  return st->core ? st->core->get_members(group) : term::nil();
}

term get_local_members(node& n, atom scope, const term& group) {
  auto st = find_scope(n, scope);
  if (!st) return term::nil();
  std::shared_lock lk(st->mu);
  return st->core ? st->core->get_local_members(group) : term::nil();
}

std::optional<term> which_groups(node& n, atom scope) {
  auto st = find_scope(n, scope);
  if (!st) return std::nullopt;
  std::shared_lock lk(st->mu);
  if (!st->core) return std::nullopt;
  return st->core->which_groups();
}

std::optional<term> which_local_groups(node& n, atom scope) {
  auto st = find_scope(n, scope);
  if (!st) return std::nullopt;
  std::shared_lock lk(st->mu);
  if (!st->core) return std::nullopt;
  return st->core->which_local_groups();
}

}  // namespace cnode::pg
