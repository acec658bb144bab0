// The codec against bytes taken from a live OTP 25.2.3 node (term_to_binary/1,2), round trips, and terms nested a
// million deep (decode, encode, compare and destroy without recursion).
#include <doctest.h>

#include <cstdint>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string>
#include <vector>

#include "etf/codec.hpp"

using namespace cnode::etf;
using bytes = std::vector<std::uint8_t>;

namespace {

pid_value pid_ab() { return {atom("a@b"), 1, 2, 3}; }

// Both directions: our encoding is exactly the BEAM's, and decoding the BEAM's gives the term back.
void same_as_beam(const term& t, const bytes& beam, const encode_options& opts = {}) {
  CHECK(encode(t, opts) == beam);
  decode_result r = decode(beam);
  REQUIRE_MESSAGE(r, r.ec.message() << " at " << r.offset);
  CHECK(r.value == t);
  CHECK(r.offset == beam.size());
}

big_int pow2(int n) { return big_int(1) << n; }

}  // namespace

TEST_CASE("integers encode as term_to_binary does at every size boundary") {
  same_as_beam(term(1), {131, 97, 1});
  same_as_beam(term(255), {131, 97, 255});
  same_as_beam(term(256), {131, 98, 0, 0, 1, 0});
  same_as_beam(term(-1), {131, 98, 255, 255, 255, 255});
  same_as_beam(term(1 << 27), {131, 98, 8, 0, 0, 0});
  same_as_beam(term(INT32_MIN), {131, 98, 128, 0, 0, 0});
  same_as_beam(term(std::int64_t{1} << 31), {131, 110, 4, 0, 0, 0, 0, 128});
  same_as_beam(term::from_big(pow2(63)), {131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128});
  same_as_beam(term::from_big(-pow2(63) - 1), {131, 110, 8, 1, 1, 0, 0, 0, 0, 0, 0, 128});
  same_as_beam(term::from_big(pow2(64)), {131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  // INT64_MIN is a small integer for us but a SMALL_BIG_EXT on the wire.
  same_as_beam(term(INT64_MIN), {131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128});
}

TEST_CASE("a 1000-digit integer is a LARGE_BIG_EXT of 416 bytes and round-trips") {
  big_int v(std::string(1000, '7'));
  bytes b = encode(term::from_big(v));
  REQUIRE(b.size() == 1 + 1 + 4 + 1 + 416);
  CHECK(bytes(b.begin(), b.begin() + 12) == bytes{131, 111, 0, 0, 1, 160, 0, 113, 28, 199, 113, 28});
  decode_result r = decode(b);
  REQUIRE(r);
  CHECK(r.value.big() == v);
  CHECK(decode(encode(term::from_big(-v))).value.big() == -v);
}

TEST_CASE("floats are NEW_FLOAT_EXT, -0.0 keeps its sign") {
  same_as_beam(term(1.5), {131, 70, 63, 248, 0, 0, 0, 0, 0, 0});
  same_as_beam(term(5e-324), {131, 70, 0, 0, 0, 0, 0, 0, 0, 1});
  same_as_beam(term(1.7976931348623157e308), {131, 70, 127, 239, 255, 255, 255, 255, 255, 255});
  same_as_beam(term(-0.0), {131, 70, 128, 0, 0, 0, 0, 0, 0, 0});
  // (In OTP 25, -0.0 =:= 0.0, so the term comparison cannot tell; the bytes above do.)
  // FLOAT_EXT (term_to_binary(1.5, [{minor_version, 0}])) decodes too.
  bytes old(2 + 31, 0);  // tag, then 31 bytes of NUL-padded text
  old[0] = 131;
  old[1] = 99;
  const std::string_view text = "1.50000000000000000000e+00";
  for (std::size_t i = 0; i < text.size(); ++i) old[2 + i] = static_cast<std::uint8_t>(text[i]);
  decode_result r = decode(old);
  REQUIRE(r);
  CHECK(r.value == term(1.5));
}

TEST_CASE("atoms: ATOM_EXT for Latin-1, SMALL_ATOM_UTF8_EXT otherwise, UTF-8 tags on request") {
  same_as_beam(term(atom("a")), {131, 100, 0, 1, 97});
  same_as_beam(term(atom("")), {131, 100, 0, 0});
  same_as_beam(term(atom("h\xc3\xa9llo")), {131, 100, 0, 5, 104, 233, 108, 108, 111});
  same_as_beam(term(atom("\xf0\x9f\x98\x80")), {131, 119, 4, 240, 159, 152, 128});
  CHECK(encode(term(atom("a")), {.utf8_atoms = true}) == bytes{131, 119, 1, 97});
  // The other atom tags decode to the same atoms.
  CHECK(decode(bytes{131, 115, 1, 97}).value == term(atom("a")));
  CHECK(decode(bytes{131, 118, 0, 1, 97}).value == term(atom("a")));
}

TEST_CASE("tuples, lists, strings, binaries, bitstrings and maps") {
  same_as_beam(term::tuple({}), {131, 104, 0});
  same_as_beam(term::tuple({term(atom("a")), term(1)}), {131, 104, 2, 100, 0, 1, 97, 97, 1});
  same_as_beam(term::nil(), {131, 106});
  same_as_beam(term::list({term(1), term(2), term(3)}), {131, 107, 0, 3, 1, 2, 3});
  same_as_beam(term::list({term(1000)}), {131, 108, 0, 0, 0, 1, 98, 0, 0, 3, 232, 106});
  same_as_beam(term::cons(term(atom("a")), term(atom("b"))), {131, 108, 0, 0, 0, 1, 100, 0, 1, 97, 100, 0, 1, 98});
  same_as_beam(term::binary(std::string_view()), {131, 109, 0, 0, 0, 0});
  same_as_beam(term::binary(bytes{1, 2, 3}), {131, 109, 0, 0, 0, 3, 1, 2, 3});
  same_as_beam(term::bitstring(bytes{32}, 3), {131, 77, 0, 0, 0, 1, 3, 32});
  same_as_beam(term::map({}), {131, 116, 0, 0, 0, 0});
  same_as_beam(term::map({{term(atom("b")), term(2)}, {term(atom("a")), term(1)}}),
               {131, 116, 0, 0, 0, 2, 100, 0, 1, 97, 97, 1, 100, 0, 1, 98, 97, 2});
  // 1 and 1.0 are different keys; integers sort first.
  same_as_beam(term::map({{term(1.0), term(atom("b"))}, {term(1), term(atom("a"))}}),
               {131, 116, 0, 0, 0, 2, 97, 1, 100, 0, 1, 97, 70, 63, 240, 0, 0, 0, 0, 0, 0, 100, 0, 1, 98});
  bytes big_tuple = encode(term::tuple(std::vector<term>(256, term(1))));
  CHECK(bytes(big_tuple.begin(), big_tuple.begin() + 6) == bytes{131, 105, 0, 0, 1, 0});
}

TEST_CASE("pids, ports, references, exports and funs") {
  same_as_beam(term::pid(pid_ab()), {131, 88, 100, 0, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3});
  same_as_beam(term::port({atom("a@b"), 5, 7}), {131, 89, 100, 0, 3, 97, 64, 98, 0, 0, 0, 5, 0, 0, 0, 7});
  // Port numbers above 28 bits are V4_PORT_EXT (erts external.c, ERTS_MAX_V3_PORT_NUMBER).
  same_as_beam(term::port({atom("a@b"), std::uint64_t{1} << 28, 7}),
               {131, 120, 100, 0, 3, 97, 64, 98, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 7});
  ref_value r;
  r.node = atom("a@b");
  r.creation = 9;
  r.len = 3;
  r.ids[0] = 1;
  r.ids[1] = 2;
  r.ids[2] = 3;
  same_as_beam(term::reference(r), {131, 90, 0, 3, 100, 0, 3, 97, 64, 98, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0,
                                    0, 3});
  same_as_beam(term::export_({atom("lists"), atom("map"), 2}),
               {131, 113, 100, 0, 5, 108, 105, 115, 116, 115, 100, 0, 3, 109, 97, 112, 97, 2});
  // fun(Y) -> {X, Y} end with X = 42, compiled in module gb.
  const bytes fun_bytes{131, 112, 0,   0,   0,   72,  1,   225, 221, 162, 137, 216, 144, 95,  111, 3,   242, 95,
                        59,  34,  2,   210, 248, 0,   0,   0,   0,   0,   0,   0,   1,   100, 0,   2,   103, 98,
                        97,  0,   98,  7,   14,  237, 20,  88,  100, 0,   13,  110, 111, 110, 111, 100, 101, 64,
                        110, 111, 104, 111, 115, 116, 0,   0,   0,   9,   0,   0,   0,   0,   0,   0,   0,   0,
                        97,  42};
  decode_result d = decode(fun_bytes);
  REQUIRE_MESSAGE(d, d.ec.message() << " at " << d.offset);
  REQUIRE(d.value.type() == term_type::fun);
  const fun_value& f = d.value.as_fun();
  CHECK(f.arity == 1);
  CHECK(f.index == 0);
  CHECK(f.module == atom("gb"));
  CHECK(f.old_index == term(0));
  CHECK(f.old_uniq == term(118418708));
  CHECK(f.pid.as_pid() == pid_value{atom("nonode@nohost"), 9, 0, 0});
  REQUIRE(f.free_vars.size() == 1);
  CHECK(f.free_vars[0] == term(42));
  CHECK(encode(d.value) == fun_bytes);
}

TEST_CASE("compressed terms: decoded, and written with term_to_binary's zlib bytes") {
  std::vector<term> as(100, term(atom("a")));
  term t = term::list(std::move(as));
  const bytes level6{131, 80, 0, 0, 1, 150, 120, 156, 203, 97, 96, 96, 72, 73, 97,
                     96,  76, 28, 197, 131, 7, 103, 1, 0, 48, 70, 78, 147};
  const bytes level1{131, 80, 0, 0, 1, 150, 120, 1, 203, 97, 96, 96, 72, 73, 97,
                     96,  76, 28, 197, 131, 39, 12, 178, 0, 48, 70, 78, 147};
  same_as_beam(t, level6, {.compression_level = 6});
  same_as_beam(t, level1, {.compression_level = 1});
  // When compressing does not make it smaller, term_to_binary writes it plain.
  CHECK(encode(term(atom("a")), {.compression_level = 9}) == bytes{131, 100, 0, 1, 97});
}

TEST_CASE("round trips of assorted terms, with and without the version byte and compression") {
  std::vector<term> terms{
      term::tuple({term(atom("get")), term::binary(std::string_view("key")), term(42)}),
      term::map({{term::tuple({term(1), term::nil()}), term::list({term(1.5)})},
                 {term::map({{term(atom("k")), term(atom("v"))}}), term::bitstring(bytes{0xf0}, 4)}}),
      term::improper_list({term(1), term(2)}, term(atom("tail"))),
      term::string("h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x98\x80"),
      term::binary(std::string(100000, 'x')),
  };
  for (const term& t : terms) {
    for (int level : {-1, 0, 6, 9}) {
      bytes b = encode(t, {.compression_level = level});
      decode_result r = decode(b);
      REQUIRE(r);
      CHECK(r.value == t);
    }
    bytes bare = encode(t, {.version = false});
    decode_result r = decode(bare, {.expect_version = false});
    REQUIRE(r);
    CHECK(r.value == t);
    // decode_prefix stops after the term and says where.
    bytes two = encode(t);
    bytes second = encode(term(atom("next")));
    two.insert(two.end(), second.begin(), second.end());
    decode_result p = decode_prefix(two);
    REQUIRE(p);
    CHECK(p.value == t);
    CHECK(p.offset == two.size() - second.size());
  }
}

TEST_CASE("shared decoding: large binaries refer into the buffer and stay valid after it is dropped") {
  term t = term::tuple({term::binary(std::string(1000, 'y')), term::binary(std::string_view("small"))});
  term decoded;
  {
    shared_bytes buf(encode(t));
    decode_result r = decode_prefix(buf, 0);
    REQUIRE(r);
    decoded = r.value;
  }
  CHECK(decoded == t);
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
// The per-thread scratch stacks give back what an outsized term grew them to (etf/term_detail.hpp trim_scratch):
// after a million-deep term is decoded, encoded, compared, hashed and dropped, the heap in use is back to where it
// was (glibc's count of bytes in allocated chunks), give or take the stacks' kept size.
TEST_CASE("scratch stacks shrink back after a deep term") {
  auto in_use = [] {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;  // allocated chunks in the arenas and mmapped ones
  };
  {
    term warm = term::list({term::tuple({term(1)})});  // the thread's stacks and chunks, at their kept size
    CHECK(decode(encode(warm)).value == warm);
    (void)hash_exact(warm);
  }
  const std::size_t before = in_use();
  {
    term t;
    for (int i = 0; i < 1'000'000; ++i) t = term::list({term::tuple({t})});
    bytes b = encode(t);
    decode_result r = decode(b);
    REQUIRE(r);
    CHECK(r.value == t);
    CHECK(hash_exact(r.value) == hash_exact(t));
  }
  const std::size_t after = in_use();
  MESSAGE("heap in use " << before << " -> " << after << " bytes");
  CHECK(after < before + 4 * detail::scratch_keep_bytes);
}
// A small term decoded right after a large one, and kept, pins an arena block of at most 4 KiB (a first block), not
// the large decode's last block (up to 64 KiB): decode starts close an open block larger than a first block
// (etf/term_detail.hpp node_arena::begin). 200 rounds of a large term decoded and dropped, then a small one kept.
TEST_CASE("a small term kept after a large decode pins a first block at most") {
  auto in_use = [] {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
  };
  std::vector<term> big_elems;
  for (int i = 0; i < 5'000; ++i) big_elems.push_back(term::tuple({term(i), term(i + 1)}));
  const bytes big = encode(term::list(big_elems));
  const bytes small = encode(term::tuple({term(atom("ok")), term(7), term::tuple({term(1), term(2)})}));
  std::vector<term> kept;
  kept.reserve(200);
  { (void)decode(big).value; }  // the thread's kept blocks at their size
  const std::size_t before = in_use();
  for (int i = 0; i < 200; ++i) {
    { REQUIRE(decode(big)); }
    decode_result r = decode(small);
    REQUIRE(r);
    kept.push_back(std::move(r.value));
  }
  const std::size_t per_kept = (in_use() - before) / kept.size();
  MESSAGE("heap per kept small term " << per_kept << " bytes");
  CHECK(per_kept <= 6 * 1024);
  for (const term& k : kept) CHECK(encode(k) == small);
}
#endif

TEST_CASE("a million levels of nesting: decode, encode, compare, destroy") {
  constexpr int depth = 1'000'000;
  SUBCASE("lists [[[...]]]") {
    term t;
    for (int i = 0; i < depth; ++i) t = term::list({t});
    bytes b = encode(t);
    CHECK(b.size() == 1 + 6 * std::size_t{depth} + 1);  // per level LIST_EXT 1 and a NIL_EXT tail; [] inside
    decode_result r = decode(b);
    REQUIRE(r);
    CHECK(r.value == t);
    CHECK(encode(r.value) == b);
  }
  SUBCASE("tuples {{{...}}}") {
    term t = term::tuple({});
    for (int i = 0; i < depth; ++i) t = term::tuple({t, term(i)});
    bytes b = encode(t);
    decode_result r = decode(b);
    REQUIRE(r);
    CHECK(r.value == t);
    CHECK(compare(r.value, t) == 0);
  }
  SUBCASE("maps, improper lists and funs mixed") {
    term t = term(atom("leaf"));
    for (int i = 0; i < depth; ++i) {
      switch (i % 3) {
        case 0: t = term::map({{term(atom("k")), t}}); break;
        case 1: t = term::cons(t, term(i)); break;
        default: {
          fun_value f;
          f.module = atom("m");
          f.old_index = term(0);
          f.old_uniq = term(0);
          f.pid = term::pid(pid_ab());
          f.free_vars.push_back(t);
          t = term::fun(std::move(f));
        }
      }
    }
    bytes b = encode(t, {.compression_level = 1});
    decode_result r = decode(b);
    REQUIRE(r);
    CHECK(r.value == t);
  }
}

// A map's runs read the tuples, lists and strings among its values in the run itself (compound_leaf), and hand a
// node they could not finish (a compound element, an improper tail) back to the frame stack: every shape decodes to
// the same term, fails with the same error at the same offset as when read through the frames, and keeps the depth
// limit.
TEST_CASE("maps whose values are tuples, lists and strings, finished in the run or not") {
  const term bin = term::binary(std::string_view("value"));
  const term flat = term::tuple({term(1), bin, term(atom("ok"))});
  const term deep = term::tuple({term(atom("ok")), term::tuple({term(atom("deeper")), term::list({term(1), term(2)})})});
  std::vector<std::pair<term, term>> kvs{
      {term(1), flat},
      {term(2), term::tuple({})},
      {term(3), term::list({term(atom("x")), bin})},
      {term(4), term::string("some text")},
      {term(5), term::improper_list({term(1), term(atom("a"))}, term(atom("tail")))},
      {term(6), deep},
      {term(7), term::list({term(1), term::list({term(2)}), term(3)})},
      {term(8), term::improper_list({term(1)}, term::tuple({term(2)}))},
      {term(9), term::tuple({term(1), term::map({{term(atom("k")), term::list({term(1)})}})})},
      {term(10), flat}};
  const term m = term::map(std::move(kvs));
  const bytes b = encode(m);
  decode_result r = decode(b);
  REQUIRE_MESSAGE(r, r.ec.message() << " at " << r.offset);
  CHECK(r.value == m);
  CHECK(encode(r.value) == b);
  shared_bytes shared = shared_bytes::copy(b);
  decode_result rs = decode_prefix(shared, 0);
  REQUIRE(rs);
  CHECK(rs.value == m);
  // The same values as a list (list runs do not read compound elements in the run): the same terms.
  std::vector<term> values;
  for (const term& v : m.map_values()) values.push_back(v);
  const term l = term::list(std::vector<term>(values));
  CHECK(decode(encode(l)).value == l);
  // In a map nested in a list, after a compound key, and in runs that continue after a compound value.
  const term outer = term::list({m, term::map({{flat, deep}, {term(atom("z")), flat}})});
  decode_result ro = decode(encode(outer));
  REQUIRE(ro);
  CHECK(ro.value == outer);

  // Depth: a map's value tuple counts one level below the map.
  const bytes one = encode(term::map({{term(1), term::tuple({term(2)})}}));
  decode_result d1 = decode(one, {.max_depth = 1});
  CHECK(d1.ec == error::too_deep);
  CHECK(d1.offset == 8);  // 131, 116 and 4 size bytes, the key (97, 1), then the tuple's tag
  CHECK(decode(one, {.max_depth = 2}));
  CHECK(decode(encode(term::map({{term(1), term::tuple({})}})), {.max_depth = 1}));  // empty tuples: no limit
  CHECK(decode(encode(term::map({{term(1), term::string("ab")}})), {.max_depth = 1}));
  CHECK(decode(encode(term::map({{term(1), term::list({term(1000)})}})), {.max_depth = 1}).ec == error::too_deep);

  // Errors inside a value read in the run: the same error and offset as anywhere else.
  bytes bad = encode(term::map({{term(1), term::tuple({term(2), term(atom("a"))})}}));
  // <<131, 116, 0,0,0,1, 97,1, 104,2, 97,2, 100,0,1,97>>: the atom's tag at 12 made unknown
  REQUIRE(bad.size() == 16);
  bad[12] = 99;  // FLOAT_EXT without its 31 bytes
  decode_result e1 = decode(bad);
  CHECK(e1.ec == error::truncated);
  bad[12] = 200;
  decode_result e2 = decode(bad);
  CHECK(e2.ec == error::unknown_tag);
  CHECK(e2.offset == 12);
  bytes cut(bad.begin(), bad.begin() + 11);  // the tuple's first element cut short
  CHECK(decode(cut).ec == error::truncated);
  // A dynamic atom that fails (an invalid UTF-8 name) inside a value tuple.
  bytes inv = encode(term::map({{term(1), term::tuple({term(2), term(atom("ab"))})}}), {.utf8_atoms = true});
  REQUIRE(inv.size() == 16);
  // <<..., 104,2, 97,2, 119,2, $a, $b>>
  inv[14] = 0xff;
  decode_result e3 = decode(inv);
  CHECK(e3.ec == error::invalid_atom);
  CHECK(e3.offset == 12);
}
