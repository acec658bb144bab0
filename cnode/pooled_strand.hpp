#pragma once
// A process's serializer: an executor over Asio's io_context::strand, whose implementations are a fixed pool per
// io_context (193 of them, made on first use; a strand picks one by hashing its address), where asio::strand<>
// gives every strand a heap block of its own (72 bytes and a 24-byte shared_ptr control block: a third of an idle
// process's heap once its frames were gone). Two processes that share an implementation are serialized together:
// the handlers of either never run at once, more than a process needs and never less. Each implementation has its
// own lock, as strand<>'s do (theirs come from a pool of 193 as well): no lock is shared by every process.
//
// 24 bytes: it fits inside an any_io_executor's own buffer (no heap block for it either).
#include <memory>
#include <utility>

#include <boost/asio/execution.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/io_context_strand.hpp>
#include "dist/wake_hold.hpp"

namespace cnode {

class pooled_strand {
 public:
  explicit pooled_strand(boost::asio::io_context& ctx) : strand_(ctx) {}

  boost::asio::io_context& query(boost::asio::execution::context_t) const noexcept { return strand_.context(); }
  boost::asio::execution::blocking_t query(boost::asio::execution::blocking_t) const noexcept {
    return never_ ? boost::asio::execution::blocking_t(boost::asio::execution::blocking.never)
                  : boost::asio::execution::blocking_t(boost::asio::execution::blocking.possibly);
  }
  pooled_strand require(boost::asio::execution::blocking_t::never_t) const noexcept { return with_never(true); }
  pooled_strand require(boost::asio::execution::blocking_t::possibly_t) const noexcept { return with_never(false); }

  // possibly blocking (dispatch): at once if this thread is already in the strand, or can enter it now; never
  // blocking (post): queued.
  //
  // Each handler runs under a dist::writer_wake_hold: what the process sends in that run wakes its connections'
  // writers once, when the run ends, on this thread (dist/connection.hpp).
  template <typename F>
  void execute(F&& f) const {
    auto held = [f = std::forward<F>(f)]() mutable {
      dist::writer_wake_hold hold;
      std::move(f)();
    };
    if (never_) strand_.post(std::move(held), std::allocator<void>());
    else strand_.dispatch(std::move(held), std::allocator<void>());
  }
  bool running_in_this_thread() const noexcept { return strand_.running_in_this_thread(); }
  boost::asio::io_context::executor_type inner_executor() const noexcept { return strand_.context().get_executor(); }

  friend bool operator==(const pooled_strand& a, const pooled_strand& b) noexcept {
    return a.strand_ == b.strand_ && a.never_ == b.never_;
  }
  friend bool operator!=(const pooled_strand& a, const pooled_strand& b) noexcept { return !(a == b); }

 private:
  pooled_strand with_never(bool never) const noexcept {
    pooled_strand s(*this);
    s.never_ = never;
    return s;
  }
  boost::asio::io_context::strand strand_;
  bool never_ = false;
};

static_assert(boost::asio::execution::is_executor<pooled_strand>::value);

}  // namespace cnode
