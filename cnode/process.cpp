#include "cnode/process.hpp"

#include <stdexcept>
#include <utility>

#include <boost/version.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "cnode/log.hpp"
#include "cnode/node.hpp"
#include "etf/format.hpp"

namespace cnode {

namespace {
struct atoms {
  atom normal{"normal"}, kill{"kill"}, killed{"killed"}, noproc{"noproc"}, exit_tag{"EXIT"}, down_tag{"DOWN"},
      process{"process"}, cpp_exception{"cpp_exception"}, noconnection{"noconnection"};
};
const atoms& at() {
  static const atoms a;
  return a;
}
thread_local int run_here_depth = 0;
thread_local bool batch_open = false;
thread_local std::vector<std::shared_ptr<process>> deferred_drains;

// While alive: run_here is off on this thread (what a process run here delivers is posted, so no chain of
// processes grows the thread's stack).
struct run_here_off {
  int depth = std::exchange(run_here_depth, 0);
  ~run_here_off() { run_here_depth = depth; }
};
}  // namespace

process::run_here::run_here() noexcept { ++run_here_depth; }
process::run_here::~run_here() { --run_here_depth; }

void process::begin_batch() noexcept { batch_open = true; }

void process::end_batch() {
  if (!batch_open) return;
  batch_open = false;
  std::vector<std::shared_ptr<process>> ready;
  ready.swap(deferred_drains);
  for (auto& p : ready) {
    // As deliver's run_here branch: the drain runs here if the process is idle, and what it delivers is posted.
    run_here_off off;
    asio::dispatch(p->strand_, [p] { p->drain(); });
  }
  ready.clear();
  if (deferred_drains.empty()) deferred_drains.swap(ready);  // keep the capacity for the next read
}

// process::run and dist::parking use Asio's coroutine thread (detail::awaitable_handler, awaitable_async_op_handler) as
// co_spawn and co_await of an async operation do; checked
// against Boost 1.81's (Debian 12's).
static_assert(BOOST_VERSION / 100 == 1081, "process::run follows Boost 1.81's co_spawn_entry_point: check it");

namespace {
asio::io_context& io_context_of(const asio::any_io_executor& ex) {
  const auto* io = ex.target<asio::io_context::executor_type>();
  if (!io) throw std::invalid_argument("cnode::node: the executor must be an io_context's (io_context::get_executor())");
  return asio::query(*io, asio::execution::context);
}
}  // namespace

process::process(class node& n, term pid, std::uint64_t number, body_type body)
    : node_(n), pid_(std::move(pid)), body_(std::move(body)), strand_(io_context_of(n.get_executor())),
      parked_(get_executor()) {
  (void)number;  // the pid's own (node::make_pid)
}

process::~process() = default;

bool process::alive() const noexcept {
  std::lock_guard lock(inbox_mu_);
  return !dead_;
}

// The bottom of the process's coroutine stack, in place of co_spawn's entry point (co_spawn(ex, f, detached)):
// the same steps (run the body on the strand, catch what it throws) without what a process does not use — a
// completion handler, a lambda's frame around the body, and two work guards that each put another copy of the
// strand in a heap block. `work` keeps the io_context's work count up while the process lives, as co_spawn's guard
// does. start() launches it from a handler on the strand, so it needs no co_await to get there (co_spawn's
// dispatch, whose temporaries would stay in the frame).
process::entry_point process::run(std::shared_ptr<process> self, work_executor work) {
  std::exception_ptr e;
  try {
    co_await self->body_(*self);
  } catch (...) {
    e = std::current_exception();
  }
  // The end of the body is handled here: a body that returns without suspending (an erpc call into a C++ function)
  // sends its exit signals and monitors' 'DOWN' there and then, from the thread that started it. In a function of
  // its own, called with no suspension after it, so that what it holds is not kept in the frame (the frame is 16
  // bytes smaller, as Asio rounds it, than with these steps inline).
  [](process& p, std::exception_ptr x, work_executor w) noexcept {
    try {
      p.on_body_done(std::move(x));
    } catch (...) {  // what co_spawn's detached completion did with it
    }
    (void)w;  // the io_context's work ends as this returns
  }(*self, std::move(e), std::move(work));
}

void process::start() {
  asio::cancellation_slot no_slot;
  asio::detail::awaitable_handler<asio::any_io_executor, void> thread(
      run(shared_from_this(), asio::require(strand_.inner_executor(), asio::execution::outstanding_work.tracked)),
      get_executor(), no_slot, asio::cancellation_state(no_slot));
  // On the strand: here and now if it can run on this thread (as co_spawn's dispatch), else queued.
  asio::dispatch(strand_, [thread = std::move(thread)]() mutable { thread.launch(); });
}

std::vector<term> process::linked() const {
  std::vector<term> out;
  if (rel_)
    for (const auto& [pid, id] : rel_->links)
      if (id == 0) out.push_back(pid);
  return out;
}

void process::inspect(std::function<void(process_snapshot)> done) {
  asio::post(strand_, [self = shared_from_this(), done = std::move(done)] {
    process_snapshot snap;
    snap.message_queue_len = self->mailbox_.size();
    snap.links = self->linked();
    if (const auto* r = self->rel_.get()) {
      for (const auto& [ref, m] : r->monitors) snap.monitors.push_back(m.object);
      for (const auto& [ref, m] : r->monitored_by) snap.monitored_by.push_back(m.watcher);
    }
    snap.trap_exit = self->trap_exit_;
    done(std::move(snap));
  });
}

void process::deliver(signal s) {
  {
    std::unique_lock lock(inbox_mu_);
    if (!dead_) {
      inbox_.push_back(std::move(s));
      if (drain_posted_) return;
      drain_posted_ = true;
      lock.unlock();
      if (run_here_depth > 0 && batch_open) {
        deferred_drains.push_back(shared_from_this());  // drained at end_batch, after the read's other messages
        return;
      }
      if (run_here_depth > 0) {
        // Idle: drain (and the body it resumes) runs here now; busy elsewhere: queued behind what runs there.
        // What the process delivers meanwhile is posted (no chain of processes grows this thread's stack).
        run_here_off off;
        asio::dispatch(strand_, [self = shared_from_this()] { self->drain(); });
      } else {
        asio::post(strand_, [self = shared_from_this()] { self->drain(); });
      }
      return;
    }
  }
  handle_after_death(s);
}

void process::drain() {
  {
    std::lock_guard lock(inbox_mu_);
    batch_.swap(inbox_);
    drain_posted_ = false;
    if (dead_) {  // finish() answered them
      batch_.clear();
      return;
    }
  }
  const bool got = !batch_.empty();
  for (auto& s : batch_) handle(s);
  batch_.clear();
  if (batch_.capacity() > 1024) std::vector<signal>().swap(batch_);  // a flood's queue goes with the flood
  count_mailbox();
  // Last, with the batch handled: the body may run now (and drain again) before this returns.
  if (got || killed_) wake();
}

void process::wake() {
  if (!waiting_) return;
  if (parked_.holds<receive_handler>()) {
    if (!can_receive()) return;  // a signal that brought no message: it waits on
    waiting_ = false;
    complete_receive(std::move(*parked_.take<receive_handler>()));
    return;
  }
  if (!parked_.resume() && timer_) timer_->cancel();  // a receive with a timeout: its timer
}

void process::handle(signal& s) {
  switch (s.kind) {
    case signal_kind::message:
      if (!s.ref.is_nil() && !(rel_ && rel_->aliases.count(s.ref))) return;  // to an alias no longer active
      mailbox_.push_back(std::move(s.data));
      check_mailbox();
      return;
    case signal_kind::link:
      if (s.from != pid_) rel().links[s.from] = 0;
      return;
    case signal_kind::unlink: {
      if (rel_) {
        auto& links = rel_->links;
        auto it = links.find(s.from);
        if (it != links.end() && (s.id == 0 || it->second == 0)) links.erase(it);
      }
      // The ack goes out before any other signal from us to that process (we are on our strand).
      if (s.id != 0) node_.route(s.from, signal{signal_kind::unlink_ack, pid_, {}, {}, {}, s.id});
      return;
    }
    case signal_kind::unlink_ack: {
      if (!rel_) return;
      auto it = rel_->links.find(s.from);
      if (it != rel_->links.end() && it->second == s.id) rel_->links.erase(it);
      return;
    }
    case signal_kind::link_exit: {
      if (!rel_) return;
      auto it = rel_->links.find(s.from);
      if (it == rel_->links.end() || it->second != 0) return;  // not linked, or unlinking: no exit through it
      rel_->links.erase(it);
      handle_exit_signal(s.from, s.data, true);
      return;
    }
    case signal_kind::exit: handle_exit_signal(s.from, s.data, false); return;
    case signal_kind::monitor:
      rel().monitored_by[s.ref] = monitor_in{s.from, s.extra.is_nil() ? pid_ : s.extra};
      return;
    case signal_kind::demonitor:
      if (rel_) rel_->monitored_by.erase(s.ref);
      return;
    case signal_kind::down: {
      if (!rel_) return;
      auto it = rel_->monitors.find(s.ref);
      if (it == rel_->monitors.end()) return;  // demonitored meanwhile
      term object = it->second.object;
      rel_->monitors.erase(it);
      mailbox_.push_back(term::tuple({term(at().down_tag), s.ref, term(at().process), object, s.data}));
      return;
    }
    case signal_kind::node_down: {
      if (!rel_) return;
      auto& links = rel_->links;
      auto& monitors = rel_->monitors;
      auto& monitored_by = rel_->monitored_by;
      const atom lost = s.extra.atom_value();
      std::vector<term> dead_links;
      for (auto it = links.begin(); it != links.end();) {
        if (it->first.node_of() == lost) {
          if (it->second == 0) dead_links.push_back(it->first);
          it = links.erase(it);
        } else {
          ++it;
        }
      }
      for (auto it = monitors.begin(); it != monitors.end();) {
        const term& t = it->second.target;
        const bool on_lost = t.is_pid() ? t.node_of() == lost
                                        : (t.is_tuple(2) && t.element(1).is_atom(lost));
        if (on_lost) {
          mailbox_.push_back(term::tuple({term(at().down_tag), it->first, term(at().process), it->second.object,
                                          term(at().noconnection)}));
          it = monitors.erase(it);
        } else {
          ++it;
        }
      }
      for (auto it = monitored_by.begin(); it != monitored_by.end();) {
        if (it->second.watcher.node_of() == lost) it = monitored_by.erase(it);
        else ++it;
      }
      for (const auto& pid : dead_links) handle_exit_signal(pid, term(at().noconnection), true);
      return;
    }
    case signal_kind::run: return;
  }
}

void process::handle_exit_signal(const term& from, const term& reason, bool via_link) {
  if (!via_link && reason.is_atom(at().kill)) {
    die(term(at().killed));  // exit(Pid, kill) cannot be trapped
    return;
  }
  if (trap_exit_) {
    mailbox_.push_back(term::tuple({term(at().exit_tag), from, reason}));
    return;
  }
  if (reason.is_atom(at().normal)) {
    if (!via_link && from == pid_) die(reason);  // exit(self(), normal) ends the caller
    return;
  }
  die(reason);
}

void process::check_mailbox() {
  const auto limit = node_.get_mailbox_limit();
  if (limit.max == 0) return;
  if (mailbox_.size() <= limit.max) {
    if (mailbox_warned_ && mailbox_.size() < limit.max / 2) mailbox_warned_ = false;
    return;
  }
  if (limit.kill) {
    if (killed_) return;
    log::error("killing {}: {} messages in its mailbox, over --max-mailbox {}", etf::to_string(pid_),
               mailbox_.size(), limit.max);
    mailbox_.clear();  // it dies at its next receive: what it held goes now
    count_mailbox();
    die(term(atom("killed")));
  } else if (!mailbox_warned_) {
    mailbox_warned_ = true;
    log::warning("{} has {} messages in its mailbox, over --max-mailbox {}", etf::to_string(pid_), mailbox_.size(),
                 limit.max);
  }
}

void process::die(term reason) {
  if (killed_) return;
  reason_ = std::move(reason);
  killed_ = true;  // drain() wakes the body once the batch is handled
}

// Not a coroutine itself: the waiting body holds one frame for its receive, not two.
asio::awaitable<std::optional<term>> process::receive(std::chrono::milliseconds timeout) {
  return receive_impl(nullptr, timeout);
}

namespace {
// The process whose receive() completion runs on this thread (complete_receive), and where a receive its body
// starts meanwhile that finds a message at once leaves its handler: the loop there runs it once the current one
// returns, so a long mailbox is taken in a loop, not by nesting completions (which grows the stack) nor by deferring
// to the strand (which lets the connection's reader run ahead of the process and its mailbox grow).
struct receive_loop {
  const process* owner = nullptr;
  void* next = nullptr;  // the loop's std::optional<receive_handler> (a private type of process)
};
thread_local receive_loop current_receive_loop;
}  // namespace

// receive() without a predicate or a timeout, what an idle process usually waits in: an async operation, started
// once the body's frame is suspended (on the strand). Waiting, it is only its handler (the coroutine's thread) in
// parked_: no frame of its own.
void process::start_receive(receive_handler h) {
  drain();
  if (!can_receive()) {
    waiting_ = true;  // wake() completes it
    parked_.park(std::move(h));
    return;
  }
  complete_receive(std::move(h));
}

void process::complete_receive(receive_handler h) {
  receive_loop& loop = current_receive_loop;
  if (loop.owner == this) {  // started by the body while the loop below runs it: taken when that returns
    static_cast<std::optional<receive_handler>*>(loop.next)->emplace(std::move(h));
    return;
  }
  std::optional<receive_handler> cur(std::move(h)), next;
  struct restore {
    receive_loop outer;  // another process's completion further up this thread's stack, if any
    ~restore() { current_receive_loop = outer; }
  } restore_outer{loop};
  loop = {this, &next};
  for (;;) {
    detail::received r;
    if (killed_) r.exit = std::make_exception_ptr(process_exit(reason_));
    else r.msg = take_first();
    (*cur)(std::move(r));  // the body runs until its next suspension, and may end: `this` is touched only if it
                           // left a receive in `next` (then its coroutine, which holds the process, waits in it)
    if (!next) break;
    cur.reset();
    cur.emplace(std::move(*next));
    next.reset();
  }
}

term process::take_first() {
  term m = mailbox_.take(0);
  count_mailbox();
  return m;
}

asio::awaitable<std::optional<term>> process::receive(std::function<bool(const term&)> pred,
                                                      std::chrono::milliseconds timeout) {
  return receive_impl(std::move(pred), timeout);
}

asio::awaitable<std::optional<term>> process::receive_impl(std::function<bool(const term&)> pred,
                                                           std::chrono::milliseconds timeout) {
  const bool forever = timeout == infinity;
  const auto deadline = forever ? clock::time_point::max() : clock::now() + timeout;
  std::size_t scanned = 0;
  for (;;) {
    drain();
    if (killed_) throw process_exit(reason_);
    if (busy_sends_.load(std::memory_order_acquire) > 0) {
      // Suspended on a busy connection: not counted against the receive's timeout (the send itself would block).
      waiting_ = true;
      co_await parked_.wait();
      waiting_ = false;
      continue;
    }
    for (; scanned < mailbox_.size(); ++scanned) {
      if (!pred || pred(mailbox_[scanned])) {
        term m = mailbox_.take(scanned);
        count_mailbox();
        co_return m;
      }
    }
    waiting_ = true;
    if (forever) {
      co_await parked_.wait();
    } else {
      if (clock::now() >= deadline) {
        waiting_ = false;
        co_return std::nullopt;
      }
      if (!timer_) timer_ = std::make_unique<asio::steady_timer>(get_executor());
      timer_->expires_at(deadline);
      co_await timer_->async_wait(asio::as_tuple(asio::use_awaitable));
    }
    waiting_ = false;
  }
}

void process::send(const term& dest, term msg) { node_.send(pid_, dest, std::move(msg)); }
void process::send_noconnect(const term& dest, term msg) { node_.send(pid_, dest, std::move(msg), true); }

void process::busy_send_finished() {
  if (busy_sends_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  asio::post(strand_, [self = shared_from_this()] { self->wake(); });
}

void process::link(const term& pid) {
  if (!pid.is_pid() || pid == pid_) return;
  auto& links = rel().links;
  auto it = links.find(pid);
  if (it != links.end() && it->second == 0) return;
  links[pid] = 0;
  node_.route(pid, signal{signal_kind::link, pid_, {}, {}, {}, 0});
}

void process::unlink(const term& pid) {
  if (!rel_) return;
  auto it = rel_->links.find(pid);
  if (it == rel_->links.end() || it->second != 0) return;
  // Until the ack, exit signals through this link are ignored (the UNLINK_ID protocol).
  it->second = rel_->next_unlink_id++;
  node_.route(pid, signal{signal_kind::unlink, pid_, {}, {}, {}, it->second});
}

bool process::trap_exit(bool on) {
  bool old = trap_exit_;
  trap_exit_ = on;
  return old;
}

void process::exit(const term& pid, term reason) {
  node_.route(pid, signal{signal_kind::exit, pid_, std::move(reason), {}, {}, 0});
}

void process::exit(term reason) { throw process_exit(std::move(reason)); }

term process::make_ref() { return node_.make_ref(); }

term process::monitor(const term& target) {
  term ref = node_.make_ref();
  if (target.is_pid()) {
    rel().monitors[ref] = monitor_out{target, target};
    node_.route(target, signal{signal_kind::monitor, pid_, {}, ref, target, 0});
    return ref;
  }
  atom name, where = node_.name_atom();
  if (target.is_atom()) {
    name = target.atom_value();
  } else if (target.is_tuple(2) && target.element(0).is_atom() && target.element(1).is_atom()) {
    name = target.element(0).atom_value();
    where = target.element(1).atom_value();
  } else {
    throw std::invalid_argument("monitor: target must be a pid, a name or {Name, Node}");
  }
  term object = term::tuple({term(name), term(where)});
  rel().monitors[ref] = monitor_out{object, object};
  signal s{signal_kind::monitor, pid_, {}, ref, term(name), 0};
  if (where == node_.name_atom()) node_.deliver_to_name(name, std::move(s));
  else node_.send_named_signal(name, where, std::move(s));
  return ref;
}

bool process::demonitor(const term& ref, bool flush) {
  auto it = rel_ ? rel_->monitors.find(ref) : decltype(rel_->monitors.end()){};
  const bool active = rel_ && it != rel_->monitors.end();
  if (active) {
    const term target = it->second.target;
    rel_->monitors.erase(it);
    signal s{signal_kind::demonitor, pid_, {}, ref, {}, 0};
    if (target.is_pid()) {
      node_.route(target, std::move(s));
    } else {
      const atom name = target.element(0).atom_value(), where = target.element(1).atom_value();
      if (where == node_.name_atom()) node_.deliver_to_name(name, std::move(s));
      else node_.send_named_signal(name, where, std::move(s));
    }
  }
  if (flush) {
    drain();
    mailbox_.remove_if(
        [&](const term& m) { return m.is_tuple(5) && m.element(0).is_atom(at().down_tag) && m.element(1) == ref; });
    count_mailbox();
  }
  return active;
}

term process::alias() {
  term ref = node_.make_ref();
  rel().aliases.insert(ref);
  node_.add_alias(ref, number());
  return ref;
}

bool process::unalias(const term& ref) {
  if (!rel_ || !rel_->aliases.erase(ref)) return false;
  node_.remove_alias(ref);
  return true;
}

bool process::has_alias(const term& ref) const { return rel_ && rel_->aliases.count(ref) > 0; }

bool process::register_name(atom name) { return node_.register_name(name, pid_); }
bool process::unregister_name(atom name) {
  auto where = node_.whereis(name);
  return where && *where == pid_ && node_.unregister_name(name);
}

void process::on_body_done(std::exception_ptr e) {
  term reason = has_exit_reason_ && !killed_ ? std::move(reason_) : term(at().normal);
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const process_exit& x) {
      reason = x.reason;
    } catch (const std::exception& x) {
      reason = term::tuple({term(at().cpp_exception), term::binary(std::string_view(x.what()))});
    } catch (...) {
      reason = term::tuple({term(at().cpp_exception), term::binary(std::string_view("unknown"))});
    }
  }
  if (killed_) reason = std::move(reason_);
  finish(std::move(reason));
}

