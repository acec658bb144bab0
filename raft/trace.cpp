#include "raft/trace.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <time.h>

namespace cnode::raft {

std::shared_ptr<tracer> tracer::open(const std::string& dir, const std::string& node, const std::string& group) {
  const std::string path = dir + "/" + node + "-" + group + ".trace";
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return nullptr;
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);
  return std::shared_ptr<tracer>(new tracer(f));
}

tracer::~tracer() { std::fclose(f_); }

std::uint64_t tracer::now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

tracer::cpu_sample tracer::thread_cpu() noexcept {
  cpu_sample c;
  c.thread = static_cast<std::uint64_t>(pthread_self());
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  c.ns = static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  c.involuntary = static_cast<std::uint64_t>(ru.ru_nivcsw);
  c.voluntary = static_cast<std::uint64_t>(ru.ru_nvcsw);
  return c;
}

void tracer::event_at(char kind, std::uint64_t t, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  std::lock_guard l(m_);
  std::fprintf(f_, "%c %llu %llu %llu %llu\n", kind, static_cast<unsigned long long>(t),
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b),
               static_cast<unsigned long long>(c));
}

void tracer::flush() {
  std::lock_guard l(m_);
  std::fflush(f_);
}

}  // namespace cnode::raft
