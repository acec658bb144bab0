// A C++ process: a coroutine with a mailbox, serialized on its own strand, honouring the BEAM's signals.
//
//   node.spawn([](process& self) -> asio::awaitable<void> {
//     self.register_name(atom("echo"));
//     for (;;) {
//       auto msg = co_await self.receive();          // or receive(pred, timeout): selective receive
//       ...
//     }
//   });
//
// Exit rules are Erlang's: a process dies when its body returns (reason normal), calls exit(reason) (or throws
// process_exit), throws another exception (reason {cpp_exception, What}), or receives an exit signal it does not
// trap. A C++ process cannot be interrupted in the middle of its own code: a kill takes effect at its next receive
// (every blocking call of this API is a receive), where process_exit is thrown; do not swallow process_exit.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cnode/mailbox.hpp"
#include "cnode/pooled_strand.hpp"
#include "cnode/signal.hpp"
#include "dist/parking.hpp"

namespace cnode {

namespace asio = boost::asio;
class node;

inline constexpr std::chrono::milliseconds infinity = std::chrono::milliseconds::max();

namespace detail {
// What a receive() without predicate or timeout completes with: the message, or the exit that ends the process
// (process_exit, thrown where the body co_awaits the receive).
struct received {
  std::optional<term> msg;
  std::exception_ptr exit;
};
}  // namespace detail
}  // namespace cnode

namespace boost::asio::detail {
// How co_await hands a receive() its message, or throws the exit that ends the process (Asio's own handler for a
// (std::exception_ptr, T) completion does not compile in Boost 1.81: its resume() tests the struct itself).
template <typename R, typename Executor>
class awaitable_async_op_handler<R(cnode::detail::received), Executor> : public awaitable_thread<Executor> {
 public:
  using result_type = cnode::detail::received*;
  awaitable_async_op_handler(awaitable_thread<Executor>* h, result_type& result)
      : awaitable_thread<Executor>(std::move(*h)), result_(result) {}
  void operator()(cnode::detail::received r) {
    result_ = &r;
    this->entry_point()->top_of_stack_->attach_thread(this);
    this->entry_point()->top_of_stack_->clear_cancellation_slot();
    this->pump();
  }
  static std::optional<cnode::term> resume(result_type& r) {
    if (r->exit) std::rethrow_exception(std::exchange(r->exit, nullptr));
    return std::move(r->msg);
  }

 private:
  result_type& result_;
};
}  // namespace boost::asio::detail

namespace cnode {

// exit/1 from inside a process body, and how a killed process's body is unwound.
struct process_exit : std::exception {
  term reason;
  explicit process_exit(term r) : reason(std::move(r)) {}
  const char* what() const noexcept override { return "process exit"; }
};

// What erlang:process_info/2 reports of a process, taken on its strand.
struct process_snapshot {
  std::size_t message_queue_len = 0;
  std::vector<atom> names;
  std::vector<term> links;
  std::vector<term> monitors;      // what this process monitors: pids, or {Name, Node}
  std::vector<term> monitored_by;  // the watchers
  bool trap_exit = false;
};

// The inbox's lock: four bytes (std::mutex is 40), held for a push or a swap of the inbox. A futex lock (0 free, 1
// held, 2 held with waiters): taking and releasing it free is one atomic operation each, and only a release with
// waiters wakes one (C++20 atomic wait on the word itself, which libstdc++ does with a futex for an int).
class inbox_lock {
 public:
  void lock() noexcept {
    int c = 0;
    if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
    if (c != 2) c = state_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      state_.wait(2, std::memory_order_relaxed);
      c = state_.exchange(2, std::memory_order_acquire);
    }
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  std::atomic<int> state_{0};
};

class process;

// A process's body: std::function<asio::awaitable<void>(process&)>'s job (copyable, empty when default made or set
// to nullptr) in 24 bytes where std::function takes 32, with a 16-byte buffer that keeps in place any callable of up
// to 16 bytes that moves without throwing. std::function keeps only trivially copyable ones in place: a lambda
// that captures a term (the probe's owner) cost a heap block of its own (32 bytes with malloc's header), held for
// the process's life. A callable kept in place is not moved once the body has been called (a lambda coroutine's
// frame refers to it), as in std::function.
class process_body {
 public:
  process_body() noexcept = default;
  process_body(std::nullptr_t) noexcept {}
  template <typename F, typename D = std::decay_t<F>,
            typename = std::enable_if_t<!std::is_same_v<D, process_body> && !std::is_same_v<D, std::nullptr_t> &&
                                        std::is_invocable_r_v<asio::awaitable<void>, D&, process&>>>
  process_body(F&& f) {  // NOLINT: implicit, as std::function's
    if constexpr (in_place<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      ops_ = &in_place_ops<D>;
    } else {
      *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
      ops_ = &on_heap_ops<D>;
    }
  }
  process_body(const process_body& o) : ops_(nullptr) {
    if (o.ops_) o.ops_->copy(o.buf_, buf_);
    ops_ = o.ops_;
  }
  process_body(process_body&& o) noexcept : ops_(o.ops_) {
    if (ops_) ops_->move(o.buf_, buf_);
    o.ops_ = nullptr;
  }
  process_body& operator=(process_body o) noexcept {
    reset();
    if (o.ops_) o.ops_->move(o.buf_, buf_);
    ops_ = std::exchange(o.ops_, nullptr);
    return *this;
  }
  ~process_body() { reset(); }
  explicit operator bool() const noexcept { return ops_ != nullptr; }
  asio::awaitable<void> operator()(process& p) {
    if (!ops_) throw std::bad_function_call();
    return ops_->call(buf_, p);
  }

