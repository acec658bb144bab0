#include "dist/connection.hpp"

#include "etf/buffer_pool.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <iterator>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace cnode::dist {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;

std::shared_ptr<connection> connection::create(transport stream, peer_info peer, std::string this_node,
                                               connection_options options,
                                               std::shared_ptr<connection_handler> handler,
                                               std::span<const std::byte> leftover) {
  return std::shared_ptr<connection>(new connection(std::move(stream), std::move(peer), std::move(this_node),
                                                    options, std::move(handler), leftover));
}

connection::connection(transport stream, peer_info peer, std::string this_node, connection_options options,
                       std::shared_ptr<connection_handler> handler, std::span<const std::byte> leftover)
    : strand_(asio::make_strand(stream.get_executor())),
      stream_(std::move(stream)),
      writer_park_(strand_),
      tick_timer_(strand_),
      peer_(std::move(peer)),
      this_node_(std::move(this_node)),
      options_(options),
      handler_(std::move(handler)),
      inbound_(peer_.effective, options.max_packet, options.partial_budget),
      ticker_(options.tick_intensity == 0 ? 1 : options.tick_intensity, !peer_.published()),
      headered_(inbound_.headered()),
      fragments_(inbound_.fragments()),
      atom_cache_((peer_.effective & dflag::dist_hdr_atom_cache) != 0),
      tls_(stream_.is_tls()) {
  if (options_.tick_intensity == 0) options_.tick_intensity = 1;
  inbound_.append(leftover);
  boost::system::error_code ignored;
  stream_.socket().set_option(asio::ip::tcp::no_delay(true), ignored);  // dist connections set nodelay too
}

connection::~connection() = default;

void connection_handler::on_message(connection& c, inbound_message& m) {
  if (!m.headered) {
    on_packet(c, m.bytes);
    return;
  }
  std::vector<std::byte> p;
  self_contained_packet(m, p);
  on_packet(c, p);
}

void connection::start() {
  {
    std::lock_guard lk(mu_);
    if (started_) return;
    started_ = true;
  }
  auto self = shared_from_this();
  // A coroutine that dies of an exception takes only this connection down.
  auto on_exit = [self](std::exception_ptr e) {
    if (e) asio::post(self->strand_, [self] { self->shutdown(error::handler_failed); });
  };
  // From a handler of the strand, never inline in the caller: start() is called under the distribution's lock,
  // and the reader hands packets to processes that may run on its thread (process::run_here) and lock it again.
  asio::post(strand_, [self, on_exit] {
    asio::co_spawn(self->strand_, self->reader(self), on_exit);
    asio::co_spawn(self->strand_, self->writer(self), on_exit);
    asio::co_spawn(self->strand_, self->tick_loop(self), on_exit);
  });
}

connection_stats connection::stats() const {
  connection_stats s;
  s.bytes_in = bytes_in_.load(std::memory_order_relaxed);
  s.bytes_out = bytes_out_.load(std::memory_order_relaxed);
  s.packets_in = packets_in_.load(std::memory_order_relaxed);
  s.packets_out = packets_out_.load(std::memory_order_relaxed);
  s.ticks_in = ticks_in_.load(std::memory_order_relaxed);
  s.ticks_out = ticks_out_.load(std::memory_order_relaxed);
  s.writes = writes_.load(std::memory_order_relaxed);
  s.fragments_in = fragments_in_.load(std::memory_order_relaxed);
  s.fragments_out = fragments_out_.load(std::memory_order_relaxed);
  s.partial_bytes = partial_bytes_.load(std::memory_order_relaxed);
  std::lock_guard lk(mu_);
  s.queued_bytes = queued_bytes_ + streaming_bytes_;
  s.streaming_bytes = streaming_bytes_;
  s.waiting_senders = waiters_.size();
  return s;
}

// ---- sending ----

