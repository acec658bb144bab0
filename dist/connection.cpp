#include "dist/connection.hpp"

#include <array>
#include <exception>
#include <iterator>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/co_spawn.hpp>
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
      wake_(strand_),
      tick_timer_(strand_),
      peer_(std::move(peer)),
      this_node_(std::move(this_node)),
      options_(options),
      handler_(std::move(handler)),
      in_(options.max_packet),
      ticker_(options.tick_intensity == 0 ? 1 : options.tick_intensity, !peer_.published()),
      tls_(stream_.is_tls()) {
  if (options_.tick_intensity == 0) options_.tick_intensity = 1;
  in_.append(leftover);
  boost::system::error_code ignored;
  stream_.socket().set_option(asio::ip::tcp::no_delay(true), ignored);  // dist connections set nodelay too
}

connection::~connection() = default;

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
  asio::co_spawn(strand_, reader(self), on_exit);
  asio::co_spawn(strand_, writer(self), on_exit);
  asio::co_spawn(strand_, tick_loop(self), on_exit);
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
  std::lock_guard lk(mu_);
  s.queued_bytes = queued_bytes_;
  s.waiting_senders = waiters_.size();
  return s;
}

// ---- sending ----

void connection::enqueue_locked(std::vector<std::byte> packet) {
  queued_bytes_ += packet.size();
  if (!packet.empty()) ++data_queued_total_;
  queue_.push_back(std::move(packet));
  if (writer_sleeping_) {
    writer_sleeping_ = false;
    // The writer is parked on wake_ (it parked on the strand while holding mu_, so the cancel cannot overtake it).
    asio::post(strand_, [self = shared_from_this()] { self->wake_.cancel(); });
  }
}

void connection::complete(asio::any_completion_handler<void(std::error_code)> handler, std::error_code ec) {
  // Through our strand, then on the handler's own executor: never inline in the initiating call.
  asio::post(strand_, asio::append(std::move(handler), ec));
}

void connection::initiate_send(std::vector<std::byte> packet,
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
  if (waiters_.empty() && queued_bytes_ < options_.outbound_limit) {
    enqueue_locked(std::move(packet));
    lk.unlock();
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
  waiters_.push_back(waiter{id, std::move(packet), std::move(handler)});
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

bool connection::try_send(std::vector<std::byte>& packet) {
  if (packet.empty()) return false;
  std::lock_guard lk(mu_);
  if (down_.load(std::memory_order_relaxed) || !waiters_.empty() || queued_bytes_ >= options_.outbound_limit)
    return false;
  enqueue_locked(std::move(packet));
  packet.clear();
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
    waiters.swap(waiters_);
  }
  stream_.close();
  wake_.cancel();
  tick_timer_.cancel();
  for (auto& w : waiters) complete(std::move(w.handler), reason);
  // Dropping the handler afterwards breaks the usual cycle (the handler holding its connection).
  if (auto h = std::move(handler_)) h->on_down(*this, reason);
}

// ---- the three coroutines ----

bool connection::drain_packets() {
  for (;;) {
    if (down_.load(std::memory_order_relaxed)) return false;
    std::span<const std::byte> packet;
    switch (in_.next(packet)) {
      case frame_buffer::result::need_more: return true;
      case frame_buffer::result::too_large: shutdown(error::packet_too_large); return false;
      case frame_buffer::result::tick: {
        ticks_in_.fetch_add(1, std::memory_order_relaxed);
        const bool answer = options_.answer_ticks && !wrote_since_tick_in_;
        wrote_since_tick_in_ = false;
        if (answer) {
          std::lock_guard lk(mu_);
          if (queue_.empty()) enqueue_locked({});
        }
        break;
      }
      case frame_buffer::result::packet:
        packets_in_.fetch_add(1, std::memory_order_relaxed);
        try {
          if (handler_) handler_->on_packet(*this, packet);
        } catch (...) {
          shutdown(error::handler_failed);
          return false;
        }
        break;
    }
  }
}

asio::awaitable<void> connection::reader(std::shared_ptr<connection> /*keeps us alive*/) {
  if (!drain_packets()) co_return;  // what came with the handshake's last read
  for (;;) {
    const auto room = in_.prepare();
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(room.data(), room.size()), as_tuple(use_awaitable));
    if (down_.load(std::memory_order_relaxed)) co_return;
    if (ec) {
      shutdown(io_reason(ec));
      co_return;
    }
    bytes_in_.fetch_add(n, std::memory_order_relaxed);
    in_.commit(n);
    if (!drain_packets()) co_return;
  }
}

