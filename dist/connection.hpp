#pragma once
// An established distribution connection: 4-byte framed packets over TCP or TLS (dist/transport.hpp), one reader and one writer coroutine,
// ticks, and a bounded outbound queue whose senders wait for room (the BEAM's +zdbbl busy_dist_port).
//
// Threading: everything runs on the connection's strand; async_send, try_send, close and stats may be called
// from any thread. The handler is called on the strand, one call at a time, in arrival order.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "dist/error.hpp"
#include "dist/fragment.hpp"
#include "dist/framing.hpp"
#include "dist/handshake.hpp"
#include "dist/inbound.hpp"
#include "dist/parking.hpp"
#include "dist/transport.hpp"
#include "dist/wake_hold.hpp"

namespace cnode::dist {

struct connection_options {
  std::chrono::milliseconds net_ticktime{60'000};  // kernel net_ticktime: down after this long without a byte
  unsigned tick_intensity = 4;                     // ticks per net_ticktime (kernel net_tickintensity)
  std::size_t outbound_limit = 1024 * 1024;        // queued bytes past which senders wait (erl +zdbbl)
  std::size_t max_packet = 128 * 1024 * 1024;      // a longer packet, or reassembled message, closes the connection
  // Bytes held for partial (fragmented) messages by all connections of the node; null: no node-wide bound.
  std::shared_ptr<dist::partial_budget> partial_budget;
  // Data bytes per outbound fragment (FRAGMENTS in effect); a message longer than this is sent in fragments,
  // interleaved with other senders' packets.
  std::size_t fragment_size = dist::fragment_size;
  // Answer a tick with a tick when we have written nothing since the last one, like ei-based C nodes do, so a
  // peer with a shorter net_ticktime than ours still hears from us in time. Never ping-pongs.
  bool answer_ticks = true;
};

struct connection_stats {
  std::uint64_t bytes_in = 0, bytes_out = 0;      // everything, headers and ticks included
  std::uint64_t packets_in = 0, packets_out = 0;  // non-tick packets
  std::uint64_t ticks_in = 0, ticks_out = 0;
  std::uint64_t writes = 0;                       // gathered writes: (packets_out + ticks_out) / writes = batch size
  std::size_t queued_bytes = 0;                   // payload bytes waiting to be written
  std::size_t waiting_senders = 0;                // senders suspended for room
  std::uint64_t fragments_in = 0, fragments_out = 0;  // fragment packets (131,69 / 131,70)
  std::size_t partial_bytes = 0;                  // held for inbound messages still missing fragments
  std::size_t streaming_bytes = 0;                // of outbound messages being sent in fragments
};

class connection;

// The upper layer (control messages) plugs in here.
class connection_handler {
 public:
  virtual ~connection_handler() = default;
  // One non-tick packet, without its length: for a connection without DIST_HDR_ATOM_CACHE/FRAGMENTS that is
  // 'p' (112), 131, ControlTerm[, 131, Payload]. The bytes are only valid during the call.
  virtual void on_packet(connection& c, std::span<const std::byte> packet) = 0;
  // One whole message (dist/fragment.hpp): a pass-through packet, or the terms after a distribution header with
  // its atom cache references resolved, possibly reassembled from fragments. The default hands on_packet the
  // pass-through packet, or a self-contained 131,68 packet (every reference a new cache entry) rebuilt from it.
  virtual void on_message(connection& c, inbound_message& m);
  // After the messages of one read have all been handed over (also when the connection went down meanwhile).
  virtual void on_batch_end(connection&) {}
  // Called exactly once, after which the connection sends and delivers nothing. reason_name(reason) gives the
  // BEAM's nodedown reason (connection_closed, net_tick_timeout, disconnected, ...).
  virtual void on_down(connection& c, std::error_code reason) = 0;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  using executor_type = boost::asio::strand<boost::asio::any_io_executor>;
  using clock = std::chrono::steady_clock;

  // `leftover`: bytes the handshake read past its last message (handshake::leftover()).
  static std::shared_ptr<connection> create(transport stream, peer_info peer,
                                            std::string this_node, connection_options options,
                                            std::shared_ptr<connection_handler> handler,
                                            std::span<const std::byte> leftover = {});
  ~connection();

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Starts the reader, writer and ticker. Call once.
  void start();