bool connection::enqueue_locked(out_packet packet, std::uint64_t key) {
  const std::size_t size = packet.size();
  const bool large = is_large(size);
  (large ? streaming_bytes_ : queued_bytes_) += size;
  if (!packet.empty()) ++data_queued_total_;
  queue_.push_back(queued{std::move(packet), key, large, size});
  if (!writer_sleeping_) return false;
  writer_sleeping_ = false;  // one wake per park
  return true;
}

namespace {
bool wake_holds_enabled = false;  // set once, before any thread but main runs
thread_local int wake_hold_depth = 0;
thread_local std::vector<std::shared_ptr<connection>> held_wakes;
}  // namespace

void writer_wake_hold::enable(bool on) noexcept { wake_holds_enabled = on; }

writer_wake_hold::writer_wake_hold() noexcept { ++wake_hold_depth; }

writer_wake_hold::~writer_wake_hold() {
  if (--wake_hold_depth != 0) return;
  // A writer woken here may run at once and send, and what it runs may hold and release again: take the list first.
  while (!held_wakes.empty()) {
    auto c = std::move(held_wakes.back());
    held_wakes.pop_back();
    try {
      c->wake_writer_now();
    } catch (...) {
      // Only an allocation can fail here. The writer was marked awake and will not be woken by a later send:
      // close the connection rather than leave its packets queued for ever.
      try {
        c->close(error::handler_failed);
      } catch (...) {
      }
    }
  }
}

void connection::wake_writer() {
  if (wake_hold_depth > 0 && wake_holds_enabled && !strand_.running_in_this_thread()) {
    held_wakes.push_back(shared_from_this());
    return;
  }
  wake_writer_now();
}

void connection::wake_writer_now() {
  // The writer parked on the strand while holding mu_, so the writer_sleeping_ its waker saw means it is parked
  // once the strand is free. Resuming it is a call: the packet goes on the wire from this thread, no hand-over.
  if (strand_.running_in_this_thread()) {
    // Inside the reader's hand-over (a process it ran replied): the reader resumes the writer when it is done with
    // the packet, before its next read. Elsewhere on the strand (the ticker): after the current handler.
    if (in_drain_) {
      wake_after_drain_ = true;
      return;
    }
    asio::post(strand_, [self = shared_from_this()] { self->writer_park_.resume(); });
    return;
  }
  // Strand idle: runs here and now; busy on another thread: queued behind what runs there.
  asio::dispatch(strand_, [self = shared_from_this()] { self->writer_park_.resume(); });
}

void connection::complete(asio::any_completion_handler<void(std::error_code)> handler, std::error_code ec) {
  // Through our strand, then on the handler's own executor: never inline in the initiating call.
  asio::post(strand_, asio::append(std::move(handler), ec));
}

bool connection::admissible_locked(std::uint64_t key, bool large) const {
  // A small packet needs room among the whole packets; a large one, room overall (so at most about one
  // fragmented message is in flight past the limit, and a small sender never waits for a large one).
  if (large ? queued_bytes_ + streaming_bytes_ >= options_.outbound_limit : queued_bytes_ >= options_.outbound_limit)
    return false;
  for (const auto& w : waiters_)
    if (w.key == key || w.large == large) return false;  // its own earlier packets, or its class's queue, first
  return true;
}

void connection::initiate_send(out_packet packet, std::uint64_t key,
                               asio::any_completion_handler<void(std::error_code)> handler) {
  std::unique_lock lk(mu_);
  if (down_.load(std::memory_order_relaxed)) {
    const auto reason = down_reason_;
    lk.unlock();
    complete(std::move(handler), reason);
    return;
  }
  if (packet.empty()) {  // an empty packet is a tick on the wire: the caller's bug, not a message
    lk.unlock();
    complete(std::move(handler), std::make_error_code(std::errc::invalid_argument));
    return;
  }
  const bool large = is_large(packet.size());
  if (admissible_locked(key, large)) {
    const bool wake = enqueue_locked(std::move(packet), key);
    lk.unlock();
    if (wake) wake_writer();
    complete(std::move(handler), {});
    return;
  }
  // Busy: the sender waits for room, in order (busy_dist_port).
  const auto id = ++next_waiter_id_;
  auto slot = asio::get_associated_cancellation_slot(handler);
  if (slot.is_connected()) {
    slot.assign([weak = weak_from_this(), id](asio::cancellation_type) {
      if (auto self = weak.lock()) self->cancel_waiter(id);
    });
  }
  waiters_.push_back(waiter{id, std::move(packet), std::move(handler), key, large});
}

