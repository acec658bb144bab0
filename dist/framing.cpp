#include "dist/framing.hpp"

#include <algorithm>
#include <cstring>

namespace cnode::dist {

frame_buffer::frame_buffer(std::size_t max_packet, std::size_t read_size)
    : buf_(std::min(read_size, first_read) + 4), max_packet_(max_packet), read_size_(read_size),
      room_(std::min(read_size, first_read)) {}

std::span<std::byte> frame_buffer::prepare() {
  // What the packet at the front still needs, so a big packet is read straight into place.
  std::size_t want = room_;
  if (buffered() == 0) {
    begin_ = end_ = 0;
    // A buffer grown for one huge packet goes back to its normal size once that packet is consumed.
    if (buf_.size() > 4 * (room_ + 4)) std::vector<std::byte>(room_ + 4).swap(buf_);
  }
  if (buffered() >= 4) {
    const std::size_t len = (std::to_integer<std::size_t>(buf_[begin_]) << 24) |
                            (std::to_integer<std::size_t>(buf_[begin_ + 1]) << 16) |
                            (std::to_integer<std::size_t>(buf_[begin_ + 2]) << 8) |
                            std::to_integer<std::size_t>(buf_[begin_ + 3]);
    // Room for what has arrived, not for what is announced: the buffer at most doubles per read, so a peer that
    // announces a huge packet and sends a byte holds a read's worth of memory, not the announced size.
    if (len <= max_packet_ && 4 + len > buffered())
      want = std::max(want, std::min(4 + len - buffered(), std::max(room_, buffered())));
  }
  if (buf_.size() - end_ < want) {
    // Move the unread tail to the front first; grow only if that is not enough.
    if (begin_ != 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, buffered());
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - end_ < want) buf_.resize(end_ + want);
  }
  return std::span<std::byte>(buf_).subspan(end_, buf_.size() - end_);
}

void frame_buffer::commit(std::size_t n) {
  end_ += n;
  if (n >= room_ && room_ < read_size_) room_ = std::min(read_size_, 2 * room_);  // the peer sends faster
}

void frame_buffer::append(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    auto room = prepare();
    const std::size_t n = std::min(room.size(), bytes.size());
    std::memcpy(room.data(), bytes.data(), n);
    commit(n);
    bytes = bytes.subspan(n);
  }
}

frame_buffer::result frame_buffer::next(std::span<const std::byte>& packet) {
  if (buffered() < 4) return result::need_more;
  const std::size_t len = (std::to_integer<std::size_t>(buf_[begin_]) << 24) |
                          (std::to_integer<std::size_t>(buf_[begin_ + 1]) << 16) |
                          (std::to_integer<std::size_t>(buf_[begin_ + 2]) << 8) |
                          std::to_integer<std::size_t>(buf_[begin_ + 3]);
  if (len > max_packet_) return result::too_large;
  if (buffered() < 4 + len) return result::need_more;
  packet = std::span<const std::byte>(buf_).subspan(begin_ + 4, len);
  begin_ += 4 + len;
  return len == 0 ? result::tick : result::packet;
}

ticker::action ticker::on_interval(std::uint64_t bytes_read, std::uint64_t data_written, bool queue_empty) {
  const bool read_something = bytes_read != last_read_;
  const bool wrote_something = data_written != last_written_ || !queue_empty;
  last_read_ = bytes_read;
  last_written_ = data_written;
  silent_ = read_something ? 0 : silent_ + 1;
  // Nothing at all read for `intensity` intervals: the peer is gone (dist_util.erl:1109).
  if (silent_ >= intensity_) return action::timeout;
  // need_to_tick (dist_util.erl:1135): nothing written, or a hidden peer that sent nothing.
  if (!wrote_something || (hidden_ && !read_something)) return action::send_tick;
  return action::none;
}

}  // namespace cnode::dist