asio::awaitable<void> connection::writer(std::shared_ptr<connection> /*keeps us alive*/) {
  std::vector<std::vector<std::byte>> batch;
  std::vector<std::array<std::byte, 4>> headers;
  std::vector<asio::const_buffer> buffers;
  for (;;) {
    bool sleep = false;
    {
      std::lock_guard lk(mu_);
      if (down_.load(std::memory_order_relaxed)) co_return;
      if (queue_.empty()) {
        writer_sleeping_ = true;
        sleep = true;
      } else {
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
    }
    if (sleep) {
      wake_.expires_at(clock::time_point::max());
      co_await wake_.async_wait(as_tuple(use_awaitable));
      continue;
    }
    // One gathered write for the whole batch: each packet behind its 4-byte length.
    headers.resize(batch.size());
    buffers.clear();
    std::size_t payload = 0, ticks = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      put_packet_header(headers[i].data(), static_cast<std::uint32_t>(batch[i].size()));
      buffers.push_back(asio::buffer(headers[i]));
      if (batch[i].empty())
        ++ticks;
      else
        buffers.push_back(asio::buffer(batch[i]));
      payload += batch[i].size();
    }
    writing_ = true;
    write_started_ = clock::now();
    auto [ec, n] = co_await asio::async_write(stream_, buffers, as_tuple(use_awaitable));
    writing_ = false;
    if (down_.load(std::memory_order_relaxed)) co_return;
    if (ec) {
      shutdown(io_reason(ec));
      co_return;
    }
    bytes_out_.fetch_add(n, std::memory_order_relaxed);
    packets_out_.fetch_add(batch.size() - ticks, std::memory_order_relaxed);
    ticks_out_.fetch_add(ticks, std::memory_order_relaxed);
    writes_.fetch_add(1, std::memory_order_relaxed);
    wrote_since_tick_in_ = true;
    batch.clear();
    // Room again: let waiting senders in, oldest first, while under the limit.
    std::vector<asio::any_completion_handler<void(std::error_code)>> admitted;
    {
      std::lock_guard lk(mu_);
      queued_bytes_ -= payload;
      while (!waiters_.empty() && queued_bytes_ < options_.outbound_limit) {
        auto& w = waiters_.front();
        enqueue_locked(std::move(w.packet));
        admitted.push_back(std::move(w.handler));
        waiters_.pop_front();
      }
    }
    for (auto& h : admitted) complete(std::move(h), {});
  }
}

asio::awaitable<void> connection::tick_loop(std::shared_ptr<connection> /*keeps us alive*/) {
  const auto interval =
      std::max(std::chrono::milliseconds(1), options_.net_ticktime / static_cast<int>(options_.tick_intensity));
  for (;;) {
    tick_timer_.expires_after(interval);
    co_await tick_timer_.async_wait(as_tuple(use_awaitable));
    if (down_.load(std::memory_order_relaxed)) co_return;
    if (writing_ && clock::now() - write_started_ >= options_.net_ticktime) {
      shutdown(error::send_timeout);  // the peer stopped reading
      co_return;
    }
    bool queue_empty;
    std::uint64_t written;
    {
      std::lock_guard lk(mu_);
      queue_empty = queue_.empty() && !writing_;
      written = data_queued_total_;
    }
    switch (ticker_.on_interval(bytes_in_.load(std::memory_order_relaxed), written, queue_empty)) {
      case ticker::action::timeout: shutdown(error::net_tick_timeout); co_return;
      case ticker::action::send_tick: {
        std::lock_guard lk(mu_);
        enqueue_locked({});
        break;
      }
      case ticker::action::none: break;
    }
  }
}

}  // namespace cnode::dist
