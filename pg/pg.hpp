// :pg on cnode: cnode takes part in pg scopes as a peer scope process speaking OTP 25's scope protocol
// ({discover, Pid}, {'$gen_cast', {sync, Pid, Groups}}, {join, Pid, Group, PidOrPids}, {leave, Pid, PidOrPids,
// Groups}) and, to OTP 29 scopes, its version-1 protocol (docs/otp-versions.md), so pg:get_members/2 on every
// Erlang/Elixir node lists cnode's processes and cnode sees theirs.
//
//   co_await pg::join(self, atom("pg"), term(atom("workers")), self.pid());          // ok
//   term pids = pg::get_members(self.node(), atom("pg"), term(atom("workers")));     // any thread, no call
//   auto [ref, members] = ...co_await pg::monitor(self, atom("pg"), group)...        // then {Ref, join|leave, G, Pids}
//
// Calls (join, leave, monitor_scope, monitor, demonitor) go to the scope process as pg's gen_server calls do and
// must run inside a process; they exit as gen:call does (erl_exception of kind exit: noproc when the scope does not
// run here). Reads take the scope's table lock and need no process.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnode/distribution.hpp"
#include "cnode/functions.hpp"
#include "cnode/node.hpp"
#include "cnode/service.hpp"

namespace cnode::pg {

// The pg service, for the host's list (cnode/host.hpp): runs the scopes of --pg-scope (default `pg`), registers
// the pg read functions for erpc (pg:get_members/1,2, get_local_members/1,2, which_groups/0,1,
// which_local_groups/0,1) and the probe calls {pg_join, Scope, Group}, {pg_leave, Scope, Group},
// {pg_monitor_scope, Scope}, {pg_monitor, Scope, Group}, {pg_demonitor, Scope, Ref}.
std::unique_ptr<cnode::service> make_service();

// Starts one more scope on a node running the pg service; its pid, or nullopt if the name is taken (or pg does
// not run there).
std::optional<term> start_scope(node& n, atom scope);
// The scopes running on n.
std::vector<atom> scopes(node& n);

// pg:join/3 and pg:leave/3 (pid_or_pids: a local pid or a list of them; erl_error {nolocal, Bad} otherwise).
// join returns ok; joining twice counts twice. leave returns ok or not_joined.
asio::awaitable<term> join(process& self, atom scope, term group, term pid_or_pids);
asio::awaitable<term> leave(process& self, atom scope, term group, term pid_or_pids);

// pg:monitor_scope/1 → {Ref, #{Group => Pids}}; pg:monitor/2 → {Ref, Pids}. Then self receives
// {Ref, join, Group, Pids} and {Ref, leave, Group, Pids}. demonitor flushes those already queued.
asio::awaitable<term> monitor_scope(process& self, atom scope);
asio::awaitable<term> monitor(process& self, atom scope, term group);
asio::awaitable<bool> demonitor(process& self, atom scope, term ref);

// Reads, as pg's ETS reads: [] for an unknown scope or group. which_groups of an unknown scope is nullopt
// (pg raises badarg).
term get_members(node& n, atom scope, const term& group);
term get_local_members(node& n, atom scope, const term& group);
std::optional<term> which_groups(node& n, atom scope);
std::optional<term> which_local_groups(node& n, atom scope);

}  // namespace cnode::pg
