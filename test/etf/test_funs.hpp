// A NEW_FUN_EXT term for the etf tests: arity 1, module m, indexes and uniq 0, pid a@b, the given free variables.
#pragma once

#include <utility>
#include <vector>

#include "etf/term.hpp"

namespace cnode::etf::test {

inline term fun_with(std::vector<term> free) {
  fun_value f;
  f.arity = 1;
  f.module = atom("m");
  f.old_index = term(0);
  f.old_uniq = term(0);
  f.pid = term::pid({atom("a@b"), 1, 2, 3});
  f.free_vars = std::move(free);
  return term::fun(std::move(f));
}

}  // namespace cnode::etf::test
