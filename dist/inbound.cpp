// A connection's inbound path (see inbound.hpp).
#include "dist/inbound.hpp"

#include "dist/error.hpp"
#include "dist/flags.hpp"

namespace cnode::dist {

inbound_path::inbound_path(std::uint64_t effective, std::size_t max_packet, std::shared_ptr<partial_budget> budget,
                           std::size_t read_size)
    : in_(max_packet, read_size),
      headered_((effective & (dflag::fragments | dflag::dist_hdr_atom_cache)) != 0),
      fragments_((effective & dflag::fragments) != 0),
      reader_(headered_, inbound_reader::limits{.max_message = max_packet}, std::move(budget)) {}

void inbound_path::message_done() noexcept {
  if (msg_.shared.node()) reader_.message_done();
  msg_ = {};
}

inbound_path::event inbound_path::next() {
  if (error_) return event::failed;
  for (;;) {
    std::span<const std::byte> packet;
    switch (in_.next(packet)) {
      case frame_buffer::result::need_more: return event::need_more;
      case frame_buffer::result::too_large: error_ = error::packet_too_large; return event::failed;
      case frame_buffer::result::tick: ++ticks_; return event::tick;
      case frame_buffer::result::packet: break;
    }
    ++packets_;
    if (packet.size() >= 2 && packet[0] == std::byte{131} &&
        (packet[1] == std::byte{69} || packet[1] == std::byte{70}))
      ++fragment_packets_;
    auto r = reader_.feed(packet);
    if (r.st == inbound_reader::status::failed) {
      error_ = r.ec ? r.ec : make_error_code(fragment_error::bad_header);
      reader_.clear();
      return event::failed;
    }
    if (r.st == inbound_reader::status::pending) continue;
    msg_ = r.msg;
    return event::message;
  }
}

}  // namespace cnode::dist
