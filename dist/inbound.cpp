// A connection's inbound path (see inbound.hpp).
#include "dist/inbound.hpp"

#include <algorithm>
#include <cstring>

#include "dist/error.hpp"
#include "dist/flags.hpp"

namespace cnode::dist {

inbound_path::inbound_path(std::uint64_t effective, std::size_t max_packet, std::shared_ptr<partial_budget> budget,
                           std::size_t read_size)
    : in_(max_packet, read_size),
      headered_((effective & (dflag::fragments | dflag::dist_hdr_atom_cache)) != 0),
      fragments_((effective & dflag::fragments) != 0),
      reader_(headered_, inbound_reader::limits{.max_message = max_packet}, std::move(budget)),
      max_packet_(max_packet) {}

void inbound_path::message_done() noexcept {
  if (msg_.shared.node()) reader_.message_done();
  msg_ = {};
}

std::span<std::byte> inbound_path::prepare() {
  if (!direct_.empty()) return direct_.subspan(direct_got_);
  constexpr std::size_t prefix = 4 + inbound_reader::prefix_size;  // the packet's length, 131, 70, SeqId, FragId
  if (fragments_ && !error_ && !ready_) {
    const auto front = in_.front();
    if (front.size() >= prefix && front[4] == std::byte{131} && front[5] == std::byte{70}) {
      const std::size_t len = (std::to_integer<std::size_t>(front[0]) << 24) |
                              (std::to_integer<std::size_t>(front[1]) << 16) |
                              (std::to_integer<std::size_t>(front[2]) << 8) | std::to_integer<std::size_t>(front[3]);
      // Only a packet that has not all arrived (everything buffered is its own) and within the bound (else the
      // framing refuses it as usual).
      if (len >= inbound_reader::prefix_size + direct_min && len <= max_packet_ && 4 + len > front.size()) {
        const std::size_t data = len - inbound_reader::prefix_size, have = front.size() - prefix;
        auto dst = reader_.begin_direct(front.subspan(4, inbound_reader::prefix_size), data);
        if (!dst.empty()) {
          std::memcpy(dst.data(), front.data() + prefix, have);
          in_.consume(front.size());
          ++packets_;
          ++fragment_packets_;
          ++direct_packets_;
          direct_ = dst;
          direct_got_ = have;
          return direct_.subspan(direct_got_);
        }
      }
    }
    if (prefix_read_ && front.size() < prefix && reader_.sequences() > 0) {
      auto room = in_.prepare();
      return room.first(std::min(room.size(), prefix - front.size()));
    }
  }
  return in_.prepare();
}

void inbound_path::commit(std::size_t n) {
  bytes_ += n;
  if (direct_.empty()) {
    in_.commit(n);
    return;
  }
  direct_got_ += n;
  if (direct_got_ < direct_.size()) return;
  direct_ = {};
  direct_got_ = 0;
  auto r = reader_.end_direct();
  prefix_read_ = r.st == inbound_reader::status::pending;
  if (r.st != inbound_reader::status::pending) ready_ = std::move(r);
}

void inbound_path::append(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    auto room = prepare();
    const std::size_t n = std::min(room.size(), bytes.size());
    std::memcpy(room.data(), bytes.data(), n);
    commit(n);
    bytes = bytes.subspan(n);
  }
}

inbound_path::event inbound_path::next() {
  if (error_) return event::failed;
  if (ready_) {
    auto r = std::move(*ready_);
    ready_.reset();
    if (r.st == inbound_reader::status::failed) {  // not reached: begin_direct checked what could fail
      error_ = r.ec ? r.ec : make_error_code(fragment_error::bad_header);
      reader_.clear();
      return event::failed;
    }
    msg_ = r.msg;
    return event::message;
  }
  for (;;) {
    std::span<const std::byte> packet;
    switch (in_.next(packet)) {
      case frame_buffer::result::need_more: return event::need_more;
      case frame_buffer::result::too_large: error_ = error::packet_too_large; return event::failed;
      case frame_buffer::result::tick: ++ticks_; return event::tick;
      case frame_buffer::result::packet: break;
    }
    ++packets_;
    const bool fragment = packet.size() >= 2 && packet[0] == std::byte{131} &&
                          (packet[1] == std::byte{69} || packet[1] == std::byte{70});
    if (fragment) ++fragment_packets_;
    // After a big fragment the next is likely its message's next one: read its prefix alone first.
    prefix_read_ = fragment && packet.size() >= inbound_reader::prefix_size + direct_min;
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
