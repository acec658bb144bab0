// Helpers of the CRDT core tests: seeds (a failing seed is printed; CNODE_SEED=<n> replays just that one), random
// operations of every type over a small domain (so that histories collide). The simulated network is the shared
// one (test/support/sim.hpp).
#pragma once

#include <doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "crdt/store.hpp"
#include "etf/format.hpp"

namespace crdt_test {

using namespace cnode::crdt;
using cnode::etf::atom;

// The seeds to run: `count` seeds from `base`, or only CNODE_SEED when it is set.
inline std::vector<std::uint64_t> seeds(std::uint64_t base, int count) {
  if (const char* s = std::getenv("CNODE_SEED")) return {std::strtoull(s, nullptr, 10)};
  std::vector<std::uint64_t> v;
  for (int i = 0; i < count; ++i) v.push_back(base + static_cast<std::uint64_t>(i));
  return v;
}

using rng_t = std::mt19937_64;
inline std::uint64_t pick(rng_t& rng, std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng); }
inline bool chance(rng_t& rng, double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

// A small domain of values: integers, atoms, a float equal to an integer, a tuple.
inline term random_value(rng_t& rng) {
  switch (pick(rng, 5)) {
    case 0: return term(static_cast<int>(pick(rng, 4)));
    case 1: {
      static const char* const atoms[] = {"a", "b", "c"};
      return term(atom(atoms[pick(rng, 3)]));
    }
    case 2: return term(1.0);
    case 3: return term::tuple({term(atom("k")), term(static_cast<int>(pick(rng, 2)))});
    default: return term::binary(pick(rng, 2) ? "x" : "y");
  }
}

inline std::string str(const term& t) { return cnode::etf::to_string(t); }

// Random delta-mutations of each type at replica r, with physical time now_ms for the HLC.
struct op_context {
  rng_t& rng;
  replica_id r;
  hlc& clock;
  std::int64_t now_ms;
};
inline pn_counter random_op(const pn_counter& s, op_context c) {
  return s.add(c.r, static_cast<std::int64_t>(pick(c.rng, 11)) - 5);
}
inline aw_or_set random_op(const aw_or_set& s, op_context c) {
  switch (pick(c.rng, 8)) {
    case 0: return s.clear();
    case 1:
    case 2:
    case 3: return s.remove(random_value(c.rng));
    default: return s.add(c.r, random_value(c.rng));
  }
}
inline lww_register random_op(const lww_register& s, op_context c) {
  return s.set(random_value(c.rng), c.clock.now(c.now_ms));
}
inline aw_lww_map random_op(const aw_lww_map& s, op_context c) {
  switch (pick(c.rng, 8)) {
    case 0: return s.clear();
    case 1:
    case 2: return s.remove(random_value(c.rng));
    default: return s.put(c.r, random_value(c.rng), random_value(c.rng), c.clock.now(c.now_ms));
  }
}

template <class T>
T joined(T a, const T& b) {
  a.join(b);
  return a;
}

// A random history of `n` replicas of T: local operations and state merges between them, with every delta kept.
template <class T>
struct history {
  std::vector<replica_id> ids;
  std::vector<T> states;
  std::vector<hlc> clocks;
  std::vector<T> deltas;  // every delta of every replica, in the order they were made

  history(rng_t& rng, int n, int steps) {
    for (int i = 0; i < n; ++i) {
      static const char* const names[] = {"r0@sim", "r1@sim", "r2@sim", "r3@sim", "r4@sim"};
      ids.push_back(atom(names[i % 5]));
      clocks.emplace_back(ids.back());
    }
    states.resize(n);
    std::int64_t now = 1000;
    for (int s = 0; s < steps; ++s) {
      now += static_cast<std::int64_t>(pick(rng, 3));  // often the same millisecond: the logical part counts
      const auto i = pick(rng, n);
      if (chance(rng, 0.25)) {
        states[i].join(states[pick(rng, n)]);
      } else {
        // Clocks drift: each replica sees physical time with its own skew.
        T d = random_op(states[i], op_context{rng, ids[i], clocks[i], now + static_cast<std::int64_t>(i) * 3});
        states[i].join(d);
        deltas.push_back(std::move(d));
      }
    }
  }
};

}  // namespace crdt_test
