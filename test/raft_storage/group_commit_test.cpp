// group_commit: batches from many threads are each completed once, in submission order, far fewer fdatasyncs than
// batches under load, and everything acknowledged is there after a reopen.
#include <doctest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "raft/group_commit.hpp"
#include "test/raft_storage/helpers.hpp"

using namespace cnode::raft;
using namespace cnode::raft::test;
namespace asio = boost::asio;

namespace {

// An io_context on one thread, for completions.
struct completion_thread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(io);
  std::thread t{[this] { io.run(); }};
  ~completion_thread() {
    guard.reset();
    t.join();
  }
};

// What the completions saw.
struct ledger {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::uint64_t> order;  // submission numbers, as completions ran
  std::vector<std::error_code> errors;
  bool wait_for(std::size_t n, std::chrono::seconds limit = std::chrono::seconds(60)) {
    std::unique_lock l(m);
    return cv.wait_for(l, limit, [&] { return order.size() >= n; });
  }
  void record(std::uint64_t seq, std::error_code ec) {
    std::lock_guard l(m);
    order.push_back(seq);
    errors.push_back(ec);
    cv.notify_all();
  }
};

// Submits from `threads` threads, `per_thread` batches of one entry each; with `wait`, each thread waits for its
// batch's completion before the next. Index order is submission order (one lock around both).
void load(group_commit& gc, completion_thread& ct, ledger& led, int threads, int per_thread, bool wait) {
  std::mutex submit_m;
  index_t next = 1;
  std::uint64_t submitted = 0;
  std::atomic<int> mismatches{0}, timeouts{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        auto done = std::make_shared<std::promise<void>>();
        auto f = done->get_future();
        {
          std::lock_guard l(submit_m);
          const std::uint64_t mine = ++submitted;
          batch b{nullptr, hard_state{1, "n1@h", next - 1}, {make_entry(next, 1, 256)}};
          ++next;
          const auto got = gc.submit(std::move(b), ct.io.get_executor(), [&led, mine, done](std::error_code ec) {
            led.record(mine, ec);
            done->set_value();
          });
          if (got != mine) mismatches++;
        }
        if (wait && f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) timeouts++;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(mismatches == 0);  // submit's numbers are the order of the calls
  CHECK(timeouts == 0);
}

}  // namespace

TEST_CASE("group_commit: concurrent submitters; each completion once, in order; far fewer fdatasyncs than batches") {
  for (bool wait : {true, false}) {
    CAPTURE(wait);
    temp_dir dir;
    constexpr int threads = 8, per_thread = 150;
    constexpr std::size_t n = threads * per_thread;
    {
      recovered r;
      auto s = must_open(dir.path, r);
      completion_thread ct;
      ledger led;
      group_commit gc(*s);
      const auto t0 = std::chrono::steady_clock::now();
      load(gc, ct, led, threads, per_thread, wait);
      REQUIRE(led.wait_for(n));
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      gc.stop();
      std::lock_guard l(led.m);
      REQUIRE(led.order.size() == n);
      for (std::size_t i = 0; i < n; ++i) {
        CHECK(led.order[i] == i + 1);  // once each, in submission order
        CHECK(!led.errors[i]);
      }
      const auto st = gc.stats();
      CHECK(st.batches == n);
      CHECK(st.entries == n);
      CHECK(st.syncs == st.groups);
      CHECK(st.syncs < n);
      std::printf("group_commit (%s): %zu batches from %d threads, %llu fdatasyncs (%.1f batches per fdatasync, at most "
                  "%llu), %.0f batches/s\n",
                  wait ? "each waits for its completion" : "no waiting", n, threads,
                  static_cast<unsigned long long>(st.syncs), static_cast<double>(n) / static_cast<double>(st.syncs),
                  static_cast<unsigned long long>(st.max_group), static_cast<double>(n) / secs);
    }
    recovered r;
    auto s = must_open(dir.path, r);
    REQUIRE(r.log.size() == n);
    for (std::size_t i = 0; i < n; ++i) CHECK(r.log[i] == make_entry(i + 1, 1, 256));
    CHECK(r.state.commit == n - 1);
  }
}

TEST_CASE("group_commit: without coalescing, one fdatasync per batch") {
  temp_dir dir;
  recovered r;
  auto s = must_open(dir.path, r);
  completion_thread ct;
  ledger led;
  group_commit gc(*s, {.coalesce = false});
  load(gc, ct, led, 4, 20, false);
  REQUIRE(led.wait_for(80));
  gc.stop();
  CHECK(gc.stats().syncs == 80);
}

