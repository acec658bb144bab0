// cnode as a participant in :global (kernel global.erl, protocol vsn 8, OTP 25–27): the global_name_server, its
// locker and registrar, and the C++ API. Names registered anywhere in the cluster are seen here and the other way
// round; :global.sync() on Erlang/Elixir nodes completes while cnode is connected.
//
//   auto r = co_await global::register_name(self, term(atom("kv")), self.pid());   // yes | no
//   auto pid = global::whereis_name(node, term(atom("kv")));                            // std::optional<term>
//   global::send(self, term(atom("kv")), msg);
//   co_await global::trans(self, id, [&]() -> asio::awaitable<term> { ... });
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "cnode/distribution.hpp"
#include "cnode/functions.hpp"
#include "cnode/gen_server.hpp"
#include "cnode/node.hpp"
#include "cnode/service.hpp"

namespace cnode::global {

// The :global service, for the host's list (cnode/host.hpp): global_name_server, the locker and the registrar; the
// functions global:whereis_name/1, registered_names/0, register_name/2,3, unregister_name/1, re_register_name/2,
// sync/0,1, resolve_it/4 and the random_* resolvers; the probe calls {global_register, Name[, Method]},
// {global_unregister, Name}, {global_set_lock, Id}, {global_del_lock, Id} and {global_trans, Id, Ms} (lock id
// {Id, ProbePid}); {global, Name} and {via, global, Name} in the node's resolver. A hidden node answers calls as a
// hidden BEAM node does but takes part in nothing.
std::unique_ptr<cnode::service> make_service();

// ---- names (after start) ----
// yes | no. The method is a resolve fun (default fun global:random_exit_name/3).
asio::awaitable<term> register_name(process& self, const term& name, const term& pid,
                                    std::optional<term> method = std::nullopt);
asio::awaitable<term> re_register_name(process& self, const term& name, const term& pid,
                                       std::optional<term> method = std::nullopt);
asio::awaitable<void> unregister_name(process& self, const term& name);
std::optional<term> whereis_name(node& n, const term& name);
std::vector<term> registered_names(node& n);
// global:send/2 without the badarg: false when the name is not registered.
bool send(process& self, const term& name, term msg);
// gen:call to {global, Name}: noproc when it is not registered.
asio::awaitable<gen::call_result> call(process& self, const term& name, term request,
                                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// ---- locks: Id = {ResourceId, LockRequesterId} ----
// nodes defaults to [node() | nodes()]; retries < 0 means infinity.
asio::awaitable<bool> set_lock(process& self, const term& id, std::optional<std::vector<atom>> nodes = std::nullopt,
                               int retries = -1);
asio::awaitable<void> del_lock(process& self, const term& id, std::optional<std::vector<atom>> nodes = std::nullopt);
// The result of fn, or the atom aborted.
asio::awaitable<term> trans(process& self, const term& id, std::function<asio::awaitable<term>()> fn,
                            std::optional<std::vector<atom>> nodes = std::nullopt, int retries = -1);

// global:sync/0,1: ok once every node in nodes (default: the visible ones) is in sync with this one or down.
asio::awaitable<term> sync(process& self, std::optional<std::vector<atom>> nodes = std::nullopt);

// The nodes global knows (global:get_known/0 on the BEAM), for tests and diagnostics.
std::vector<atom> known(node& n);

}  // namespace cnode::global
