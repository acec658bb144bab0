#pragma once
// A coroutine parked until code on the same strand resumes it. Waking it is a call that runs the coroutine on the
// spot, where a timer cancel posts the completion to the scheduler (with several threads, a futex wake of another
// thread and a context switch per message: the largest cost in the runtime's profile before this).
//
//   co_await park.wait();   // on the strand
//   park.resume();          // on the same strand, from a handler or another coroutine: runs the parked one now
//
// A parking belongs to its io_context as a timer does: when the io_context shuts down, a coroutine still parked is
// destroyed with the other pending operations (no cycle through the coroutine frame outlives the io_context).
#include <mutex>
#include <optional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace cnode::dist {

class parking {
 public:
  explicit parking(const boost::asio::any_io_executor& ex);
  ~parking();
  parking(const parking&) = delete;
  parking& operator=(const parking&) = delete;

  // Suspends the calling coroutine until resume() (or the io_context's shutdown, which destroys it). What wait()
  // returns is an async operation (Asio's `co_await op` of an awaitable frame): co_await hands it the coroutine's
  // thread once the frame is suspended, and it is kept here as it is. No frame is made for the wait (through
  // use_awaitable, async_initiate's own coroutine frame, 144 bytes, lived as long as the wait).
  struct wait_op {
    parking* self;
    template <boost::asio::completion_token_for<void()> Token>
    auto operator()(Token&& token) {
      return boost::asio::async_initiate<Token, void()>(
          [p = self](auto handler) { p->handler_.emplace(std::move(handler)); }, token);
    }
  };
  wait_op wait() noexcept { return wait_op{this}; }
  // Runs the parked coroutine until its next suspension; false if none is parked.
  bool resume() {
    if (!handler_) return false;
    auto h = std::move(*handler_);
    handler_.reset();
    std::move(h)();
    return true;
  }
  bool parked() const noexcept { return handler_.has_value(); }

 private:
  friend class parking_service;
  // What co_await hands the operation: the waiting coroutine's thread (a pointer to its stack), kept as it is
  // rather than type-erased (an any_completion_handler allocates a block per wait, held as long as the wait).
  using handler_type = boost::asio::detail::awaitable_async_op_handler<void(), boost::asio::any_io_executor>;
  std::optional<handler_type> handler_;
  class parking_service* service_;
  // The service's list of its parkings, threaded through them (one per process: no node allocated for it).
  parking* prev_ = nullptr;
  parking* next_ = nullptr;
};

// The io_context's record of its parkings (one per io_context).
class parking_service : public boost::asio::execution_context::service {
 public:
  using key_type = parking_service;
  static inline boost::asio::execution_context::id id;
  explicit parking_service(boost::asio::execution_context& ctx) : boost::asio::execution_context::service(ctx) {}
  void add(parking* p) {
    std::lock_guard lk(mu_);
    p->prev_ = nullptr;
    p->next_ = head_;
    if (head_) head_->prev_ = p;
    head_ = p;
  }
  void remove(parking* p) {
    std::lock_guard lk(mu_);
    if (p->prev_) p->prev_->next_ = p->next_;
    else head_ = p->next_;
    if (p->next_) p->next_->prev_ = p->prev_;
    p->prev_ = p->next_ = nullptr;
  }

 private:
  void shutdown() override;
  std::mutex mu_;
  parking* head_ = nullptr;
};

}  // namespace cnode::dist