void connection::cancel_waiter(std::uint64_t id) {
  std::unique_lock lk(mu_);
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->id != id) continue;
    auto h = std::move(it->handler);
    waiters_.erase(it);
    lk.unlock();
    complete(std::move(h), std::make_error_code(std::errc::operation_canceled));
    return;
  }
}

asio::awaitable<std::error_code> connection::send(std::vector<std::byte> packet) {
  // Room now: no round trip through the scheduler (a coroutine may resume itself, a handler could not).
  if (try_send(packet)) co_return std::error_code{};
  auto [ec] = co_await async_send(std::move(packet), as_tuple(use_awaitable));
  co_return ec;
}

bool connection::try_send(std::vector<std::byte>& packet, std::uint64_t order_key) {
  out_packet p(std::move(packet));
  if (try_send(p, order_key)) return true;
  packet = std::move(p.bytes);  // untouched
  return false;
}

bool connection::try_send(out_packet& packet, std::uint64_t order_key) {
  if (packet.empty()) return false;
  bool wake;
  {
    std::lock_guard lk(mu_);
    if (down_.load(std::memory_order_relaxed) || !admissible_locked(order_key, is_large(packet.size())))
      return false;
    wake = enqueue_locked(std::move(packet), order_key);
  }
  packet = {};
  if (wake) wake_writer();
  return true;
}

bool connection::try_send_small(std::span<const std::byte> packet, bool header_form, std::uint64_t order_key) {
  if (packet.empty() || packet.size() > run_packet_max || header_form != headered_) return false;
  // The first byte tells the form: 112 pass-through, 131 a header (whose form conversions the writer would do).
  if (packet[0] != (headered_ ? std::byte{131} : std::byte{112})) return false;
  const std::size_t framed = 4 + packet.size();
  bool wake = false;
  {
    std::lock_guard lk(mu_);
    // While a message goes out in fragments its key's later packets wait behind it (place): a run, which holds
    // packets of many keys, cannot; so runs are made only while nothing is being fragmented (streaming_bytes_
    // counts a large packet from when it is queued until its last fragment is written).
    if (down_.load(std::memory_order_relaxed) || streaming_bytes_ != 0 || !admissible_locked(order_key, false))
      return false;
    constexpr std::size_t run_bytes_max = 64 * 1024;
    if (queue_.empty() || queue_.back().run == 0 || queue_.back().packet.bytes.size() + framed > run_bytes_max) {
      queued q;
      if (!spare_runs_.empty()) {
        q.packet.bytes = std::move(spare_runs_.back());
        spare_runs_.pop_back();
      } else {
        q.packet.bytes.reserve(16 * 1024);
      }
      queue_.push_back(std::move(q));
      if (writer_sleeping_) {
        writer_sleeping_ = false;  // one wake per park
        wake = true;
      }
    }
    queued& run = queue_.back();
    auto& bytes = run.packet.bytes;
    const std::size_t at = bytes.size();
    bytes.resize(at + framed);
    put_packet_header(bytes.data() + at, static_cast<std::uint32_t>(packet.size()));
    std::memcpy(bytes.data() + at + 4, packet.data(), packet.size());
    ++run.run;
    run.accounted += framed;
    queued_bytes_ += framed;
    ++data_queued_total_;
  }
  if (wake) wake_writer();
  return true;
}

void connection::close(std::error_code reason) {
  asio::post(strand_, [self = shared_from_this(), reason] { self->shutdown(reason); });
}

