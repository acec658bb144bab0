// Big byte buffers kept for reuse: a 10 MiB message's buffer, freed and allocated again for the next one, is an
// munmap and an mmap whose pages all fault in again (and are zeroed by the kernel). The pool keeps a bounded number
// of bytes in buffers of at least min_capacity, hands out the smallest one that fits (and is not more than twice too
// big), drops the oldest when a new one would cross the bound, and drops buffers idle longer than max_idle when it
// is used or trim() is called. Thread-safe (a mutex: it is taken once per big buffer, not per message).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace cnode::etf {

class buffer_pool {
 public:
  using clock = std::chrono::steady_clock;
  struct limits {
    std::size_t min_capacity = std::size_t{256} << 10;  // smaller buffers are not kept (malloc serves them well)
    std::size_t max_bytes = std::size_t{64} << 20;      // capacity kept in all, at most
    clock::duration max_idle = std::chrono::seconds(10);  // a buffer unused this long is freed
  };
  buffer_pool() : buffer_pool(limits{}) {}
  explicit buffer_pool(limits l) : limits_(l) {}
  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  // An empty vector whose capacity is at least n (from the pool when one fits, else freshly reserved; never
  // zero-filled).
  std::vector<std::uint8_t> take(std::size_t n);
  // A vector of size n whose bytes are to be overwritten: a pooled buffer keeps the size it was given back with,
  // so only what lies past it is zero-filled (nothing, when it held a message as long before; all of it when the
  // buffer is new).
  std::vector<std::uint8_t> take_sized(std::size_t n);
  // A buffer no longer used: kept if it is big enough and fits the bound, else freed.
  void give(std::vector<std::uint8_t>&& v) noexcept;
  // Frees the buffers idle longer than max_idle (all of them with now = clock::time_point::max()).
  void trim(clock::time_point now = clock::now()) noexcept;

  std::size_t kept_bytes() const;
  std::size_t kept_buffers() const;
  std::uint64_t hits() const;    // take() served from the pool
  std::uint64_t misses() const;  // take() of a big size that allocated
  const limits& bounds() const noexcept { return limits_; }

 private:
  struct entry {
    std::vector<std::uint8_t> v;
    clock::time_point since;
  };
  void trim_locked(clock::time_point now) noexcept;
  std::vector<std::uint8_t> take_kept(std::size_t n);  // a kept buffer of capacity >= n, as it was given, or none
  const limits limits_;
  mutable std::mutex mu_;
  std::vector<entry> kept_;  // oldest first
  std::size_t kept_bytes_ = 0;
  std::uint64_t hits_ = 0, misses_ = 0;
};

// The node's pool: shared_bytes of big messages take their buffers from it and give them back when freed.
buffer_pool& big_buffers() noexcept;

}  // namespace cnode::etf
