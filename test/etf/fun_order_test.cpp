// Funs in term order and =:= as OTP 25 has them (checked live): the creator pid takes no part, so the environment
// decides between two funs of one definition, and funs that differ only in their creator are equal.
#include <doctest.h>

#include "etf/term.hpp"

using namespace cnode::etf;

namespace {

term make_fun(const char* creator_node, std::vector<term> env) {
  fun_value f;
  f.module = atom("etf_gen");
  f.arity = 0;
  f.index = 3;
  f.old_index = term(3);
  f.old_uniq = term(45814862);
  f.pid = term::pid(pid_value{atom(creator_node), 88, 0, 1});
  f.free_vars = std::move(env);
  return term::fun(std::move(f));
}

}  // namespace

TEST_CASE("funs: the environment orders them, the creator pid does not") {
  // As in a failing differential seed: A's creator sorts after C's, A's environment before.
  term a = make_fun("z@host", {term(1), term::binary("two")});
  term c = make_fun("a@host", {term(134217729), term(atom("r"))});
  CHECK(compare(a, c) < 0);
  CHECK(compare(c, a) > 0);
  term a2 = make_fun("a@host", {term(1), term::binary("two")});
  CHECK(exact_equal(a, a2));
  CHECK(compare(a, a2) == 0);
  CHECK(hash_exact(a) == hash_exact(a2));
}