void connection::shutdown(std::error_code reason) {
  std::deque<waiter> waiters;
  {
    std::lock_guard lk(mu_);
    if (down_.load(std::memory_order_relaxed)) return;
    down_.store(true, std::memory_order_release);
    down_reason_ = reason;
    queue_.clear();
    queued_bytes_ = 0;
    streaming_bytes_ = 0;
    waiters.swap(waiters_);
  }
  inbound_.clear();  // partial messages go with the connection (the writer drops its streams on its way out)
  partial_bytes_.store(0, std::memory_order_relaxed);
  stream_.close();
  writer_park_.resume();  // it sees down_ and ends
  tick_timer_.cancel();
  for (auto& w : waiters) complete(std::move(w.handler), reason);
  // Dropping the handler afterwards breaks the usual cycle (the handler holding its connection).
  if (auto h = std::move(handler_)) h->on_down(*this, reason);
}

// ---- the three coroutines ----

bool connection::drain_packets() {
  for (;;) {
    if (down_.load(std::memory_order_relaxed)) return false;
    const auto ev = inbound_.next();
    packets_in_.store(inbound_.packets(), std::memory_order_relaxed);
    fragments_in_.store(inbound_.fragment_packets(), std::memory_order_relaxed);
    ticks_in_.store(inbound_.ticks(), std::memory_order_relaxed);
    partial_bytes_.store(inbound_.partial_bytes(), std::memory_order_relaxed);
    switch (ev) {
      case inbound_path::event::need_more: return true;
      case inbound_path::event::failed: shutdown(inbound_.error()); return false;
      case inbound_path::event::tick: {
        const bool answer = options_.answer_ticks && !wrote_since_tick_in_;
        wrote_since_tick_in_ = false;
        if (answer) {
          bool wake = false;
          {
            std::lock_guard lk(mu_);
            if (queue_.empty()) wake = enqueue_locked({});
          }
          if (wake) wake_writer();
        }
        break;
      }
      case inbound_path::event::message: {
        try {
          if (handler_) handler_->on_message(*this, inbound_.message());
        } catch (...) {
          shutdown(error::handler_failed);
          return false;
        }
        inbound_.message_done();
        break;
      }
    }
  }
}

bool connection::hand_over() {
  in_drain_ = true;
  bool up = drain_packets();
  if (handler_) {
    try {
      handler_->on_batch_end(*this);
    } catch (...) {
      shutdown(error::handler_failed);
      up = false;
    }
  }
  in_drain_ = false;
  if (wake_after_drain_) {
    wake_after_drain_ = false;
    if (up) {  // the replies go out from this thread, before the next read
      reader_resumed_writer_ = true;
      writer_park_.resume();
      reader_resumed_writer_ = false;
    }
  }
  return up;
}

asio::awaitable<void> connection::reader(std::shared_ptr<connection> /*keeps us alive*/) {
  if (!hand_over()) co_return;  // what came with the handshake's last read
  for (;;) {
    const auto room = inbound_.prepare();
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(room.data(), room.size()), as_tuple(use_awaitable));
    if (down_.load(std::memory_order_relaxed)) co_return;
    if (ec) {
      shutdown(io_reason(ec));
      co_return;
    }
    bytes_in_.fetch_add(n, std::memory_order_relaxed);
    inbound_.commit(n);
    if (!hand_over()) co_return;
  }
}

