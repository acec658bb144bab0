#pragma once
// A connection's inbound path after the handshake, sans-I/O: bytes as they were read in, events out. It joins the
// 4-byte framing (frame_buffer), ticks, and the distribution headers / fragment reassembly (inbound_reader) for
// the flags in effect. dist/connection.cpp feeds it what the socket gives and acts on the events (answers ticks,
// hands messages to its handler, closes with the failure's reason); the fuzz target test/fuzz/dist_connection_fuzz.cpp
// drives the same object with arbitrary bytes.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <vector>

#include "dist/fragment.hpp"
#include "dist/framing.hpp"

namespace cnode::dist {

class inbound_path {
 public:
  enum class event {
    need_more,  // every whole packet read so far has been handled: read more
    tick,       // a zero-length packet
    message,    // message() is one whole message, valid until the next call of next/prepare/append
    failed,     // error() says why; the connection must be closed with it (nothing more comes out)
  };

  // effective: the connection's negotiated flags (DIST_HDR_ATOM_CACHE or FRAGMENTS: every packet carries a
  // distribution header). max_packet bounds a framed packet and a reassembled message alike.
  inbound_path(std::uint64_t effective, std::size_t max_packet, std::shared_ptr<partial_budget> budget = nullptr,
               std::size_t read_size = 64 * 1024);

  std::span<std::byte> prepare() { return in_.prepare(); }
  void commit(std::size_t n) { in_.commit(n); bytes_ += n; }
  void append(std::span<const std::byte> bytes) { in_.append(bytes); bytes_ += bytes.size(); }

  event next();
  inbound_message& message() noexcept { return msg_; }
  std::error_code error() const noexcept { return error_; }
  // The message returned by next() has been handled (a reassembled one's buffer is given back).
  void message_done() noexcept;
  // The connection went down: partial messages are dropped and their bytes given back.
  void clear() noexcept { reader_.clear(); }

  bool headered() const noexcept { return headered_; }
  bool fragments() const noexcept { return fragments_; }
  // Totals since the start: bytes given to commit/append, non-tick packets, of them fragments, ticks.
  std::uint64_t bytes() const noexcept { return bytes_; }
  std::uint64_t packets() const noexcept { return packets_; }
  std::uint64_t fragment_packets() const noexcept { return fragment_packets_; }
  std::uint64_t ticks() const noexcept { return ticks_; }
  // What is held: framed bytes not yet handed out, bytes of partial messages (both bounded, see framing.hpp and
  // fragment.hpp).
  std::size_t buffered() const noexcept { return in_.buffered(); }
  std::size_t buffer_capacity() const noexcept { return in_.capacity(); }
  std::size_t partial_bytes() const noexcept { return reader_.held_bytes(); }
  std::size_t sequences() const noexcept { return reader_.sequences(); }

 private:
  frame_buffer in_;
  const bool headered_, fragments_;
  inbound_reader reader_;
  inbound_message msg_;
  std::error_code error_;
  std::uint64_t bytes_ = 0, packets_ = 0, fragment_packets_ = 0, ticks_ = 0;
};

}  // namespace cnode::dist
