// bench_etf's parts: the corpus, the timing loop, and the two peers it measures against (libei, the BEAM).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "etf/term.hpp"

namespace cnode::etf::bench {

struct item {
  std::string name;
  term value;
  std::vector<std::uint8_t> bytes;  // our encoding; every peer decodes these same bytes
};

std::vector<item> make_corpus();

// Best nanoseconds per call of fn over a few rounds of at least 50 ms each.
template <typename Fn>
double best_ns(Fn&& fn) {
  using clock = std::chrono::steady_clock;
  auto round = [&](std::uint64_t n) {
    auto t0 = clock::now();
    for (std::uint64_t i = 0; i < n; ++i) fn();
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count());
  };
  std::uint64_t n = 1;
  while (round(n) < 50e6) n *= 2;
  double best = 1e300;
  for (int r = 0; r < 5; ++r) best = std::min(best, round(n) / static_cast<double>(n));
  return best;
}

// libei: walks the bytes with ei_get_type/ei_decode_* of every element; builds them with ei_x_encode_* from a
// flattened list of operations (so that reading our term does not count against libei).
class ei_peer {
 public:
  explicit ei_peer(const item& it);
  ~ei_peer();
  ei_peer(const ei_peer&) = delete;
  ei_peer& operator=(const ei_peer&) = delete;
  void decode();  // throws std::runtime_error when libei refuses the bytes
  void encode();  // throws std::runtime_error when libei refuses
  std::size_t encoded_size() const;

 private:
  struct state;
  std::unique_ptr<state> s_;
};

struct beam_figures {
  double decode_ns = 0;
  double encode_ns = 0;
};

// Runs erl on the corpus files (etf_bench.erl); name -> figures. Throws std::runtime_error when erl fails.
std::map<std::string, beam_figures> run_beam(const std::vector<item>& corpus);

}  // namespace cnode::etf::bench