void connection::place(queued q, std::vector<piece>& pieces) {
  if (q.run != 0) {
    // Packets of many senders, in the form they are sent in, framed: as they are (no stream was running when they
    // were queued, and none started since: see try_send_small).
    piece pc;
    pc.whole = std::move(q.packet);
    pc.accounted = q.accounted;
    pc.run = q.run;
    pieces.push_back(std::move(pc));
    return;
  }
  if (q.packet.empty()) {
    piece tick;
    tick.tick = true;
    pieces.push_back(std::move(tick));
    return;
  }
  for (auto& st : streams_) {
    if (st->key == q.key) {
      st->behind.push_back(std::move(q));
      return;
    }
  }
  // The form the peer's flags require (packets encoded before the connection existed may be in the other).
  // (A packet with externals is flattened first: conversions read its terms; only packets queued before the
  // connection existed may need one.)
  auto& bytes = q.packet.bytes;
  if (q.packet.deferred_header) {
    // Atom cache references for a peer that reads none: the terms are written again with the atoms inline.
    if (!atom_cache_ && !drop_atom_refs(q.packet, headered_)) return;  // our own encoding: cannot fail
  } else {
    if (!q.packet.externals.empty() && !bytes.empty() && headered_ != (bytes[0] == std::byte{131}))
      q.packet.flatten();
    std::vector<std::byte> converted;
    if (headered_ ? to_header_form(bytes, converted) : to_pass_through(bytes, converted))
      bytes = std::move(converted);
  }
  const bool deferred = q.packet.deferred_header;
  const std::size_t hl = !fragments_ ? 0 : deferred ? 1 : header_length(bytes);
  if (hl != 0 && q.packet.size() - (deferred ? 0 : hl) > options_.fragment_size) {
    streams_.push_back(std::make_unique<stream>(stream{std::move(q.packet), q.key, q.accounted, q.large, {}, {}}));
    return;
  }
  if (deferred) {
    // Its header now, in wire order: what it sets in the cache, the packets after it may count on.
    write_header(q.packet.refs, out_cache_, q.packet.head);
    q.packet.deferred_header = false;
  }
  piece pc;
  pc.whole = std::move(q.packet);
  pc.accounted = q.accounted;
  pc.large = q.large;
  pieces.push_back(std::move(pc));
}

void connection::take_fragment(std::size_t i, std::vector<piece>& pieces) {
  stream& st = *streams_[i];
  if (!st.frags) {
    // The first fragment: its header (with a deferred one's cache references) is written now, in wire order.
    std::size_t hl;
    if (st.packet.deferred_header) {
      write_header(st.packet.refs, out_cache_, st.packet.head);
      st.packet.deferred_header = false;
      hl = st.packet.head.size();
    } else {
      hl = header_length(st.packet.bytes);
    }
    std::vector<std::span<const std::byte>> segs;
    st.packet.segments(segs);
    st.frags.emplace(std::move(segs), hl, ++next_seq_, options_.fragment_size);
  }
  piece pc;
  pc.large = st.large;
  // What the queue counted it with, given back as its fragments go (the header written since is not counted).
  const std::size_t covered = st.frags->next(pc.head, pc.tail);
  pc.accounted = st.frags->done() ? st.accounted : std::min(covered, st.accounted);
  st.accounted -= pc.accounted;
  pieces.push_back(std::move(pc));
  fragments_out_.fetch_add(1, std::memory_order_relaxed);
  if (!st.frags->done()) return;
  // Its last fragment: the stream's packet must live until the write completes; what waited behind it goes next.
  std::deque<queued> behind = std::move(st.behind);
  retired_.push_back(std::move(streams_[i]));
  streams_.erase(streams_.begin() + static_cast<std::ptrdiff_t>(i));
  for (auto& q : behind) place(std::move(q), pieces);
}

namespace {
std::size_t buffer_bytes(const std::vector<asio::const_buffer>& bufs) {
  std::size_t n = 0;
  for (const auto& b : bufs) n += b.size();
  return n;
}
// Drops the first n bytes of the sequence (what a partial write took).
void consume_front(std::vector<asio::const_buffer>& bufs, std::size_t n) {
  std::size_t whole = 0;
  while (whole < bufs.size() && n >= bufs[whole].size()) n -= bufs[whole++].size();
  bufs.erase(bufs.begin(), bufs.begin() + static_cast<std::ptrdiff_t>(whole));
  if (n > 0 && !bufs.empty()) bufs.front() += n;
}
}  // namespace

