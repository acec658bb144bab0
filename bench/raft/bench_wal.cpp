// bench_wal: entries/s and fdatasyncs/s of a Raft group's write-ahead log (raft/storage.hpp) through group_commit,
// for 1, 16 and 64 concurrent submitters of one 256-byte value each, against the same with one fdatasync per entry
// (group_commit without coalescing) measured in the same run; prints the ratio.
//
// Usage: bench_wal [DIR] [SECONDS] [RUNS]   (DIR: where the logs go, default the temporary directory; SECONDS per
// run, 1; RUNS of each mode, alternating, 3: the median is printed)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "raft/group_commit.hpp"

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace cnode::raft;
using clock_type = std::chrono::steady_clock;

namespace {

struct result {
  double seconds = 0;
  std::uint64_t entries = 0, syncs = 0, max_group = 0;
  double mean_latency_us = 0;
  double rate() const { return static_cast<double>(entries) / seconds; }
};

// `submitters` submitters, each with one entry in flight: the next is submitted when the previous one is durable.
result run(const fs::path& dir, int submitters, bool coalesce, double seconds) {
  fs::remove_all(dir);
  recovered rec;
  storage_failure why;
  auto s = storage::open(dir, rec, why);
  if (!s) {
    std::fprintf(stderr, "bench_wal: %s\n", why.message().c_str());
    std::exit(1);
  }
  const cnode::etf::term value = cnode::etf::term::binary(std::string(256, 'v'));
  asio::io_context io;  // completions, on this thread
  auto guard = asio::make_work_guard(io);
  result r;
  {
    group_commit gc(*s, {.coalesce = coalesce});
    index_t next = 1;
    int outstanding = 0;
    double latency_sum = 0;
    const auto start = clock_type::now();
    const auto deadline = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
    auto end = start;
    std::function<void()> submit_one = [&] {
      batch b;
      b.entries.push_back(entry{1, next++, value});
      ++outstanding;
      const auto t0 = clock_type::now();
      gc.submit(std::move(b), io.get_executor(), [&, t0](std::error_code ec) {
        if (ec) {
          std::fprintf(stderr, "bench_wal: %s\n", ec.message().c_str());
          std::exit(1);
        }
        const auto now = clock_type::now();
        latency_sum += std::chrono::duration<double, std::micro>(now - t0).count();
        ++r.entries;
        --outstanding;
        if (now < deadline) submit_one();
        else if (outstanding == 0) {
          end = now;
          guard.reset();
        }
      });
    };
    for (int i = 0; i < submitters; ++i) submit_one();
    io.run();
    gc.stop();
    const auto st = gc.stats();
    r.seconds = std::chrono::duration<double>(end - start).count();
    r.syncs = st.syncs;
    r.max_group = st.max_group;
    r.mean_latency_us = latency_sum / static_cast<double>(r.entries);
  }
  s.reset();
  fs::remove_all(dir);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path base = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path();
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 3;
  const fs::path dir = base / ("cnode-bench-wal-" + std::to_string(::getpid()));
  std::printf("bench_wal: 256-byte values, one entry per batch, median of %d runs of %.1f s, logs in %s\n", reps,
              seconds, base.string().c_str());
  std::printf("%-22s %11s %12s %14s %16s %10s %14s\n", "mode", "submitters", "entries/s", "fdatasyncs/s",
              "entries/fsync", "max group", "mean latency");
  // Runs of the two modes alternate (the disk's mood changes over seconds); the median of `reps` runs is printed.
  for (int n : {1, 16, 64}) {
    std::vector<result> g, one;
    for (int i = 0; i < reps; ++i) {
      g.push_back(run(dir, n, true, seconds));
      one.push_back(run(dir, n, false, seconds));
    }
    auto median = [](std::vector<result>& v) {
      std::sort(v.begin(), v.end(), [](const result& a, const result& b) { return a.rate() < b.rate(); });
      return v[v.size() / 2];
    };
    const result gm = median(g), om = median(one);
    for (auto [name, x] : {std::pair{"group commit", &gm}, std::pair{"fdatasync per entry", &om}})
      std::printf("%-22s %11d %12.0f %14.0f %16.1f %10llu %11.0f us\n", name, n, x->rate(),
                  static_cast<double>(x->syncs) / x->seconds,
                  static_cast<double>(x->entries) / static_cast<double>(x->syncs),
                  static_cast<unsigned long long>(x->max_group), x->mean_latency_us);
    std::printf("%-22s %11d %11.1fx\n", "ratio (entries/s)", n, gm.rate() / om.rate());
  }
  return 0;
}