  // Queues one packet (without its length header; empty is not allowed: that is a tick). Completes with no
  // error once queued, after waiting while more than outbound_limit bytes are queued; with the down reason if
  // the connection is or goes down first. Senders are served in order.
  template <typename Token>
  auto async_send(std::vector<std::byte> packet, Token&& token) {
    return async_send(std::move(packet), 0, std::forward<Token>(token));
  }
  // order_key names the sender: packets with the same key go on the wire in order, whole; a packet sent in
  // fragments holds back only later packets of its own key (erl_ext_dist: a process finishes a fragmented message
  // before it sends another on the channel). Packets may be given in the pass-through or the 131,68,0 form: the
  // connection converts them to what the peer's flags require.
  template <typename Token>
  auto async_send(std::vector<std::byte> packet, std::uint64_t order_key, Token&& token) {
    return async_send(out_packet(std::move(packet)), order_key, std::forward<Token>(token));
  }
  // A packet with binaries left out of its bytes (out_packet): they go on the wire from the binaries themselves.
  template <typename Token>
  auto async_send(out_packet packet, std::uint64_t order_key, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::error_code)>(
        [this, order_key](auto handler, out_packet p) {
          initiate_send(std::move(p), order_key,
                        boost::asio::any_completion_handler<void(std::error_code)>(std::move(handler)));
        },
        token, std::move(packet));
  }
  // The same as a coroutine.
  boost::asio::awaitable<std::error_code> send(std::vector<std::byte> packet);
  // Queues without waiting if there is room and nobody is waiting; false (packet untouched) otherwise.
  bool try_send(std::vector<std::byte>& packet, std::uint64_t order_key = 0);
  bool try_send(out_packet& packet, std::uint64_t order_key = 0);
  // Queues a small packet (at most run_packet_max bytes, without its length) by copying it into the connection's
  // current run of small packets: one contiguous, already framed buffer that many packets share, written as one
  // piece (no allocation, no queue entry and no gathered buffer per packet). The bytes must already be in the
  // form this connection sends (header_form == headered()), hold no atom cache references and no binaries left
  // out. False, nothing queued, when they are not, when the packet is not admitted now (over the busy limit,
  // senders waiting, down), or while a message goes out in fragments; the caller then sends it as a packet.
  bool try_send_small(std::span<const std::byte> packet, bool header_form, std::uint64_t order_key = 0);
  static constexpr std::size_t run_packet_max = 2048;
  // Whether packets need a distribution header (DIST_HDR_ATOM_CACHE or FRAGMENTS in effect).
  bool headered() const noexcept { return headered_; }

  // Takes the connection down at once (reason disconnected, or the given one). Pending data is dropped, as
  // erlang:disconnect_node/1 does.
  void close(std::error_code reason = error::disconnected);

  bool is_up() const noexcept { return !down_.load(std::memory_order_acquire); }
  const peer_info& peer() const noexcept { return peer_; }
  const std::string& this_node() const noexcept { return this_node_; }
  connection_stats stats() const;
  executor_type get_executor() const noexcept { return strand_; }
  const connection_options& options() const noexcept { return options_; }
  bool is_tls() const noexcept { return tls_; }

 private:
  struct waiter {
    std::uint64_t id;
    out_packet packet;
    boost::asio::any_completion_handler<void(std::error_code)> handler;
    std::uint64_t key = 0;
    bool large = false;
  };
  struct queued {
    out_packet packet;  // empty: a tick
    std::uint64_t key = 0;
    bool large = false;             // counted in streaming_bytes_, not queued_bytes_
    std::size_t accounted = 0;      // the size it was counted with
    std::size_t run = 0;            // a run (try_send_small): packet.bytes holds this many framed packets
  };
  // One outbound message being sent in fragments (writer only).
  struct stream {
    out_packet packet;
    std::uint64_t key;
    std::size_t accounted;      // what the packet was counted with: given back fragment by fragment
    bool large;
    std::deque<queued> behind;  // later packets of the same key
    // Made when its first fragment is taken: a deferred header is written then, in wire order.
    std::optional<fragment_stream> frags;
  };
  // One gathered piece of a write: a whole packet (kept until written), or a fragment: its header (head), then its
  // data (tail: spans into the stream's packet and its binaries).
  struct piece {
    out_packet whole;
    std::vector<std::byte> head;
    std::vector<std::span<const std::byte>> tail;
    std::size_t accounted = 0;
    std::size_t run = 0;  // whole.bytes is a run of this many packets, each behind its length already
    bool large = false;
    bool tick = false;
  };