asio::awaitable<void> connection::writer(std::shared_ptr<connection> /*keeps us alive*/) {
  std::vector<queued> batch;
  std::vector<piece> pieces;
  std::vector<std::array<std::byte, 4>> headers;
  std::vector<asio::const_buffer> buffers;
  std::vector<std::span<const std::byte>> segs;
  std::vector<std::vector<std::byte>> spare;  // written runs' buffers on their way back to spare_runs_
  // Fragments per write, across all streams: big enough for throughput, small enough that a small message
  // queued behind them waits for at most this much on the wire.
  const std::size_t fragment_bytes_per_write = 4 * options_.fragment_size;
  auto leave = [this] {
    streams_.clear();
    retired_.clear();
  };
  for (;;) {
    bool sleep = false;
    {
      std::lock_guard lk(mu_);
      if (down_.load(std::memory_order_relaxed)) {
        leave();
        co_return;
      }
      if (queue_.empty() && streams_.empty()) {
        writer_sleeping_ = true;
        sleep = true;
      } else {
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
    }
    if (sleep) {
      co_await writer_park_.wait();
      continue;
    }
    pieces.clear();
    for (auto& q : batch) place(std::move(q), pieces);
    batch.clear();
    // Round robin over the messages being fragmented, one fragment each per pass.
    std::size_t taken = 0;
    while (!streams_.empty() && taken < fragment_bytes_per_write) {
      for (std::size_t i = 0; i < streams_.size() && taken < fragment_bytes_per_write;) {
        const std::size_t before = streams_.size();
        take_fragment(i, pieces);
        taken += options_.fragment_size;
        if (streams_.size() == before) ++i;  // a finished stream was erased: i is already the next one
      }
    }
    // One gathered write for the whole batch: each packet behind its 4-byte length, its binaries (externals)
    // and fragments' data written from where they are.
    headers.resize(pieces.size());
    buffers.clear();
    std::size_t small = 0, large = 0, ticks = 0, runs = 0, run_pieces = 0;
    for (const piece& pc : pieces) run_pieces += pc.run != 0;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const piece& pc = pieces[i];
      if (pc.run != 0) {  // framed already
        buffers.push_back(asio::buffer(pc.whole.bytes));
        small += pc.accounted;
        runs += pc.run;
        continue;
      }
      const std::size_t at = buffers.size();
      buffers.push_back(asio::buffer(headers[i]));
      if (pc.tick) ++ticks;
      std::size_t len = 0;
      if (!pc.whole.externals.empty() || !pc.whole.head.empty()) {
        segs.clear();
        pc.whole.segments(segs);
        for (auto s : segs) buffers.push_back(asio::buffer(s.data(), s.size()));
      } else if (!pc.whole.bytes.empty()) {
        buffers.push_back(asio::buffer(pc.whole.bytes));
      }
      if (!pc.head.empty()) buffers.push_back(asio::buffer(pc.head));
      for (auto s : pc.tail) buffers.push_back(asio::buffer(s.data(), s.size()));
      for (std::size_t b = at + 1; b < buffers.size(); ++b) len += buffers[b].size();
      put_packet_header(headers[i].data(), static_cast<std::uint32_t>(len));
      (pc.large ? large : small) += pc.accounted;
    }
    writing_ = true;
    write_started_ = clock::now();
    // Replies to what the reader just handed over: what the socket takes at once goes from this thread, and only the
    // rest waits for the reactor (an async_write that completes at once still posts its completion: another
    // thread woken per reply). Woken by a sender elsewhere (a process streaming to this connection), the writer
    // keeps the async_write: while it is in flight, what the sender queues gathers into the next batch, where a
    // write that returned at once would put the writer back to sleep and cost a system call per message.
    boost::system::error_code ec;
    std::size_t n = 0;
    if (reader_resumed_writer_) {
      n = stream_.try_write_some(buffers, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
    }
    if (!ec && n < buffer_bytes(buffers)) {
      consume_front(buffers, n);
      auto [aec, an] = co_await asio::async_write(stream_, buffers, as_tuple(use_awaitable));
      ec = aec;
      n += an;
    }
    writing_ = false;
    retired_.clear();
    if (down_.load(std::memory_order_relaxed)) {
      leave();
      co_return;
    }
    if (ec) {
      shutdown(io_reason(ec));
      leave();
      co_return;
    }
    bytes_out_.fetch_add(n, std::memory_order_relaxed);
    packets_out_.fetch_add(pieces.size() - ticks - run_pieces + runs, std::memory_order_relaxed);
    ticks_out_.fetch_add(ticks, std::memory_order_relaxed);
    writes_.fetch_add(1, std::memory_order_relaxed);
    wrote_since_tick_in_ = true;
    // The runs' buffers go back for the next runs (at most a few, and none grown past a run's size).
    for (piece& pc : pieces) {
      if (pc.run == 0 || pc.whole.bytes.capacity() > 128 * 1024) continue;
      pc.whole.bytes.clear();
      spare.push_back(std::move(pc.whole.bytes));
    }
    pieces.clear();
    // Room again: let waiting senders in, oldest first, while under the limit; a sender's packets keep their
    // order, and so does each class (whole packets, fragmented ones).
    std::vector<asio::any_completion_handler<void(std::error_code)>> admitted;
    {
      std::lock_guard lk(mu_);
      queued_bytes_ -= small;
      streaming_bytes_ -= large;
      while (!spare.empty()) {
        if (spare_runs_.size() < 4) spare_runs_.push_back(std::move(spare.back()));
        spare.pop_back();
      }
      std::vector<std::uint64_t> blocked_keys;
      bool blocked[2] = {false, false};
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        const bool key_blocked =
            std::find(blocked_keys.begin(), blocked_keys.end(), it->key) != blocked_keys.end();
        const bool room = it->large ? queued_bytes_ + streaming_bytes_ < options_.outbound_limit
                                    : queued_bytes_ < options_.outbound_limit;
        if (!key_blocked && !blocked[it->large] && room) {
          (void)enqueue_locked(std::move(it->packet), it->key);  // the writer itself: not parked
          admitted.push_back(std::move(it->handler));
          it = waiters_.erase(it);
        } else {
          blocked_keys.push_back(it->key);
          blocked[it->large] = true;
          ++it;
        }
      }
    }
    for (auto& h : admitted) complete(std::move(h), {});
  }
}

