// pg::start: the scopes of the command line, the pg read functions for erpc, and the probe's pg calls.
#include "cnode/builtins.hpp"
#include "cnode/log.hpp"
#include "pg/pg.hpp"

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

void add_probe_calls() {
  add_probe_call(atom("pg_join"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   atom scope = r.element(1).atom_value();
                   term group = r.element(2);
                   co_return co_await join(self, scope, group, self.pid());
                 }));
  add_probe_call(atom("pg_leave"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   atom scope = r.element(1).atom_value();
                   term group = r.element(2);
                   co_return co_await leave(self, scope, group, self.pid());
                 }));
  add_probe_call(atom("pg_monitor_scope"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 2)) co_return term(atom("badarg"));
                   co_return co_await monitor_scope(self, r.element(1).atom_value());
                 }));
  add_probe_call(atom("pg_monitor"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   co_return co_await monitor(self, r.element(1).atom_value(), r.element(2));
                 }));
  add_probe_call(atom("pg_demonitor"), guarded([](process& self, const term& r) -> asio::awaitable<term> {
                   if (!shaped(r, 3)) co_return term(atom("badarg"));
                   co_return term(co_await demonitor(self, r.element(1).atom_value(), r.element(2)));
                 }));
}

}  // namespace

void start(node& n, distribution& d, function_table& functions, const std::vector<std::string>& scope_names) {
  add_functions(n, functions);
  add_probe_calls();
  for (const auto& s : scope_names) {
    if (!start_scope(n, d, atom(s))) log::error("pg: cannot start scope {}: the name is taken", s);
  }
}

}  // namespace cnode::pg