  connection(transport stream, peer_info peer, std::string this_node,
             connection_options options, std::shared_ptr<connection_handler> handler,
             std::span<const std::byte> leftover);

  void initiate_send(out_packet packet, std::uint64_t key,
                     boost::asio::any_completion_handler<void(std::error_code)> handler);
  bool is_large(std::size_t size) const noexcept { return fragments_ && size > options_.fragment_size; }
  bool admissible_locked(std::uint64_t key, bool large) const;  // mu_ held: may it go in now, ahead of waiters?
  // mu_ held. True when the writer was parked: the caller calls wake_writer() once mu_ is let go.
  [[nodiscard]] bool enqueue_locked(out_packet packet, std::uint64_t key = 0);
  void wake_writer();  // mu_ not held; from any thread
  void wake_writer_now();
  friend class writer_wake_hold;
  void place(queued q, std::vector<piece>& pieces);  // writer: into the batch, a new stream, or behind one
  void take_fragment(std::size_t i, std::vector<piece>& pieces);
  void cancel_waiter(std::uint64_t id);
  void complete(boost::asio::any_completion_handler<void(std::error_code)> handler, std::error_code ec);
  bool drain_packets();  // false once down
  bool hand_over();      // drain_packets, then the writer if a reply was queued meanwhile
  boost::asio::awaitable<void> reader(std::shared_ptr<connection> self);
  boost::asio::awaitable<void> writer(std::shared_ptr<connection> self);
  boost::asio::awaitable<void> tick_loop(std::shared_ptr<connection> self);
  void shutdown(std::error_code reason);  // on the strand

  executor_type strand_;
  transport stream_;
  parking writer_park_;                  // the writer sleeps here; wake_writer() resumes it
  boost::asio::steady_timer tick_timer_;
  peer_info peer_;
  std::string this_node_;
  connection_options options_;
  std::shared_ptr<connection_handler> handler_;
  inbound_path inbound_;  // framing, ticks, headers, fragments (sans-I/O)
  ticker ticker_;
  const bool headered_, fragments_;
  const bool atom_cache_;     // the peer reads atom cache references (DIST_HDR_ATOM_CACHE in effect)
  atom_out_cache out_cache_;  // writer only: the entries our headers have set at the peer
  std::atomic<std::size_t> partial_bytes_{0};
  std::deque<std::unique_ptr<stream>> streams_;    // writer only
  std::vector<std::unique_ptr<stream>> retired_;   // finished streams whose last fragment is being written
  std::uint64_t next_seq_ = 0;

  // Shared with senders on other threads.
  mutable std::mutex mu_;
  std::deque<queued> queue_;
  std::size_t queued_bytes_ = 0;     // whole packets
  std::size_t streaming_bytes_ = 0;  // messages sent in fragments, until their last fragment is written
  std::deque<waiter> waiters_;
  std::vector<std::vector<std::byte>> spare_runs_;  // written runs' buffers, kept for the next runs
  bool writer_sleeping_ = false;
  std::error_code down_reason_;
  std::atomic<bool> down_{false};
  bool started_ = false;
  const bool tls_;

  // Strand-only state.
  bool in_drain_ = false;            // the reader is handing packets over (and may be running a process)
  bool wake_after_drain_ = false;    // a packet was queued meanwhile: the reader resumes the writer after
  bool reader_resumed_writer_ = false;  // the writer runs inside the reader's hand-over: write without waiting
  bool wrote_since_tick_in_ = false;
  bool writing_ = false;
  clock::time_point write_started_{};
  std::uint64_t data_queued_total_ = 0;  // under mu_: non-tick packets ever queued (the ticker's "written")
  std::uint64_t next_waiter_id_ = 0;     // under mu_

  std::atomic<std::uint64_t> bytes_in_{0}, bytes_out_{0}, packets_in_{0}, packets_out_{0}, ticks_in_{0},
      ticks_out_{0}, writes_{0}, fragments_in_{0}, fragments_out_{0};
};

}  // namespace cnode::dist