TEST_CASE("group_commit: the observer sees every write, with its batches, entries and times in order") {
  temp_dir dir;
  recovered r;
  auto s = must_open(dir.path, r);
  completion_thread ct;
  ledger led;
  std::mutex m;
  std::vector<sync_record> seen;
  group_commit_options o;
  o.observe = [&](const sync_record& rec) {
    std::lock_guard l(m);
    seen.push_back(rec);
  };
  group_commit gc(*s, o);
  load(gc, ct, led, 4, 20, false);
  REQUIRE(led.wait_for(80));
  gc.stop();
  std::lock_guard l(m);
  CHECK(seen.size() == gc.stats().groups);
  std::uint64_t batches = 0, entries = 0;
  for (const auto& rec : seen) {
    batches += rec.batches;
    entries += rec.entries;
    CHECK(rec.queued <= rec.started);
    CHECK(rec.started <= rec.syncing);
    CHECK(rec.syncing <= rec.ended);
  }
  CHECK(batches == 80);
  CHECK(entries == gc.stats().entries);
}

TEST_CASE("group_commit: refused batches, snapshots in order, and submissions after stop") {
  temp_dir dir;
  recovered r;
  auto s = must_open(dir.path, r);
  completion_thread ct;
  ledger led;
  auto ex = ct.io.get_executor();
  auto rec = [&](std::uint64_t tag) { return [&led, tag](std::error_code ec) { led.record(tag, ec); }; };
  auto snap = [](index_t i, term_t t, std::string data) {
    return std::make_shared<const snapshot>(snapshot{{i, t, {"a@h", "b@h"}}, std::move(data)});
  };
  {
    group_commit gc(*s);
    gc.submit({nullptr, hard_state{1, "a@h", 0}, make_entries(1, 5, 1)}, ex, rec(1));
    gc.submit({nullptr, std::nullopt, {make_entry(9, 1)}}, ex, rec(2));  // a gap
    gc.submit({snap(3, 1, "three"), std::nullopt, {}}, ex, rec(3));      // a compaction
    gc.submit({snap(0, 0, "bad"), std::nullopt, {make_entry(6, 1)}}, ex, rec(4));  // refused, entry not written
    gc.submit({nullptr, std::nullopt, {make_entry(6, 1)}}, ex, rec(5));
    gc.submit({snap(2, 1, "older"), std::nullopt, {}}, ex, rec(6));  // already covered: nothing to do
    // A follower's install: a snapshot past the log with the entries after it and a new hard state, in one batch.
    gc.submit({snap(20, 2, "twenty"), hard_state{2, "b@h", 20}, make_entries(21, 22, 2)}, rec(7));  // on the writer
    gc.stop();
    gc.submit({nullptr, std::nullopt, {make_entry(23, 2)}}, ex, rec(8));
    REQUIRE(led.wait_for(8));
  }
  std::lock_guard l(led.m);
  // 7 ran on the writer thread, the others on the io thread: only the posted ones have an order to check.
  std::map<std::uint64_t, std::error_code> by_tag;
  std::vector<std::uint64_t> posted;
  for (std::size_t i = 0; i < led.order.size(); ++i) {
    CHECK(by_tag.emplace(led.order[i], led.errors[i]).second);
    if (led.order[i] != 7) posted.push_back(led.order[i]);
  }
  CHECK(posted == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 8});
  CHECK(!by_tag[1]);
  CHECK(by_tag[2] == storage_error::invalid_argument);
  CHECK(!by_tag[3]);
  CHECK(by_tag[4] == storage_error::invalid_argument);
  CHECK(!by_tag[5]);
  CHECK(!by_tag[6]);
  CHECK(!by_tag[7]);
  CHECK(by_tag[8] == storage_error::stopped);
  s.reset();
  s = must_open(dir.path, r);
  REQUIRE(r.snap);
  CHECK(r.snap->meta.index == 20);
  CHECK(r.snap->data == "twenty");
  CHECK(r.state == hard_state{2, "b@h", 20});
  CHECK(r.log == make_entries(21, 22, 2));
}

TEST_CASE("group_commit: a failed write fails its batches and every one after it") {
  temp_dir dir;
  recovered r;
  auto s = must_open(dir.path, r);
  completion_thread ct;
  ledger led;
  auto ex = ct.io.get_executor();
  {
    group_commit gc(*s);
    gc.submit({nullptr, std::nullopt, make_entries(1, 2, 1)}, ex, [&](std::error_code ec) { led.record(1, ec); });
    REQUIRE(led.wait_for(1));
    {
      file_size_limit limit(fs::file_size(files(dir.path, "wal-").at(0)) + 10);
      gc.submit({nullptr, std::nullopt, make_entries(3, 4, 1, 1000)}, ex, [&](std::error_code ec) { led.record(2, ec); });
      REQUIRE(led.wait_for(2));
    }
    gc.submit({nullptr, std::nullopt, {make_entry(5, 1)}}, ex, [&](std::error_code ec) { led.record(3, ec); });
    REQUIRE(led.wait_for(3));
  }
  std::lock_guard l(led.m);
  CHECK(!led.errors[0]);
  CHECK(led.errors[1] == std::errc::file_too_large);
  CHECK(led.errors[2] == storage_error::failed);
  s.reset();
  s = must_open(dir.path, r);
  CHECK(r.log == make_entries(1, 2, 1));
}
