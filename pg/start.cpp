// The pg service: the scopes of the command line, the pg read functions for erpc, the probe's pg calls, its stop
// and its metrics.
#include "cnode/log.hpp"
#include "cnode/oneshot.hpp"
#include "pg/pg.hpp"
#include "pg/service.hpp"

namespace cnode::pg {

namespace {

const atom default_scope{"pg"};

atom scope_arg(const term& t) {
  if (!t.is_atom()) erl_error(term(atom("badarg")));
  return t.atom_value();
}

template <typename F>
function_body sync(F f) {
  return [f](process& self, std::vector<term> args) -> asio::awaitable<term> { co_return f(self, args); };
}

void add_functions(node& n, function_table& fns) {
  // pg's reads on this node's view (pg.erl:170-215): a missing scope gives [] for the member reads and badarg for
  // which_groups, as ets does.
  fns.add("pg", "get_members", 1,
          sync([&n](process&, const std::vector<term>& a) { return get_members(n, default_scope, a[0]); }));
  fns.add("pg", "get_members", 2, sync([&n](process&, const std::vector<term>& a) {
            return get_members(n, scope_arg(a[0]), a[1]);
          }));
  fns.add("pg", "get_local_members", 1,
          sync([&n](process&, const std::vector<term>& a) { return get_local_members(n, default_scope, a[0]); }));
  fns.add("pg", "get_local_members", 2, sync([&n](process&, const std::vector<term>& a) {
            return get_local_members(n, scope_arg(a[0]), a[1]);
          }));
  auto groups = [&n](atom scope, bool local) {
    auto r = local ? which_local_groups(n, scope) : which_groups(n, scope);
    if (!r) erl_error(term(atom("badarg")));
    return *r;
  };
  fns.add("pg", "which_groups", 0, sync([groups](process&, const std::vector<term>&) {
            return groups(default_scope, false);
          }));
  fns.add("pg", "which_groups", 1, sync([groups](process&, const std::vector<term>& a) {
            return groups(scope_arg(a[0]), false);
          }));
  fns.add("pg", "which_local_groups", 0, sync([groups](process&, const std::vector<term>&) {
            return groups(default_scope, true);
          }));
  fns.add("pg", "which_local_groups", 1, sync([groups](process&, const std::vector<term>& a) {
            return groups(scope_arg(a[0]), true);
          }));
}

// The probe's requests run in the probe; a failed call to the scope (noproc: no such scope here) is answered
// {error, Reason} rather than killing the probe.
template <typename F>
probe_call guarded(F f) {
  return [f](process& self, const term& r) -> asio::awaitable<term> {
    term reason;
    try {
      co_return co_await f(self, r);
    } catch (const erl_exception& e) {
      reason = e.reason;
    }
    co_return term::tuple({term(atom("error")), reason});
  };
}

bool shaped(const term& r, std::size_t arity) { return r.is_tuple(arity) && r.element(1).is_atom(); }

void add_probe_calls(probe_registry& probes) {
  probes.add(atom("pg_join"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   atom scope = r.element(1).atom_value();
                   term group = r.element(2);
                   co_return co_await join(self, scope, group, self.pid());
                 }));
  probes.add(atom("pg_leave"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   atom scope = r.element(1).atom_value();
                   term group = r.element(2);
                   co_return co_await leave(self, scope, group, self.pid());
                 }));
  probes.add(atom("pg_monitor_scope"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 2)) co_return term(atom("badarg"));
                   co_return co_await monitor_scope(self, r.element(1).atom_value());
                 }));
  probes.add(atom("pg_monitor"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   co_return co_await monitor(self, r.element(1).atom_value(), r.element(2));
                 }));
  probes.add(atom("pg_demonitor"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   co_return term(co_await demonitor(self, r.element(1).atom_value(), r.element(2)));
                 }));
}

}  // namespace

namespace detail {

pg_service* find_service(node& n) { return n.services().find_as<pg_service>("pg"); }

void pg_service::add_options(option_list& o) {
  o.add("--pg-scope", "NAME", "take part in this :pg scope besides the default pg (repeatable)",
        [this](const std::string& v) -> std::string {
          if (v.empty() || v.size() > 255) return "a scope is an atom of 1 to 255 characters";
          if (std::find(scope_names_.begin(), scope_names_.end(), v) == scope_names_.end()) scope_names_.push_back(v);
          return {};
        });
}

asio::awaitable<void> pg_service::start(service_context& ctx) {
  n = &ctx.n;
  d = &ctx.d;
  add_functions(ctx.n, ctx.functions);
  add_probe_calls(ctx.probes);
  for (const auto& s : scope_names_) {
    if (!start_scope(atom(s))) log::error("pg: cannot start scope {}: the name is taken", s);
  }
  co_return;
}

asio::awaitable<void> pg_service::stop(clock::time_point deadline) {
  std::vector<term> pids;
  for (const auto& [scope, st] : scopes()) pids.push_back(st->pid);
  if (pids.empty()) co_return;
  // Named first: a temporary inside a co_await expression is destroyed twice by GCC 12 (README).
  std::function<asio::awaitable<term>(process&)> stop_scopes = [pids](process& self) -> asio::awaitable<term> {
        std::vector<term> refs;
        for (const auto& p : pids) refs.push_back(self.monitor(p));
        for (const auto& p : pids) self.exit(p, term(atom("shutdown")));
        for (const auto& r : refs) {
          std::function<bool(const term&)> down = [r](const term& m) {
            return m.is_tuple(5) && m.element(0).is_atom(atom("DOWN")) && m.element(1) == r;
          };
          co_await self.receive(down);
        }
        co_return term(atom("ok"));
  };
  co_await run_in_process(*n, std::move(stop_scopes), deadline);
}

void pg_service::metrics(metrics_sink& m) const {
  for (const auto& [scope, st] : scopes()) {
    std::shared_lock lk(st->mu);
    if (!st->core) continue;
    const metrics_sink::labels l{{"scope", std::string(scope.text())}};
    std::size_t members = 0, local = 0;
    std::vector<term> groups;
    st->core->which_groups().list_to_vector(groups);
    for (const auto& g : groups) {
      std::vector<term> all, mine;  // list_to_vector appends: one vector each
      if (st->core->get_members(g).list_to_vector(all)) members += all.size();
      if (st->core->get_local_members(g).list_to_vector(mine)) local += mine.size();
    }
    m.gauge("cnode_pg_groups", "Groups with members in the scope, cluster-wide, as this node sees them.",
            static_cast<double>(groups.size()), l);
    m.gauge("cnode_pg_members", "Memberships in the scope's groups, cluster-wide (a pid joined twice counts twice).",
            static_cast<double>(members), l);
    m.gauge("cnode_pg_local_members", "Memberships of this node's processes in the scope's groups.",
            static_cast<double>(local), l);
    m.gauge("cnode_pg_peers", "Peer scope processes on other nodes that this scope syncs with.",
            static_cast<double>(st->core->peer_count()), l);
  }
}

term pg_service::status() const {
  std::vector<std::pair<term, term>> per_scope;
  for (const auto& [scope, st] : scopes()) {
    std::shared_lock lk(st->mu);
    if (!st->core) continue;
    per_scope.emplace_back(term(scope), term::map({{term(atom("groups")), term(st->core->group_count())},
                                                   {term(atom("peers")), term(st->core->peer_count())}}));
  }
  return term::map({{term(atom("scopes")), term::map(std::move(per_scope))}});
}

}  // namespace detail

std::unique_ptr<cnode::service> make_service() { return std::make_unique<detail::pg_service>(); }

}  // namespace cnode::pg
