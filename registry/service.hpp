// Internal to registry/: the running service (one per executable) and the helpers the processes share.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "cnode/distribution.hpp"
#include "cnode/node.hpp"
#include "cnode/service.hpp"
#include "registry/core.hpp"

namespace cnode::global::detail {

// The :global service of a node: its state (the server core and the pids of its processes) lives here.
struct service final : cnode::service {
  std::string_view name() const override { return "global"; }
  asio::awaitable<void> start(service_context& ctx) override;
  // Releases this node's names (unregistered through the registrar, under global's lock, as
  // global:unregister_name/1 does), so every node sees them go before the connection closes.
  asio::awaitable<void> stop(clock::time_point deadline) override;
  void metrics(metrics_sink& m) const override;
  term status() const override;

  node* n = nullptr;
  distribution* d = nullptr;
  bool hidden = false;
  std::unique_ptr<server_core> core;
  std::shared_ptr<server_io> io;
  term server_pid, locker_pid, registrar_pid;
  std::atomic<std::int64_t> next_tag{1};
  std::atomic<std::uint64_t> registrations{0}, lock_waits{0};
};

// The :global service of n, or null when it does not run there.
service* current(node& n);

inline const atom gns{"global_name_server"};

// gen_server:multi_call(Nodes, global_name_server, Req): the replies of the nodes that answered.
asio::awaitable<std::vector<std::pair<atom, term>>> multi_call(process& self, const std::vector<atom>& nodes,
                                                               const term& req);
// set_lock_on_nodes/2 (global.erl:1493): one try, undone on the nodes that said yes when one said no.
asio::awaitable<bool> set_lock_on_nodes(process& self, const term& id, const std::vector<atom>& nodes);
asio::awaitable<void> del_lock_on_nodes(process& self, const term& id, const std::vector<atom>& nodes);
// delete_global_lock/2: the boss last.
asio::awaitable<void> delete_global_lock(process& self, const term& id, std::vector<atom> nodes);
// random_sleep/1 (global.erl:2980).
asio::awaitable<void> random_sleep(process& self, int times);

asio::awaitable<void> locker(process& self);

}  // namespace cnode::global::detail
