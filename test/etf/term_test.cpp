#include <doctest.h>

#include <unordered_set>

#include "etf/codec.hpp"
#include "etf/term.hpp"

using namespace cnode::etf;

namespace {
std::vector<std::uint8_t> bytes(std::initializer_list<int> l) {
  std::vector<std::uint8_t> v;
  for (int x : l) v.push_back(static_cast<std::uint8_t>(x));
  return v;
}
term pid_on(const char* node, std::uint32_t id, std::uint32_t serial, std::uint32_t creation) {
  return term::pid({atom(node), id, serial, creation});
}
}  // namespace

TEST_CASE("small integers stay inline; big integers normalise") {
  CHECK(sizeof(term) == 16);
  term a = 42;
  CHECK(a.is_small());
  CHECK(term::from_big(big_int(7)).is_small());
  term big = term::from_big(big_int(1) << 70);
  CHECK(big.type() == term_type::big_integer);
  term u = std::uint64_t{1} << 63;
  CHECK(u.type() == term_type::big_integer);
  CHECK(u.big() == (big_int(1) << 63));
}

TEST_CASE("term order across classes follows the BEAM") {
  // number < atom < reference < fun < port < pid < tuple < map < nil < list < bitstring
  std::vector<term> ordered = {
      term(1),
      term(atom("a")),
      term::reference({atom("n@h"), 1, 1, {1}}),
      term::export_({atom("m"), atom("f"), 1}),
      term::port({atom("n@h"), 1, 1}),
      pid_on("n@h", 1, 0, 1),
      term::tuple({term(1)}),
      term::map({{term(1), term(2)}}),
      term(),
      term::list({term(1)}),
      term::binary("x"),
  };
  for (std::size_t i = 0; i + 1 < ordered.size(); ++i) {
    CAPTURE(i);
    CHECK(compare(ordered[i], ordered[i + 1]) < 0);
    CHECK(compare(ordered[i + 1], ordered[i]) > 0);
  }
}

TEST_CASE("numbers compare exactly by value; =:= tells 1 from 1.0") {
  CHECK(compare(term(1), term(1.0)) == 0);
  CHECK(equal(term(1), term(1.0)));
  CHECK_FALSE(exact_equal(term(1), term(1.0)));
  // 2^53 + 1 is not equal to the float 2^53 (OTP 25: false, and greater).
  term i = std::int64_t{9007199254740993};
  CHECK(compare(i, term(9007199254740992.0)) > 0);
  term huge = term::from_big(big_int(1) << 100);
  CHECK(compare(huge, term(1e30)) > 0);
  CHECK(compare(huge, term(1.2676506002282294e30)) == 0);  // exactly 2^100
  CHECK(compare(term::from_big(-(big_int(1) << 100)), term(-1.0)) < 0);
  CHECK(compare(term(-0.0), term(0.0)) == 0);
}

TEST_CASE("map key order puts every integer before every float") {
  term m = term::map({{term(1.0), term(atom("a"))}, {term(2), term(atom("c"))}, {term(1), term(atom("b"))}});
  REQUIRE(m.map_size() == 3);
  CHECK(exact_equal(m.map_keys()[0], term(1)));
  CHECK(exact_equal(m.map_keys()[1], term(2)));
  CHECK(exact_equal(m.map_keys()[2], term(1.0)));
  // #{1 => a} < #{1.0 => a}, and they are not ==.
  term a = term::map({{term(1), term(atom("a"))}});
  term b = term::map({{term(1.0), term(atom("a"))}});
  CHECK(compare(a, b) < 0);
  CHECK_FALSE(equal(a, b));
  CHECK(m.map_find(term(1.0)) != nullptr);
  CHECK(m.map_find(term(3)) == nullptr);
}

TEST_CASE("pids, ports and refs order as OTP 25 does") {
  // Observed with lists:sort/1 on OTP 25.2.3.
  CHECK(compare(pid_on("a@h", 5, 0, 1), pid_on("a@h", 1, 9, 1)) < 0);  // serial first
  CHECK(compare(pid_on("b@h", 1, 0, 1), pid_on("a@h", 2, 0, 1)) < 0);  // then number
  CHECK(compare(pid_on("a@h", 1, 0, 2), pid_on("aa", 1, 0, 1)) < 0);   // then node
  CHECK(compare(pid_on("b@h", 1, 0, 0), pid_on("b@h", 1, 0, 1)) < 0);  // then creation
  auto ref = [](const char* n, std::uint32_t cr, std::vector<std::uint32_t> w) {
    ref_value v{atom(n), cr, static_cast<std::uint8_t>(w.size()), {}};
    std::copy(w.begin(), w.end(), v.ids);
    return term::reference(v);
  };
  std::vector<term> refs = {ref("a@h", 1, {2, 0, 0}), ref("a@h", 1, {5}), ref("a@h", 1, {1, 2}),
                            ref("a@h", 1, {1, 1, 1}), ref("a@h", 2, {1}), ref("b@h", 1, {1})};
  for (std::size_t i = 0; i + 1 < refs.size(); ++i) CHECK(compare(refs[i], refs[i + 1]) < 0);
  CHECK(compare(term::port({atom("a@h"), 9, 1}), term::port({atom("a@h"), 1, 2})) < 0);
}

