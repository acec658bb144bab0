#pragma once

namespace cnode::dist {

// While one is alive on a thread, a sender there that finds a connection's writer asleep does not wake it at once:
// the connection is remembered, and the outermost hold wakes each remembered writer when it ends, after what the
// thread's code sent meanwhile has gathered. The runtime holds one around every handler of a process, so what a
// process sends in one run goes out in one write, from its own thread, rather than a wake (and, with several
// threads, another thread's write) for its first message. Nesting is counted; the end never throws.
// A send made inside the connection's own strand is not held: a process the reader ran in its hand-over (the usual
// path of a request and its reply) has its reply written after the hand-over, as without a hold.
// Off unless enabled, before the node starts (cnode: on with 2 threads or more, `--no-dist-batch-sends` turns it
// off): with it off a hold changes nothing.
class writer_wake_hold {
 public:
  static void enable(bool on) noexcept;
  writer_wake_hold() noexcept;
  ~writer_wake_hold();
  writer_wake_hold(const writer_wake_hold&) = delete;
  writer_wake_hold& operator=(const writer_wake_hold&) = delete;
};

}  // namespace cnode::dist
