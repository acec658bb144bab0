#pragma once
// After the handshake: 4-byte big-endian length, then the packet; length 0 is a tick (wire facts §2).
// The two sans-I/O pieces of a connection: reassembling packets from reads, and the tick decision
// (dist_util.erl:1097 send_tick). connection.cpp only moves bytes and fires the timer.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace cnode::dist {

// Reassembles packets from arbitrary reads. Memory stays bounded: at most one packet of max_packet bytes plus
// a read's worth. A read's worth starts at first_read bytes (an idle connection holds a few KiB, not read_size)
// and doubles, up to read_size, each time a read fills what was offered (a connection carrying a stream).
class frame_buffer {
 public:
  enum class result { need_more, tick, packet, too_large };

  explicit frame_buffer(std::size_t max_packet, std::size_t read_size = 64 * 1024);

  static constexpr std::size_t first_read = 4096;

  // Room to read into (at least a read's worth, or what the current packet still needs); then commit(n).
  std::span<std::byte> prepare();
  void commit(std::size_t n);
  void append(std::span<const std::byte> bytes);  // prepare+commit for bytes already in memory

  // The next complete packet, valid until the next call of prepare/append/next.
  result next(std::span<const std::byte>& packet);
  std::size_t buffered() const noexcept { return end_ - begin_; }
  // The bytes read and not yet handed out (the front of a packet that has not all arrived), and dropping n of them
  // (inbound_path takes a fragment's data out of the framing this way: see its direct reads).
  std::span<const std::byte> front() const noexcept {
    return std::span<const std::byte>(buf_).subspan(begin_, end_ - begin_);
  }
  void consume(std::size_t n) noexcept { begin_ += std::min(n, buffered()); }
  std::size_t capacity() const noexcept { return buf_.size(); }

 private:
  std::vector<std::byte> buf_;
  std::size_t begin_ = 0, end_ = 0;
  std::size_t max_packet_, read_size_;
  std::size_t room_;  // a read's worth now: first_read (or read_size, if smaller) up to read_size
};

// The tick rule, called once per tick interval (net_ticktime / intensity). Counters are totals since the start.
class ticker {
 public:
  enum class action { none, send_tick, timeout };

  explicit ticker(unsigned intensity = 4, bool hidden = false) : intensity_(intensity), hidden_(hidden) {}

  // bytes_read: everything received (ticks included); data_written: non-tick packets written or queued.
  action on_interval(std::uint64_t bytes_read, std::uint64_t data_written, bool queue_empty);
  unsigned silent_intervals() const noexcept { return silent_; }

 private:
  unsigned intensity_;
  bool hidden_;
  unsigned silent_ = 0;
  std::uint64_t last_read_ = 0, last_written_ = 0;
};

// Encodes the 4-byte header of a packet of `size` bytes.
inline void put_packet_header(std::byte* out, std::uint32_t size) noexcept {
  out[0] = std::byte(size >> 24);
  out[1] = std::byte((size >> 16) & 0xff);
  out[2] = std::byte((size >> 8) & 0xff);
  out[3] = std::byte(size & 0xff);
}

}  // namespace cnode::dist
