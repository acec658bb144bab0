#include "raft/group_commit.hpp"

#include <boost/asio/post.hpp>

#include "raft/trace.hpp"

namespace cnode::raft {

group_commit::group_commit(storage& s, group_commit_options o) : s_(s), opts_(o), writer_([this] { run(); }) {}

group_commit::~group_commit() { stop(); }

std::uint64_t group_commit::submit(batch b, executor ex, completion done) {
  return enqueue({std::move(b), std::move(ex), std::move(done)});
}

std::uint64_t group_commit::submit(batch b, completion done) {
  return enqueue({std::move(b), std::nullopt, std::move(done)});
}

std::uint64_t group_commit::enqueue(job j) {
  if (opts_.observe) j.queued = tracer::now_ns();
  std::unique_lock l(m_);
  const std::uint64_t n = ++submitted_;
  if (stopping_) {
    l.unlock();
    complete(j, make_error_code(storage_error::stopped));
    return n;
  }
  queue_.push_back(std::move(j));
  l.unlock();
  cv_.notify_one();
  return n;
}

void group_commit::stop() {
  {
    std::lock_guard l(m_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (writer_.joinable() && writer_.get_id() != std::this_thread::get_id()) writer_.join();
}

void group_commit::run() {
  std::vector<job> jobs;
  for (;;) {
    {
      std::unique_lock l(m_);
      cv_.wait(l, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;
      // Everything that arrived while the previous write and fdatasync ran goes into the next one.
      const std::size_t n = opts_.coalesce ? queue_.size() : 1;
      for (std::size_t i = 0; i < n; ++i) {
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    write(jobs);
    jobs.clear();
  }
}

void group_commit::write(std::vector<job>& jobs) {
  sync_record rec;
  if (opts_.observe) {
    rec.started = tracer::now_ns();
    rec.queued = jobs.empty() ? rec.started : jobs.front().queued;
    rec.batches = jobs.size();
    for (const auto& j : jobs) rec.entries += j.what.entries.size();
  }
  auto before = s_.stats();
  std::vector<std::error_code> result(jobs.size());
  std::size_t first = 0;  // of the batches waiting for the next sync
  // One sync for the batches [first, end): their completions, in order.
  auto sync_run = [&](std::size_t end) {
    if (first == end) return;
    if (opts_.observe) rec.syncing = tracer::now_ns();
    const std::error_code ec = s_.sync();
    if (opts_.observe && end == jobs.size()) {
      rec.ended = tracer::now_ns();
      opts_.observe(rec);
    }
    const auto now = s_.stats();
    syncs_ += now.fdatasyncs - before.fdatasyncs;
    bytes_ += now.bytes - before.bytes;
    entries_ += now.entries - before.entries;
    before = now;
    ++groups_;
    const std::uint64_t n = end - first;
    for (std::uint64_t m = max_group_.load(); n > m && !max_group_.compare_exchange_weak(m, n);) {
    }
    for (std::size_t k = first; k < end; ++k) complete(jobs[k], result[k] ? result[k] : ec);
    first = end;
  };
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const batch& b = jobs[i].what;
    try {
      if (b.snapshot) {
        // save_snapshot syncs what is buffered first: those batches complete before the snapshot's.
        sync_run(i);
        if ((result[i] = s_.save_snapshot(*b.snapshot))) {
          sync_run(i + 1);
          continue;
        }
      }
      s_.append(b.state, b.entries);
    } catch (const std::exception&) {  // refused: nothing of it was buffered
      result[i] = make_error_code(storage_error::invalid_argument);
    }
  }
  sync_run(jobs.size());
}

void group_commit::complete(job& j, std::error_code ec) {
  ++batches_;
  if (!j.ex) return j.done(ec);
  boost::asio::post(*j.ex, [done = std::move(j.done), ec] { done(ec); });
}

group_commit_stats group_commit::stats() const noexcept {
  return {syncs_.load(), groups_.load(), batches_.load(), entries_.load(), bytes_.load(), max_group_.load()};
}

}  // namespace cnode::raft
