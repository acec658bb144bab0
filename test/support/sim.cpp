#include "test/support/sim.hpp"

#include <cstdio>
#include <cstdlib>

namespace cnode::test {

std::uint64_t seed_from_env(std::uint64_t fallback) {
  const char* s = std::getenv("CNODE_SEED");
  std::uint64_t seed = s && *s ? std::strtoull(s, nullptr, 10) : fallback;
  return seed;
}

}  // namespace cnode::test
