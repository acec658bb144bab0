// Internal to registry/: the running service (one per executable) and the helpers the processes share.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "cnode/distribution.hpp"
#include "cnode/node.hpp"
#include "registry/core.hpp"

namespace cnode::global::detail {

struct service;
service* current();

struct service {
  node& n;
  distribution& d;
  bool hidden;
  std::unique_ptr<server_core> core;
  term server_pid, locker_pid, registrar_pid;
  std::atomic<std::int64_t> next_tag{1};
};

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
