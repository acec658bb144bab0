// A timeline of one group on one member, for finding where a request's time goes (`--raft-trace DIR`; off by
// default, and then nothing is measured). One text file per member and group, DIR/<node>-<group>.trace, one line per
// event: "<kind> <CLOCK_MONOTONIC ns> <a> <b> <c>" (kinds in docs/raft.md "Benchmark"); the same clock on every
// process of the machine, so the members' files can be merged. bench/raft/trace_report.py reads them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

namespace cnode::raft {

class tracer {
 public:
  // nullptr when the file cannot be created.
  static std::shared_ptr<tracer> open(const std::string& dir, const std::string& node, const std::string& group);
  ~tracer();
  static std::uint64_t now_ns() noexcept;
  struct cpu_sample {
    std::uint64_t thread = 0, ns = 0, involuntary = 0, voluntary = 0;  // context switches
  };
  static cpu_sample thread_cpu() noexcept;  // of the calling thread
  // Thread-safe (the group process and the writer thread both write).
  void event_at(char kind, std::uint64_t t, std::uint64_t a, std::uint64_t b, std::uint64_t c);
  void event(char kind, std::uint64_t a = 0, std::uint64_t b = 0, std::uint64_t c = 0) {
    event_at(kind, now_ns(), a, b, c);
  }
  void flush();

 private:
  explicit tracer(std::FILE* f) : f_(f) {}
  std::mutex m_;
  std::FILE* f_;
};

}  // namespace cnode::raft
