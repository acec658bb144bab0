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

  // Suspends the calling coroutine until resume() (or the io_context's shutdown, which destroys it).
  auto wait() {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void()>(
        [this](handler_type handler) { handler_.emplace(std::move(handler)); }, boost::asio::use_awaitable);
  }
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
  // What use_awaitable hands the initiation: the waiting coroutine's thread (a pointer to its stack), kept as it
  // is rather than type-erased (an any_completion_handler allocates a block per wait, held as long as the wait).
  using handler_type = boost::asio::detail::awaitable_handler<boost::asio::any_io_executor>;
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