TEST_CASE("maps order by size, then keys, then values") {
  std::vector<term> sorted = {term::map({{term(atom("a")), term(2)}}), term::map({{term(atom("b")), term(1)}}),
                              term::map({{term(atom("c")), term(0)}}),
                              term::map({{term(atom("a")), term(1)}, {term(atom("b")), term(1)}})};
  for (std::size_t i = 0; i + 1 < sorted.size(); ++i) CHECK(compare(sorted[i], sorted[i + 1]) < 0);
}

TEST_CASE("lists compare element-wise whatever their segmentation") {
  term a = term::list({term(1), term(2), term(3)});
  term b = term::improper_list({term(1)}, term::list({term(2), term(3)}));
  CHECK(exact_equal(a, b));
  CHECK(hash_exact(a) == hash_exact(b));
  CHECK(compare(term::improper_list({term(1)}, term(2)), term::list({term(1), term(2)})) < 0);  // [1|2] < [1,2]
  CHECK(compare(term::list({term(1)}), term::list({term(1), term(0)})) < 0);
  CHECK(exact_equal(a.tail(), term::list({term(2), term(3)})));
}

TEST_CASE("bitstrings compare bit by bit") {
  std::uint8_t one = 0x80;
  term b1 = term::bitstring({&one, 1}, 1);  // <<1:1>>
  CHECK(b1.bit_size() == 1);
  CHECK(compare(b1, term::binary(std::string_view("\x80", 1))) < 0);  // a prefix is smaller
  CHECK(compare(term::binary("ab"), term::binary("b")) < 0);
}

TEST_CASE("hashes agree with their equalities") {
  CHECK(hash_exact(term(1)) != hash_exact(term(1.0)));
  CHECK(hash_equal(term(1)) == hash_equal(term(1.0)));
  CHECK(hash_equal(term::from_big(big_int(1) << 80)) == hash_equal(term(1208925819614629174706176.0)));
  std::unordered_set<term> s{term(1), term(1.0), term::string("abc"), term::string("abc")};
  CHECK(s.size() == 3);
}

TEST_CASE("1 000 000-deep nesting: build, encode, decode, compare, hash, destroy") {
  constexpr int depth = 1'000'000;
  term t = term(atom("leaf"));
  for (int i = 0; i < depth; ++i) t = (i % 2) ? term::list({t}) : term::tuple({t, term(i)});
  term copy = t;
  std::vector<std::uint8_t> bin = encode(t);
  decode_result r = decode(bin);
  REQUIRE(r);
  CHECK(exact_equal(r.value, t));
  CHECK(compare(r.value, copy) == 0);
  CHECK(hash_exact(r.value) == hash_exact(t));
  // destruction of three deep terms at scope exit must not overflow the stack
}

TEST_CASE("known bytes from OTP 25 term_to_binary") {
  CHECK(encode(term(atom("abc"))) == bytes({131, 100, 0, 3, 97, 98, 99}));
  CHECK(encode(term(atom("h\xc3\xa9"))) == bytes({131, 100, 0, 2, 104, 233}));
  CHECK(encode(term(atom("\xe6\x97\xa5\xe6\x9c\xac"))) == bytes({131, 119, 6, 230, 151, 165, 230, 156, 172}));
  CHECK(encode(term(1.5)) == bytes({131, 70, 63, 248, 0, 0, 0, 0, 0, 0}));
  CHECK(encode(term::list({term(1), term(2), term(3)})) == bytes({131, 107, 0, 3, 1, 2, 3}));
  CHECK(encode(term(-1)) == bytes({131, 98, 255, 255, 255, 255}));
  CHECK(encode(term(std::int64_t{1} << 32)) == bytes({131, 110, 5, 0, 0, 0, 0, 0, 1}));
  auto again = decode(bytes({131, 100, 0, 2, 104, 233}));
  REQUIRE(again);
  CHECK(again.value.atom_value().text() == "h\xc3\xa9");
}

TEST_CASE("large binaries decoded from a shared buffer refer into it") {
  std::vector<std::uint8_t> big(1000, 7);
  std::vector<std::uint8_t> bin = encode(term::binary(std::span<const std::uint8_t>(big)));
  shared_bytes buf(std::move(bin));
  decode_result r = decode_prefix(buf, 0);
  REQUIRE(r);
  CHECK(r.value.bytes().data() == buf.data() + 6);
}
