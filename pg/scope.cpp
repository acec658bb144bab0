// The process shell around scope_core: one registered process per scope (a gen_server), the scopes of the pg
// service (for the lock-protected reads that pg does through ETS), and the C++ call API.
#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "cnode/gen_server.hpp"
#include "cnode/log.hpp"
#include "etf/format.hpp"
#include "pg/core.hpp"
#include "pg/pg.hpp"
#include "pg/service.hpp"

namespace cnode::pg {

using detail::scope_state;

namespace {

std::shared_ptr<scope_state> find_scope(node& n, atom scope) {
  auto* svc = detail::find_service(n);
  return svc ? svc->find(scope) : nullptr;
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

// The scope process: pg.erl's gen_server, its state in scope_core behind the scope's read lock.
class scope_server final : public gen_server {
 public:
  scope_server(detail::pg_service& svc, std::shared_ptr<scope_state> st, atom scope)
      : svc_(svc), st_(std::move(st)), scope_(scope) {}

  asio::awaitable<void> init(process& self) override {
    io_.emplace(self, *svc_.d);
    const bool hidden = svc_.d->config().hidden;
    {
      std::unique_lock lk(st_->mu);
      st_->core.emplace(scope_, self.pid(), *io_);
    }
    // A hidden node gets no nodeup-driven discover from Erlang scopes: it discovers over its hidden connections
    // itself (wire facts §5: the Erlang scope answers a hidden node's discover).
    svc_.d->monitor_nodes(self.pid(), true, hidden);
    std::unique_lock lk(st_->mu);
    st_->core->init(svc_.d->nodes(true, hidden));
    co_return;
  }

  asio::awaitable<std::optional<term>> handle_call(process&, const term& request, const term& from) override {
    io_->new_message();
    std::unique_lock lk(st_->mu);
    auto reply = st_->core->handle_call(request, from.element(0));
    if (!reply) log::debug("pg {}: ignored call {}", scope_.text(), etf::to_string(request));
    co_return reply;
  }

  asio::awaitable<void> handle_cast(process&, const term& request) override {
    io_->new_message();
    std::unique_lock lk(st_->mu);
    if (!st_->core->handle_cast(request)) log::debug("pg {}: ignored cast {}", scope_.text(), etf::to_string(request));
    co_return;
  }

  asio::awaitable<void> handle_info(process&, const term& msg) override {
    io_->new_message();
    std::unique_lock lk(st_->mu);
    if (!st_->core->handle_info(msg)) log::debug("pg {}: ignored message {}", scope_.text(), etf::to_string(msg));
    co_return;
  }

  // On exit (stopped, killed, or a bug): the reads see an empty scope and the service forgets it.
  void terminate(process& self, const term&) override {
    svc_.d->monitor_nodes(self.pid(), false);
    svc_.forget(scope_, st_);
    std::unique_lock lk(st_->mu);
    st_->core.reset();
  }

 private:
  detail::pg_service& svc_;
  std::shared_ptr<scope_state> st_;
  atom scope_;
  std::optional<process_io> io_;
};

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

namespace detail {

std::optional<term> pg_service::start_scope(atom scope) {
  auto st = std::make_shared<scope_state>();
  auto server = std::make_shared<scope_server>(*this, st, scope);
  spawn_options opts;
  // Runs inside spawn, before the body: the scope is known to the reads before any message can reach it.
  opts.before_start = [this, st, scope](const term& pid) {
    st->pid = pid;
    std::lock_guard lk(mu_);
    scopes_[scope] = st;
  };
  auto body = [server](process& self) -> asio::awaitable<void> { co_await run_gen_server(self, server); };
  return n->spawn_registered(scope, std::move(body), std::move(opts));
}

std::shared_ptr<scope_state> pg_service::find(atom scope) const {
  std::lock_guard lk(mu_);
  auto it = scopes_.find(scope);
  return it == scopes_.end() ? nullptr : it->second;
}

std::vector<std::pair<atom, std::shared_ptr<scope_state>>> pg_service::scopes() const {
  std::lock_guard lk(mu_);
  return {scopes_.begin(), scopes_.end()};
}

void pg_service::forget(atom scope, const std::shared_ptr<scope_state>& st) {
  std::lock_guard lk(mu_);
  auto it = scopes_.find(scope);
  if (it != scopes_.end() && it->second == st) scopes_.erase(it);
}

}  // namespace detail

std::optional<term> start_scope(node& n, atom scope) {
  auto* svc = detail::find_service(n);
  if (!svc) return std::nullopt;
  return svc->start_scope(scope);
}

std::vector<atom> scopes(node& n) {
  std::vector<atom> out;
  if (auto* svc = detail::find_service(n))
    for (const auto& [s, st] : svc->scopes()) out.push_back(s);
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