 private:
  struct ops_type {
    asio::awaitable<void> (*call)(void* buf, process& p);
    void (*copy)(const void* from, void* to);
    void (*move)(void* from, void* to) noexcept;  // and destroys what it moved from
    void (*destroy)(void* buf) noexcept;
  };
  template <typename D>
  static constexpr bool in_place =
      sizeof(D) <= 16 && alignof(D) <= 8 && std::is_nothrow_move_constructible_v<D>;
  template <typename D>
  static constexpr ops_type in_place_ops{
      [](void* b, process& p) -> asio::awaitable<void> { return (*static_cast<D*>(b))(p); },
      [](const void* from, void* to) { ::new (to) D(*static_cast<const D*>(from)); },
      [](void* from, void* to) noexcept {
        ::new (to) D(std::move(*static_cast<D*>(from)));
        static_cast<D*>(from)->~D();
      },
      [](void* b) noexcept { static_cast<D*>(b)->~D(); }};
  template <typename D>
  static constexpr ops_type on_heap_ops{
      [](void* b, process& p) -> asio::awaitable<void> { return (**static_cast<D**>(b))(p); },
      [](const void* from, void* to) { *static_cast<D**>(to) = new D(**static_cast<D* const*>(from)); },
      [](void* from, void* to) noexcept { *static_cast<D**>(to) = *static_cast<D**>(from); },
      [](void* b) noexcept { delete *static_cast<D**>(b); }};
  void reset() noexcept {
    if (ops_) std::exchange(ops_, nullptr)->destroy(buf_);
  }
  alignas(8) unsigned char buf_[16];
  const ops_type* ops_ = nullptr;
};

class process : public std::enable_shared_from_this<process> {
 public:
  // The coroutine's executor: the process's strand (on the node's io_context), as an any_io_executor.
  using executor_type = asio::any_io_executor;
  using body_type = process_body;
  using clock = std::chrono::steady_clock;

  process(class node& n, term pid, std::uint64_t number, body_type body);
  ~process();
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  const term& pid() const noexcept { return pid_; }
  std::uint64_t number() const noexcept {
    const auto& v = pid_.as_pid();
    return std::uint64_t{v.id} | (std::uint64_t{v.serial} << 32);
  }
  class node& node() const noexcept { return node_; }
  executor_type get_executor() const noexcept { return executor_type(strand_); }
  bool alive() const noexcept;