asio::awaitable<void> connection::tick_loop(std::shared_ptr<connection> /*keeps us alive*/) {
  const auto interval =
      std::max(std::chrono::milliseconds(1), options_.net_ticktime / static_cast<int>(options_.tick_intensity));
  for (;;) {
    if (down_.load(std::memory_order_relaxed)) co_return;  // closed before the coroutines started
    tick_timer_.expires_after(interval);
    co_await tick_timer_.async_wait(as_tuple(use_awaitable));
    if (down_.load(std::memory_order_relaxed)) co_return;
    etf::big_buffers().trim();  // big buffers idle since the last interval or longer go back to the system
    if (writing_ && clock::now() - write_started_ >= options_.net_ticktime) {
      shutdown(error::send_timeout);  // the peer stopped reading
      co_return;
    }
    bool queue_empty;
    std::uint64_t written;
    {
      std::lock_guard lk(mu_);
      queue_empty = queue_.empty() && !writing_ && streams_.empty();
      written = data_queued_total_;
    }
    switch (ticker_.on_interval(bytes_in_.load(std::memory_order_relaxed), written, queue_empty)) {
      case ticker::action::timeout: shutdown(error::net_tick_timeout); co_return;
      case ticker::action::send_tick: {
        bool wake;
        {
          std::lock_guard lk(mu_);
          wake = enqueue_locked({});
        }
        if (wake) wake_writer();
        break;
      }
      case ticker::action::none: break;
    }
  }
}

}  // namespace cnode::dist
