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
//
// basic_parking<Handlers...> also keeps the handlers of operations of the owner's own (cnode::process's receive(),
// which completes with a message): park(h) keeps one, take<H>() hands it back to be called.
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace cnode::dist {

class parking_service;

// What the io_context's parking service knows of a parking: its place in the list, and how to take its handler
// away at shutdown.
class parking_base {
 public:
  parking_base(const parking_base&) = delete;
  parking_base& operator=(const parking_base&) = delete;

 protected:
  // drop: moves what is parked (if anything) into the list, where it is destroyed after the service's lock.
  using drop_fn = void (*)(parking_base&, std::vector<std::shared_ptr<void>>&);
  parking_base(const boost::asio::any_io_executor& ex, drop_fn drop);
  ~parking_base();

 private:
  friend class parking_service;
  drop_fn drop_;
  parking_service* service_;
  // The service's list of its parkings, threaded through them (one per process: no node allocated for it).
  parking_base* prev_ = nullptr;
  parking_base* next_ = nullptr;
};

// What co_await hands an async operation that completes with void(): the waiting coroutine's thread (a pointer to
// its stack), kept as it is rather than type-erased (an any_completion_handler allocates a block per wait, held as
// long as the wait).
using wait_handler = boost::asio::detail::awaitable_async_op_handler<void(), boost::asio::any_io_executor>;

template <typename... Handlers>
class basic_parking : public parking_base {
 public:
  explicit basic_parking(const boost::asio::any_io_executor& ex) : parking_base(ex, &drop) {}

  // Suspends the calling coroutine until resume() (or the io_context's shutdown, which destroys it). What wait()
  // returns is an async operation (Asio's `co_await op` of an awaitable frame): co_await hands it the coroutine's
  // thread once the frame is suspended, and it is kept here as it is. No frame is made for the wait (through
  // use_awaitable, async_initiate's own coroutine frame, 144 bytes, lived as long as the wait).
  struct wait_op {
    basic_parking* self;
    template <boost::asio::completion_token_for<void()> Token>
    auto operator()(Token&& token) {
      return boost::asio::async_initiate<Token, void()>(
          [p = self](wait_handler handler) { p->park(std::move(handler)); }, token);
    }
  };
  wait_op wait() noexcept { return wait_op{this}; }
  // Runs the coroutine parked in wait() until its next suspension; false if none is parked there.
  bool resume() {
    auto h = take<wait_handler>();
    if (!h) return false;
    (*h)();
    return true;
  }
  bool parked() const noexcept { return handler_.index() != 0; }

  // For an operation of the owner's own: keeps its handler (on the owner's strand, nothing parked yet).
  template <typename H>
  void park(H&& h) {
    handler_.template emplace<std::decay_t<H>>(std::forward<H>(h));
  }
  template <typename H>
  bool holds() const noexcept {
    return std::holds_alternative<H>(handler_);
  }
  // The parked handler of type H, taken out (nullopt if none of that type is parked).
  template <typename H>
  std::optional<H> take() {
    auto* p = std::get_if<H>(&handler_);
    if (!p) return std::nullopt;
    std::optional<H> h(std::move(*p));
    handler_.template emplace<0>();
    return h;
  }

 private:
  static void drop(parking_base& b, std::vector<std::shared_ptr<void>>& out) {
    auto& self = static_cast<basic_parking&>(b);
    if (self.handler_.index() == 0) return;
    std::visit(
        [&](auto& h) {
          using H = std::decay_t<decltype(h)>;
          if constexpr (!std::is_same_v<H, std::monostate>) out.push_back(std::make_shared<H>(std::move(h)));
        },
        self.handler_);
    self.handler_.template emplace<0>();
  }
  std::variant<std::monostate, wait_handler, Handlers...> handler_;
};

using parking = basic_parking<>;

// The io_context's record of its parkings (one per io_context).
class parking_service : public boost::asio::execution_context::service {
 public:
  using key_type = parking_service;
  static inline boost::asio::execution_context::id id;
  explicit parking_service(boost::asio::execution_context& ctx) : boost::asio::execution_context::service(ctx) {}
  void add(parking_base* p) {
    std::lock_guard lk(mu_);
    p->prev_ = nullptr;
    p->next_ = head_;
    if (head_) head_->prev_ = p;
    head_ = p;
  }
  void remove(parking_base* p) {
    std::lock_guard lk(mu_);
    if (p->prev_) p->prev_->next_ = p->next_;
    else head_ = p->next_;
    if (p->next_) p->next_->prev_ = p->prev_;
    p->prev_ = p->next_ = nullptr;
  }

 private:
  void shutdown() override;
  std::mutex mu_;
  parking_base* head_ = nullptr;
};

}  // namespace cnode::dist
