#include "epmd/registry.hpp"

namespace cnode::epmd {

namespace {
// epmd_srv.c bump_creation: 0..3 are left to the old 2-bit creations.
void bump(std::uint32_t& counter) {
  if (++counter < 4) counter = 4;
}
}  // namespace

std::uint32_t registry::creation_for(const registered_node& n) {
  return n.info.highest_version >= 6 ? n.creation_counter : n.creation_counter % 3 + 1;
}

registration_outcome registry::register_node(connection_id conn, int fd, node_info info,
                                             std::uint64_t now_seconds) {
  registration_outcome out;
  if (auto refusal = validate_registration(info)) {
    out.refusal = refusal;
    return out;
  }
  if (active_by_name_.contains(info.name)) {
    out.refusal = error::name_in_use;
    return out;
  }
  if (by_connection_.contains(conn)) {
    // epmd keeps at most one registration a connection in practice (it stops reading after ALIVE2); a second one
    // on the same connection is refused here rather than orphaning the first.
    out.refusal = error::name_in_use;
    return out;
  }

  registered_node node;
  if (auto it = unused_by_name_.find(info.name); it != unused_by_name_.end()) {
    node = std::move(*it->second);
    unused_.erase(it->second);
    unused_by_name_.erase(it);
    bump(node.creation_counter);
  } else if (unused_.size() > max_unused_) {
    // The oldest unused entry is taken over with its counter, not bumped: epmd's node_reg2 does the same.
    node = std::move(unused_.front());
    unused_by_name_.erase(node.info.name);
    unused_.pop_front();
  } else {
    node.creation_counter = static_cast<std::uint32_t>(now_seconds);
    bump(node.creation_counter);
  }
  node.info = std::move(info);
  node.connection = conn;
  node.fd = fd;

  active_.push_front(std::move(node));
  auto it = active_.begin();
  active_by_name_.emplace(it->info.name, it);
  by_connection_.emplace(conn, it);
  out.ok = true;
  out.creation = creation_for(*it);
  return out;
}

void registry::move_to_unused(node_list::iterator it) {
  active_by_name_.erase(it->info.name);
  by_connection_.erase(it->connection);
  unused_.splice(unused_.end(), active_, it);
  unused_by_name_.emplace(it->info.name, it);
}

std::optional<std::string> registry::unregister_connection(connection_id conn) {
  auto found = by_connection_.find(conn);
  if (found == by_connection_.end()) return std::nullopt;
  auto it = found->second;
  std::string name = it->info.name;
  move_to_unused(it);
  return name;
}

std::optional<connection_id> registry::unregister_name(std::string_view name) {
  auto found = active_by_name_.find(name);
  if (found == active_by_name_.end()) return std::nullopt;
  auto it = found->second;
  connection_id conn = it->connection;
  move_to_unused(it);
  return conn;
}

const registered_node* registry::find(std::string_view name) const {
  auto found = active_by_name_.find(name);
  return found == active_by_name_.end() ? nullptr : &*found->second;
}

void registry::for_each_active(const std::function<void(const registered_node&)>& f) const {
  for (const auto& n : active_) f(n);
}

void registry::for_each_unused(const std::function<void(const registered_node&)>& f) const {
  for (const auto& n : unused_) f(n);
}

bytes registry::names_response(std::uint16_t epmd_port) const {
  bytes out;
  out.reserve(4 + active_.size() * 32);
  append_u32(out, epmd_port);
  for (const auto& n : active_) append_names_line(out, n.info.name, n.info.port);
  return out;
}

bytes registry::dump_response(std::uint16_t epmd_port) const {
  bytes out;
  append_u32(out, epmd_port);
  for (const auto& n : active_) append_dump_active_line(out, n.info.name, n.info.port, n.fd);
  for (const auto& n : unused_) append_dump_unused_line(out, n.info.name, n.info.port, n.fd);
  return out;
}

}  // namespace cnode::epmd
