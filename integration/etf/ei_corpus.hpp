// The corpus of etf_ei_check (ei_corpus.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "etf/term.hpp"

namespace cnode::etf::ei_check {

// Edge values first, then `count` random terms drawn from `seed`.
std::vector<term> ei_corpus(std::uint64_t seed, long count);

}  // namespace cnode::etf::ei_check
