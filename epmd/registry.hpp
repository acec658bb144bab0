// The EPMD server's state, sans I/O: which names are registered by which connection, on which port, and the
// creation numbers epmd hands out. Pure and deterministic (time comes in as an argument).
//
// Creation numbers follow OTP 25's epmd (epmd_srv.c node_reg2/bump_creation/get_creation), observed on the wire:
// - every name has a counter; a name never seen before starts from the current time in seconds, plus one;
// - a name that comes back from the "old/unused" list gets its old counter plus one, so a re-registration of a
//   name always gets a different creation (counters below 4 jump to 4, leaving 1..3 to old 16-bit creations);
// - ALIVE2_X_RESP (highest version >= 6) carries the counter, ALIVE2_RESP carries counter % 3 + 1;
// - a refused registration answers Result 1 with creation 99.
// Unregistered names stay in a FIFO "old/unused" list (shown by DUMP) of at most max_unused + 1 entries; past that a
// new name takes over the oldest entry, counter included, exactly as epmd does.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "epmd/protocol.hpp"

namespace cnode::epmd {

using connection_id = std::uint64_t;

struct registered_node {
  node_info info;
  std::uint32_t creation_counter = 0;
  connection_id connection = 0;
  int fd = -1;  // shown by DUMP only
};

struct registration_outcome {
  bool ok = false;
  std::uint32_t creation = refused_creation;  // as the response carries it (16-bit form already reduced)
  std::optional<error> refusal;
};

class registry {
 public:
  static constexpr std::size_t default_max_unused = 1000;  // epmd_int.h MAX_UNREG_COUNT

  explicit registry(std::size_t max_unused = default_max_unused) : max_unused_(max_unused) {}

  registration_outcome register_node(connection_id conn, int fd, node_info info, std::uint64_t now_seconds);

  // The connection that registered a node closed (or misbehaved): its name moves to the unused list.
  std::optional<std::string> unregister_connection(connection_id conn);
  // STOP_REQ: unregisters by name; returns the connection that held it so that the caller closes it.
  std::optional<connection_id> unregister_name(std::string_view name);

  const registered_node* find(std::string_view name) const;
  bool is_registered_connection(connection_id conn) const { return by_connection_.contains(conn); }
  std::size_t active_count() const { return active_.size(); }
  std::size_t unused_count() const { return unused_.size(); }

  // Newest registration first, as NAMES and DUMP list them.
  void for_each_active(const std::function<void(const registered_node&)>& f) const;
  // Oldest first.
  void for_each_unused(const std::function<void(const registered_node&)>& f) const;

  // Full response bodies; epmd_port is the server's own listening port, sent as the 4-byte header.
  bytes names_response(std::uint16_t epmd_port) const;
  bytes dump_response(std::uint16_t epmd_port) const;

  static std::uint32_t creation_for(const registered_node& n);

 private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using node_list = std::list<registered_node>;
  using name_index = std::unordered_map<std::string, node_list::iterator, string_hash, std::equal_to<>>;

  void move_to_unused(node_list::iterator it);

  std::size_t max_unused_;
  node_list active_;  // front = newest
  node_list unused_;  // front = oldest
  name_index active_by_name_;
  name_index unused_by_name_;
  std::unordered_map<connection_id, node_list::iterator> by_connection_;
};

}  // namespace cnode::epmd
