// Issue 14's codec paths: encoding appended to a buffer that already holds bytes (the per-thread chunk, payloads
// larger than it, a fun's Size field patched after a flush), and decoded terms whose nodes share arena blocks
// (subterms outliving their root, on another thread, errors half-way, blocks past the first).
#include <doctest.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "etf/codec.hpp"
#include "test_funs.hpp"

using namespace cnode::etf;
using bytes = std::vector<std::uint8_t>;

namespace {

term big_binary(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + 7);
  return term::binary(std::string_view(s));
}

using cnode::etf::test::fun_with;

// encode(t, out) after `prefix` must leave the prefix and append exactly encode(t).
void appends_exactly(const term& t, const bytes& prefix) {
  bytes out = prefix;
  encode(t, out);
  const bytes alone = encode(t);
  REQUIRE(out.size() == prefix.size() + alone.size());
  CHECK(std::equal(prefix.begin(), prefix.end(), out.begin()));
  CHECK(std::equal(alone.begin(), alone.end(), out.begin() + static_cast<std::ptrdiff_t>(prefix.size())));
  decode_result r = decode({out.data() + prefix.size(), alone.size()});
  REQUIRE(r);
  CHECK(r.value == t);
}

}  // namespace

TEST_CASE("encoding appends to a buffer that already holds bytes, whatever the size of the term") {
  const bytes prefix(100'003, 0xAB);
  appends_exactly(term::tuple({term(atom("get")), term::binary(std::string_view("key")), term(42)}), prefix);
  appends_exactly(big_binary(200'000), prefix);        // payload larger than the chunk: straight into out
  appends_exactly(big_binary(65'530), prefix);         // payload that does not fit what is left of the chunk
  appends_exactly(term::from_big(big_int(1) << 700'000), prefix);  // LARGE_BIG_EXT larger than the chunk
  std::vector<term> ints;
  for (int i = 0; i < 100'000; ++i) ints.push_back(term(i * 7919 - 300'000));
  appends_exactly(term::list(std::vector<term>(ints)), prefix);  // many chunk flushes
  appends_exactly(term::improper_list({term(1), term(2)}, term::tuple({term(3)})), prefix);
  appends_exactly(term::improper_list({term::tuple({term(1)}), term(2)}, term(atom("t"))), prefix);
  // A fun whose free variables span chunk flushes: its Size field is patched in out, not in the chunk.
  appends_exactly(fun_with({term::list(std::vector<term>(ints)), big_binary(70'000), term(atom("x"))}), prefix);
  appends_exactly(fun_with({term(1), fun_with({big_binary(100'000)}), term(2)}), bytes{});
}

TEST_CASE("many terms encoded one after another into one buffer are each term_to_binary's bytes") {
  bytes out;
  std::vector<std::size_t> ends;
  std::vector<term> terms;
  for (int i = 0; i < 20'000; ++i) {
    terms.push_back(term::tuple({term(atom("get")), term::binary(std::string_view("key-" + std::to_string(i))),
                                 term(i), i % 100 == 0 ? big_binary(5'000) : term()}));
    encode(terms.back(), out);
    ends.push_back(out.size());
  }
  std::size_t at = 0;
  for (std::size_t i = 0; i < terms.size(); ++i) {
    decode_result r = decode({out.data() + at, ends[i] - at});
    REQUIRE(r);
    CHECK(r.value == terms[i]);
    at = ends[i];
  }
}

TEST_CASE("decoded subterms outlive the term they came from, on this thread and on another") {
  std::vector<term> elems;
  for (int i = 0; i < 5'000; ++i)  // enough nodes for several arena blocks
    elems.push_back(term::tuple({term::binary(std::string_view("value-" + std::to_string(i))), term(i),
                                 term::pid({atom("n@h"), static_cast<std::uint32_t>(i), 0, 1})}));
  const term original = term::list(std::vector<term>(elems));
  const bytes b = encode(original);
  term first, middle, last, tail;
  {
    decode_result r = decode(b);
    REQUIRE(r);
    CHECK(r.value == original);
    first = r.value.head();
    middle = r.value.list_segment()[2'500].element(0);
    last = r.value.list_segment()[4'999];
    tail = r.value.tail();
  }  // the root goes; the subterms keep their blocks
  CHECK(first == elems[0]);
  CHECK(middle == elems[2'500].element(0));
  CHECK(last == elems[4'999]);
  CHECK(tail.list_segment().size() == 4'999);
  tail = term();
  CHECK(last.element(2).as_pid().id == 4'999);

  // Decoded here, dropped on another thread (the blocks are freed there), and the other way round.
  decode_result r = decode(b);
  REQUIRE(r);
  std::thread([t = std::move(r.value)]() mutable { t = term(); }).join();
  term from_other;
  std::thread([&] { from_other = decode_or_throw(b); }).join();
  CHECK(from_other == original);
}

TEST_CASE("a decode that fails half-way frees what it built and the next decode is unaffected") {
  bytes b = encode(term::list({term::tuple({term(1), term::binary(std::string_view("abc"))}), term(atom("x"))}));
  for (std::size_t cut = 1; cut < b.size(); ++cut) {
    decode_result r = decode({b.data(), cut});
    CHECK(!r);
  }
  bytes bad = b;
  bad.back() = 255;  // an unknown tag in the list's tail
  CHECK(!decode(bad));
  decode_result ok = decode(b);
  REQUIRE(ok);
  CHECK(ok.value == decode_or_throw(encode(ok.value)));
}

TEST_CASE("the depth limit counts a tuple, list or map of leaves as a level") {
  const bytes flat = encode(term::tuple({term(1), term(atom("a"))}));
  CHECK(decode(flat, {.max_depth = 1}));
  decode_result r = decode(flat, {.max_depth = 0});
  CHECK(r.ec == error::too_deep);
  CHECK(decode(encode(term::list({term(1000), term(atom("a"))})), {.max_depth = 0}).ec == error::too_deep);  // LIST_EXT
  CHECK(decode(encode(term::map({{term(1), term(2)}})), {.max_depth = 0}).ec == error::too_deep);
  CHECK(decode(encode(term::tuple({term::tuple({term(1)})})), {.max_depth = 1}).ec == error::too_deep);
}

TEST_CASE("atoms found through the decoder's cache are the atoms the bytes name") {
  // Latin-1 bytes that are also valid UTF-8 name a different atom under ATOM_EXT than under ATOM_UTF8_EXT.
  const bytes utf8 = {131, 119, 2, 0xC3, 0xA9};   // SMALL_ATOM_UTF8_EXT "é"
  const bytes latin1 = {131, 115, 2, 0xC3, 0xA9};  // SMALL_ATOM_EXT "Ã©"
  for (int round = 0; round < 3; ++round) {
    CHECK(decode_or_throw(utf8).atom_value() == atom("é"));
    CHECK(decode_or_throw(latin1).atom_value() == atom("Ã©"));
  }
  for (int i = 0; i < 3'000; ++i) {  // more names than cache slots
    const std::string name = "atom_" + std::to_string(i);
    CHECK(decode_or_throw(encode(term(atom(name)))).atom_value().text() == name);
  }
}
