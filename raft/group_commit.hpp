// Group commit for one storage on a dedicated writer thread, so that fdatasync never blocks the io_context's
// threads. submit() queues a batch; the writer takes everything queued while its previous sync ran, appends it all,
// writes it as one record (one write, one fdatasync) and posts each batch's completion to the executor that came
// with it, in submission order. While the writer runs, the storage belongs to it: nobody else may call it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "raft/storage.hpp"

namespace cnode::raft {

// What one ready asks to persist: {rd.snapshot, rd.state, rd.to_persist}. The snapshot (a follower's install, or
// the shell's own compaction) is saved first (storage::save_snapshot), then the state and entries are appended.
struct batch {
  std::shared_ptr<const raft::snapshot> snapshot;
  std::optional<hard_state> state;
  std::vector<entry> entries;  // as storage::append takes them
};

// One write of the writer thread, for a trace (raft/trace.hpp): times are tracer::now_ns().
struct sync_record {
  std::uint64_t queued = 0;   // when the oldest batch of the write was submitted
  std::uint64_t started = 0;  // when the writer took the batches
  std::uint64_t syncing = 0;  // when its (last) write and fdatasync began
  std::uint64_t ended = 0;    // when it returned (before the completions)
  std::uint64_t batches = 0, entries = 0;
};

struct group_commit_options {
  // false: one record and one fdatasync per batch, as a log without group commit does (the benchmark's baseline).
  bool coalesce = true;
  // Called on the writer thread after each write, before its completions (off: no clock is read).
  std::function<void(const sync_record&)> observe;
};

struct group_commit_stats {
  std::uint64_t syncs = 0;      // fdatasyncs of the log (snapshot files' fsyncs not counted)
  std::uint64_t groups = 0;     // writes: runs of batches written together
  std::uint64_t batches = 0;    // completed
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;      // written to the log
  std::uint64_t max_group = 0;  // the most batches one write carried
};

class group_commit {
 public:
  using executor = boost::asio::any_io_executor;
  using completion = std::function<void(std::error_code)>;

  explicit group_commit(storage& s, group_commit_options o = {});
  ~group_commit();  // stop(); not from a completion running on the writer thread
  group_commit(const group_commit&) = delete;
  group_commit& operator=(const group_commit&) = delete;

  // Queues a batch. `done` is posted to `ex` once it is durable, or with the error: storage_error::invalid_argument
  // for a batch the storage refused (nothing of it is written; the others go on), the snapshot's error when saving
  // it failed (its state and entries are then not written), the sync's error for every batch of a failed write (and
  // storage_error::failed for all after it). Completions are posted in submission order; on a strand or a
  // one-thread io_context they also run in that order. Returns the submission's number (1, 2, ...). Thread-safe.
  std::uint64_t submit(batch b, executor ex, completion done);
  // The same, with `done` called on the writer thread itself: it must be quick (e.g. send a message or post).
  std::uint64_t submit(batch b, completion done);
  // Writes and completes everything submitted before, then ends the writer thread; later submissions complete with
  // storage_error::stopped. Idempotent.
  void stop();
  group_commit_stats stats() const noexcept;

 private:
  struct job {
    batch what;
    std::optional<executor> ex;  // none: done runs on the writer thread
    completion done;
    std::uint64_t queued = 0;  // tracer::now_ns() when observed
  };
  std::uint64_t enqueue(job j);
  void run();
  void write(std::vector<job>& jobs);
  void complete(job& j, std::error_code ec);

  storage& s_;
  group_commit_options opts_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  std::uint64_t submitted_ = 0;
  bool stopping_ = false;
  std::atomic<std::uint64_t> syncs_{0}, groups_{0}, batches_{0}, entries_{0}, bytes_{0}, max_group_{0};
  std::thread writer_;  // last: started once everything above exists
};

}  // namespace cnode::raft