  // ---- messages (from the process's own coroutine) ----
  // dest: a pid, a registered name (atom), {Name, Node}, or an alias reference.
  void send(const term& dest, term msg);
  // erlang:send(Dest, Msg, [noconnect]): a message for another node is dropped rather than bringing up a
  // connection, and a busy connection does not suspend the sender (global's volatile sends). It is not told
  // whether the message went.
  void send_noconnect(const term& dest, term msg);
  // The first message: `auto msg = co_await self.receive();` (msg is a std::optional<term> that always holds one).
  // An async operation rather than a coroutine: an idle process waits in it without a coroutine frame of its own.
  // Only for co_await in the process's own coroutine.
  struct receive_op;
  receive_op receive() noexcept;
  // The first message, or nullopt after the timeout.
  asio::awaitable<std::optional<term>> receive(std::chrono::milliseconds timeout);
  // The first message for which pred returns true (selective receive); others stay in the mailbox, in order.
  asio::awaitable<std::optional<term>> receive(std::function<bool(const term&)> pred,
                                               std::chrono::milliseconds timeout = infinity);
  // Readable from any thread (kept in step with the mailbox on the process's strand).
  std::size_t message_queue_len() const noexcept { return queue_len_.load(std::memory_order_relaxed); }

  // ---- links, exits, monitors ----
  void link(const term& pid);
  void unlink(const term& pid);
  bool trap_exit(bool on);  // the old value
  bool trapping_exits() const noexcept { return trap_exit_; }
  void exit(const term& pid, term reason);  // exit/2
  [[noreturn]] void exit(term reason);      // exit/1
  // The reason the process ends with when its body returns (normal unless set): exit/1 without unwinding the
  // body's coroutines by an exception, for a body that is about to return (erpc's execute_call).
  void set_exit_reason(term reason) {
    if (killed_) return;  // the kill's reason wins
    reason_ = std::move(reason);
    has_exit_reason_ = true;
  }
  // A monitor on a pid, a registered name (atom, local), or {Name, Node}; returns its reference. A target that
  // does not exist gives {'DOWN', Ref, process, Object, noproc} at once.
  term monitor(const term& target);
  // Removes the monitor; with flush also any {'DOWN', Ref, ...} already in the mailbox. False if it was not active.
  bool demonitor(const term& ref, bool flush = false);
  term make_ref();
  // An alias: messages sent to this reference reach this process until unalias.
  term alias();
  bool unalias(const term& ref);
  bool has_alias(const term& ref) const;

  // ---- names ----
  bool register_name(atom name);
  bool unregister_name(atom name);

  // ---- runtime (node-internal) ----
  // Enqueues a signal from any thread; it is handled on the process's strand.
  void deliver(signal s);
  // While one of these is alive on a thread (the connection reader handing over what it read), the first deliver()
  // that makes an idle process runnable runs it there and then, on the caller's thread, instead of posting it to
  // another one. Only where the caller holds no lock the process could need: nested delivers post as usual.
  struct run_here {
    run_here() noexcept;
    ~run_here();
    run_here(const run_here&) = delete;
    run_here& operator=(const run_here&) = delete;
  };
  // Between these two on a thread (a connection reader handing over the messages of one read), a process that a
  // run_here deliver makes runnable is run once, at end_batch, with everything the read brought it, instead of
  // once per signal (a stream of small messages to one process: one resume per read, not per message).
  static void begin_batch() noexcept;
  static void end_batch();
  // A send of this process found its connection over the busy limit (+zdbbl): like a BEAM process on a busy
  // distribution port, the process is suspended — at its next receive — until the connection has taken the data.
  void busy_send_started() noexcept { busy_sends_.fetch_add(1, std::memory_order_relaxed); }
  void busy_send_finished();
  void start();
  // spawn's options, applied by the spawner before the process is published (in the process table) and started:
  // nothing else can reach it yet, so no signal (and no hop through the scheduler) is needed.
  void prime_link(const term& pid) { rel().links[pid] = 0; }
  void prime_monitored_by(const term& watcher, const term& ref) {
    rel().monitored_by[ref] = monitor_in{watcher, pid_};
  }
  // Calls done(snapshot) from the process's strand, between two steps of its body; from any thread.
  void inspect(std::function<void(process_snapshot)> done);
  // The pids this process is linked with (not those being unlinked); on the process's strand.
  std::vector<term> linked() const;

