#pragma once
// A connection's inbound path after the handshake, sans-I/O: bytes as they were read in, events out. It joins the
// 4-byte framing (frame_buffer), ticks, and the distribution headers / fragment reassembly (inbound_reader) for
// the flags in effect. dist/connection.cpp feeds it what the socket gives and acts on the events (answers ticks,
// hands messages to its handler, closes with the failure's reason); the fuzz target test/fuzz/dist_connection_fuzz.cpp
// drives the same object with arbitrary bytes.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
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

  // Room to read into, then commit(n). With FRAGMENTS, a continuation fragment of at least direct_min data bytes
  // whose prefix has arrived is read straight into its message's buffer (inbound_reader::begin_direct): the room
  // is then what the fragment still lacks, and after such a fragment (while messages are in progress) the next read
  // asks for one fragment prefix only, so that the next fragment's data can go straight into place too.
  std::span<std::byte> prepare();
  void commit(std::size_t n);
  void append(std::span<const std::byte> bytes);
  static constexpr std::size_t direct_min = 4096;
  // Fragments whose data was read straight into place (a subset of fragment_packets()).
  std::uint64_t direct_packets() const noexcept { return direct_packets_; }

  event next();
  inbound_message& message() noexcept { return msg_; }
  std::error_code error() const noexcept { return error_; }
  // The message returned by next() has been handled (a reassembled one's buffer is given back).
  void message_done() noexcept;
  // The connection went down: partial messages are dropped and their bytes given back.
  void clear() noexcept {
    reader_.clear();
    direct_ = {};
    direct_got_ = 0;
    ready_.reset();
  }

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
  std::size_t max_packet_;
  inbound_message msg_;
  std::error_code error_;
  std::uint64_t bytes_ = 0, packets_ = 0, fragment_packets_ = 0, ticks_ = 0, direct_packets_ = 0;
  std::span<std::byte> direct_;     // a direct read in progress: the fragment's data in its message's buffer
  std::size_t direct_got_ = 0;      // of it, what has arrived
  bool prefix_read_ = false;        // the next read asks for a fragment prefix only
  std::optional<inbound_reader::result> ready_;  // a message a direct read completed, for next()
};

}  // namespace cnode::dist