void process::finish(term reason) {
  std::vector<signal> rest;
  {
    std::lock_guard lock(inbox_mu_);
    dead_ = true;
    rest.swap(inbox_);
  }
  node_.remove_process(number(), {});
  for (auto& s : rest) handle_after_death(s);
  if (rel_) {
    for (const auto& [pid, state] : rel_->links) {
      if (state == 0) node_.route(pid, signal{signal_kind::link_exit, pid_, reason, {}, {}, 0});
    }
    rel_->links.clear();
    for (const auto& [ref, m] : rel_->monitored_by) {
      node_.route(m.watcher, signal{signal_kind::down, pid_, reason, ref, m.object, 0});
    }
    rel_->monitored_by.clear();
    for (auto it = rel_->monitors.begin(); it != rel_->monitors.end();) {
      const term ref = it->first;
      ++it;
      demonitor(ref, false);
    }
    rel_->aliases.clear();
  }
  mailbox_.clear();
  count_mailbox();
  body_ = nullptr;  // the body's captures may hold references to us
}

void process::handle_after_death(signal& s) {
  switch (s.kind) {
    case signal_kind::link:
      node_.route(s.from, signal{signal_kind::link_exit, pid_, term(at().noproc), {}, {}, 0});
      break;
    case signal_kind::monitor:
      node_.route(s.from, signal{signal_kind::down, pid_, term(at().noproc), s.ref,
                                 s.extra.is_nil() ? pid_ : s.extra, 0});
      break;
    case signal_kind::unlink:
      if (s.id != 0) node_.route(s.from, signal{signal_kind::unlink_ack, pid_, {}, {}, {}, s.id});
      break;
    default: break;
  }
}

}  // namespace cnode