 private:
  using entry_point = asio::awaitable<asio::detail::awaitable_thread_entry_point, asio::any_io_executor>;
  // The io_context's executor that counts as outstanding work while a copy lives (8 bytes, where the node's
  // any_io_executor preferred to tracked is 56).
  using work_executor = decltype(asio::require(std::declval<asio::io_context::executor_type>(),
                                               asio::execution::outstanding_work.tracked));
  static entry_point run(std::shared_ptr<process> self, work_executor work);
  using receive_handler =
      asio::detail::awaitable_async_op_handler<void(detail::received), asio::any_io_executor>;
  bool can_receive() const noexcept {
    return killed_ || (busy_sends_.load(std::memory_order_acquire) == 0 && !mailbox_.empty());
  }
  void start_receive(receive_handler h);
  void complete_receive(receive_handler h);
  term take_first();
  asio::awaitable<std::optional<term>> receive_impl(std::function<bool(const term&)> pred,
                                                    std::chrono::milliseconds timeout);
  void drain();
  void wake();  // on the strand: resumes the body if it waits in receive
  void handle(signal& s);
  void handle_exit_signal(const term& from, const term& reason, bool via_link);
  void die(term reason);  // mark for death; takes effect at the next receive
  void on_body_done(std::exception_ptr e);
  void finish(term reason);
  void handle_after_death(signal& s);
  void check_mailbox();

  class node& node_;
  term pid_;  // its number (the process table's key) is the pid's id and serial
  body_type body_;
  // The process's strand on the node's io_context (pooled_strand.hpp: no heap block of its own), which post and
  // dispatch use directly; get_executor() wraps it in an any_io_executor (inside whose buffer it fits) for the
  // timer, the parking and the coroutine's thread, which keep their own copies.
  pooled_strand strand_;
  std::unique_ptr<asio::steady_timer> timer_;  // made by the first receive with a timeout, which waits on it
  // A receive without a timeout (and a busy-send suspension) parks here: receive()'s handler, or receive_impl's.
  dist::basic_parking<receive_handler> parked_;

  // Shared with other threads.
  std::vector<signal> inbox_;
  mutable inbox_lock inbox_mu_;
  std::atomic<int> busy_sends_{0};
  std::atomic<std::uint32_t> queue_len_{0};  // the mailbox's length (at most 2^32 - 1 shown)
  bool drain_posted_ = false;
  bool dead_ = false;  // under inbox_mu_: signals arriving now are answered as for a dead process

  // Strand-only (bit-fields of a byte of their own: the two flags above are written by other threads).
  bool waiting_ : 1 = false;
  bool mailbox_warned_ : 1 = false;
  bool trap_exit_ : 1 = false;
  bool killed_ : 1 = false;           // reason_ holds the kill's reason: the body ends at its next receive
  bool has_exit_reason_ : 1 = false;  // reason_ holds one (set_exit_reason), unless killed_
  std::vector<signal> batch_;  // drain's: swapped with inbox_, so neither allocates per message
  cnode::mailbox mailbox_;
  void count_mailbox() noexcept {
    const std::size_t n = mailbox_.size();
    queue_len_.store(n < UINT32_MAX ? static_cast<std::uint32_t>(n) : UINT32_MAX, std::memory_order_relaxed);
  }
  term reason_;  // the kill's reason (killed_), else set_exit_reason's (has_exit_reason_)
  struct monitor_out {
    term target;  // pid we monitor (or the remote pid/name target)
    term object;  // what a 'DOWN' names: the pid, or {Name, Node}
  };
  struct monitor_in {
    term watcher;
    term object;  // what the watcher monitored: our pid, or the name atom
  };
  // Links, monitors and aliases: most processes have none, so they live in a block made on the first one.
  struct relations {
    std::unordered_map<term, std::uint64_t> links;      // linked pid -> 0, or the id of an unlink in progress
    std::unordered_map<term, monitor_out> monitors;     // ref -> a monitor this process holds
    std::unordered_map<term, monitor_in> monitored_by;  // ref -> a monitor held on this process
    std::unordered_set<term> aliases;
    std::uint64_t next_unlink_id = 1;
  };
  std::unique_ptr<relations> rel_;
  relations& rel() {
    if (!rel_) rel_ = std::make_unique<relations>();
    return *rel_;
  }
};

struct process::receive_op {
  process* self;
  template <asio::completion_token_for<void(detail::received)> Token>
  auto operator()(Token&& token) {
    return asio::async_initiate<Token, void(detail::received)>(
        [p = self](receive_handler h) { p->start_receive(std::move(h)); }, token);
  }
};
inline process::receive_op process::receive() noexcept { return receive_op{this}; }

}  // namespace cnode

