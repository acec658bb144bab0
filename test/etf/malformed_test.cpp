// Bytes that are not a term: each kind of breakage gets its own error and an offset that points at the problem, and
// nothing crashes, hangs or allocates from an unchecked length (this file also runs under ASan/UBSan).
#include <doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <zlib.h>

#include "etf/codec.hpp"
#include "test_funs.hpp"

using namespace cnode::etf;
using bytes = std::vector<std::uint8_t>;

namespace {

bytes operator+(bytes a, const bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bytes be32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v)};
}

std::string hex(const bytes& b) {
  std::string s;
  for (std::size_t i = 0; i < b.size() && i < 48; ++i) s += std::to_string(b[i]) + (i + 1 < b.size() ? "," : "");
  return s + (b.size() > 48 ? "..." : "");
}

void expect_error(const bytes& b, error e, std::size_t offset, const decode_options& opts = {}) {
  INFO("input <<", hex(b), ">>");
  decode_result r = decode(b, opts);
  REQUIRE_FALSE(r);
  CHECK(r.ec == make_error_code(e));
  CHECK_MESSAGE(r.ec.category() == etf_category(), r.ec.message());
  CHECK(r.offset == offset);
}

// The error is one of a few acceptable ones and the offset lies within the input.
void expect_one_of(const bytes& b, std::initializer_list<error> es, const decode_options& opts = {}) {
  INFO("input <<", hex(b), ">>");
  decode_result r = decode(b, opts);
  REQUIRE_FALSE(r);
  bool known = false;
  for (error e : es) known = known || r.ec == make_error_code(e);
  CHECK_MESSAGE(known, "got " << r.ec.message());
  CHECK(r.offset <= b.size());
}

bytes atom_ext(std::string_view name) {
  bytes b(3 + name.size());
  b[0] = 118;
  b[1] = static_cast<std::uint8_t>(name.size() >> 8);
  b[2] = static_cast<std::uint8_t>(name.size());
  for (std::size_t i = 0; i < name.size(); ++i) b[3 + i] = static_cast<std::uint8_t>(name[i]);
  return b;
}

big_int pow2(int n) { return big_int(1) << n; }

bytes zlib_compress(const bytes& in, int level = 6) {
  uLongf n = compressBound(static_cast<uLong>(in.size()));
  bytes out(n);
  REQUIRE(compress2(out.data(), &n, in.data(), static_cast<uLong>(in.size()), level) == Z_OK);
  out.resize(n);
  return out;
}

// A varied corpus: every tag the encoder writes, compressed and not.
std::vector<bytes> corpus() {
  ref_value r;
  r.node = atom("node@host");
  r.creation = 3;
  r.len = 3;
  r.ids[0] = 1;
  fun_value f;
  f.arity = 2;
  f.index = 7;
  f.module = atom("m\xc3\xb6");
  f.old_index = term(1);
  f.old_uniq = term(123456789);
  f.pid = term::pid({atom("a@b"), 1, 2, 3});
  f.free_vars = {term(1), term::binary(std::string_view("fv"))};
  std::vector<term> terms{
      term(0), term(300), term(-70000), term::from_big(pow2(70)), term::from_big(-pow2(2100)),
      term(2.5), term(atom("abc")), term(atom("\xe2\x82\xac")), term(atom(std::string(300 / 2, 'z'))),
      term::tuple({term(1), term(atom("x"))}), term::tuple(std::vector<term>(300, term(7))), term::nil(),
      term::list({term(1), term(2)}), term::list({term(1000), term(-1)}), term::cons(term(1), term(2)),
      term::binary(std::string(70, 'b')), term::bitstring(bytes{0xa0}, 3),
      term::map({{term(1), term(2)}, {term(atom("k")), term::list({term(3)})}}),
      term::pid({atom("a@b"), 1, 2, 3}), term::port({atom("a@b"), 4, 5}),
      term::port({atom("a@b"), std::uint64_t{1} << 40, 5}), term::reference(r),
      term::export_({atom("lists"), atom("map"), 2}), term::fun(std::move(f)),
      term::tuple({term::map({{term::tuple({term(1)}), term(2.0)}}), term::string("h\xc3\xa9"), term(atom(""))})};
  std::vector<term> many;
  for (int i = 0; i < 40; ++i) many.push_back(term(i * 1000));
  terms.push_back(term::list(std::move(many)));
  std::vector<bytes> out;
  for (const term& t : terms) {
    out.push_back(encode(t));
    out.push_back(encode(t, {.utf8_atoms = true}));
  }
  out.push_back(encode(term::list(std::vector<term>(200, term(atom("aaaa")))), {.compression_level = 6}));
  return out;
}

}  // namespace

TEST_CASE("every truncation of every corpus term is an error, never a crash") {
  for (const bytes& whole : corpus()) {
    REQUIRE(decode(whole));
    const bool compressed = whole.size() > 1 && whole[1] == tag::compressed;
    for (std::size_t n = 0; n < whole.size(); ++n) {
      bytes cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
      INFO("<<", hex(whole), ">> cut to ", n, " bytes");
      decode_result r = decode(cut);
      REQUIRE_FALSE(r);
      if (compressed && n >= 6) {  // header complete, zlib stream cut
        CHECK((r.ec == make_error_code(error::bad_compression) || r.ec == make_error_code(error::truncated)));
      } else {
        CHECK(r.ec == make_error_code(error::truncated));
      }
      CHECK(r.offset <= n);
      CHECK_FALSE(decode_prefix(cut));
    }
  }
}

TEST_CASE("an empty input, a wrong version byte and trailing bytes") {
  expect_error({}, error::truncated, 0);
  expect_error({131}, error::truncated, 1);
  expect_error({130, 97, 1}, error::bad_version, 0);
  expect_error({131, 106, 0}, error::trailing_bytes, 2);
  expect_error({131, 97, 1, 97, 2}, error::trailing_bytes, 3);
  decode_result p = decode_prefix(bytes{131, 97, 1, 97, 2});
  REQUIRE(p);
  CHECK(p.offset == 3);
}

TEST_CASE("unknown tags, at the top and nested") {
  const std::vector<int> known{70, 77, 80, 82, 88, 89, 90, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108,
                               109, 110, 111, 112, 113, 114, 115, 116, 118, 119, 120};
  for (int t = 0; t < 256; ++t) {
    if (std::find(known.begin(), known.end(), t) != known.end()) continue;
    auto tag_byte = static_cast<std::uint8_t>(t);
    expect_error({131, tag_byte, 0, 0, 0, 0, 0, 0, 0, 0}, error::unknown_tag, 1);
    expect_error({131, 104, 2, 97, 1, tag_byte, 0, 0, 0, 0}, error::unknown_tag, 5);
    expect_error({131, 108, 0, 0, 0, 1, 106, tag_byte}, error::unknown_tag, 7);  // as the tail of a list
  }
  // FUN_EXT (117) was removed in OTP 23; the distribution header tags are not terms.
  expect_error({131, 117, 0, 0, 0, 0}, error::unknown_tag, 1);
  expect_error({131, 68, 0}, error::unknown_tag, 1);
  // COMPRESSED_EXT only wraps a whole term.
  bytes inner = {100, 0, 1, 97};
  expect_error(bytes{131, 104, 1, 80} + be32(4) + zlib_compress(inner), error::unknown_tag, 3);
  // ATOM_CACHE_REF without a cache from a distribution header.
  expect_error({131, 82, 0}, error::atom_cache_miss, 1);
}

TEST_CASE("length fields that the input cannot hold") {
  // Negative when read as a signed 32-bit number: bad_length at the field.
  for (std::uint32_t len : {0x80000000u, 0xfffffff0u, 0xffffffffu}) {
    INFO("length ", len);
    expect_error(bytes{131, 105} + be32(len) + bytes{97, 1}, error::bad_length, 2);       // LARGE_TUPLE_EXT
    expect_error(bytes{131, 108} + be32(len) + bytes{97, 1, 106}, error::bad_length, 2);  // LIST_EXT
    expect_error(bytes{131, 116} + be32(len) + bytes{97, 1, 97, 2}, error::bad_length, 2);  // MAP_EXT
    expect_error(bytes{131, 109} + be32(len) + bytes{1, 2, 3}, error::bad_length, 2);     // BINARY_EXT
    expect_error(bytes{131, 77} + be32(len) + bytes{3, 1, 2}, error::bad_length, 2);      // BIT_BINARY_EXT
    expect_error(bytes{131, 111} + be32(len) + bytes{0, 1, 2}, error::bad_length, 2);     // LARGE_BIG_EXT
  }
  // Huge but positive, or merely more than is left: the input was cut short.
  for (std::uint32_t len : {0x7fffffffu, 0x01000000u, 3u}) {
    INFO("length ", len);
    expect_one_of(bytes{131, 105} + be32(len) + bytes{97, 1}, {error::truncated, error::bad_length});
    expect_one_of(bytes{131, 108} + be32(len) + bytes{97, 1, 106}, {error::truncated, error::bad_length});
    expect_one_of(bytes{131, 116} + be32(len) + bytes{97, 1, 97, 2}, {error::truncated, error::bad_length});
    expect_one_of(bytes{131, 109} + be32(len) + bytes{1, 2}, {error::truncated, error::bad_length});
    expect_one_of(bytes{131, 111} + be32(len) + bytes{0, 1, 2}, {error::truncated, error::bad_length});
  }
  // 16- and 8-bit lengths.
  expect_error({131, 100, 0xff, 0xff, 97, 98}, error::truncated, 6);   // ATOM_EXT
  expect_error({131, 118, 0xff, 0xff, 97, 98}, error::truncated, 6);   // ATOM_UTF8_EXT
  expect_error({131, 107, 0xff, 0xff, 1, 2, 3}, error::truncated, 7);  // STRING_EXT
  expect_error({131, 104, 0xff, 97, 1}, error::truncated, 5);          // SMALL_TUPLE_EXT
  expect_error({131, 110, 0xff, 0, 1, 2}, error::truncated, 6);        // SMALL_BIG_EXT
  expect_error({131, 109, 0, 0, 0, 2, 1}, error::truncated, 7);
}

TEST_CASE("NEW_FUN_EXT whose size field or free variable count is wrong") {
  const bytes good = encode(test::fun_with({term(atom("x"))}));
  REQUIRE(decode(good));
  bytes bigger = good, smaller = good, huge = good, many = good;
  bigger[5] = static_cast<std::uint8_t>(bigger[5] + 1);
  smaller[5] = static_cast<std::uint8_t>(smaller[5] - 1);
  huge[2] = huge[3] = huge[4] = huge[5] = 0xff;
  for (int i = 27; i < 31; ++i) many[static_cast<std::size_t>(i)] = 0xff;  // NumFree
  expect_one_of(bigger, {error::bad_fun, error::truncated});
  expect_error(smaller, error::bad_fun, 2);
  expect_error(huge, error::bad_length, 2);
  expect_error(many, error::bad_length, 27);
  // EXPORT_EXT's arity must be a SMALL_INTEGER_EXT.
  expect_error(bytes{131, 113} + atom_ext("m") + atom_ext("f") + bytes{98, 0, 0, 0, 1}, error::bad_fun, 10);
}

TEST_CASE("compression bombs and broken zlib data") {
  const bytes inner{108, 0, 0, 0, 1, 97, 1, 106};  // [1]
  SUBCASE("a tiny COMPRESSED_EXT announcing 4 GiB") {
    expect_error(bytes{131, 80} + be32(0xffffffffu) + zlib_compress(inner), error::compressed_too_large, 1);
  }
  SUBCASE("announcing more than the configured limit") {
    decode_options small{.max_inflated_size = 1000};
    expect_error(bytes{131, 80} + be32(1001) + zlib_compress(bytes(1001, 97)), error::compressed_too_large, 1, small);
  }
  SUBCASE("inflating past the announced size: stops at the limit") {
    // 64 MiB of zeros compress to about 64 KiB; announced as 1 MiB (within the limit).
    bytes zeros(std::size_t{64} << 20, 0);
    zeros[0] = 109;
    bytes z = zlib_compress(zeros, 9);
    decode_options limit{.max_inflated_size = std::size_t{1} << 20};
    expect_error(bytes{131, 80} + be32(1u << 20) + z, error::bad_compression, 1, limit);
  }
  SUBCASE("inflating to less than announced") {
    expect_error(bytes{131, 80} + be32(100) + zlib_compress(inner), error::bad_compression, 1);
  }
  SUBCASE("data that is not zlib at all") {
    expect_error(bytes{131, 80} + be32(8) + bytes{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, error::bad_compression, 1);
  }
  SUBCASE("a good stream whose inner term is broken") {
    bytes cut(inner.begin(), inner.end() - 1);
    expect_one_of(bytes{131, 80} + be32(static_cast<std::uint32_t>(cut.size())) + zlib_compress(cut),
                  {error::truncated});
  }
  SUBCASE("compressed inside compressed is refused, as binary_to_term refuses it") {
    bytes once = bytes{80} + be32(static_cast<std::uint32_t>(inner.size())) + zlib_compress(inner);
    REQUIRE(decode(bytes{131} + once));
    bytes twice = bytes{131, 80} + be32(static_cast<std::uint32_t>(once.size())) + zlib_compress(once);
    expect_one_of(twice, {error::unknown_tag});
  }
}

TEST_CASE("atoms that are not valid UTF-8 or too long") {
  const std::vector<bytes> bad{
      {0x80},                    // lone continuation byte
      {0xc3},                    // sequence cut short
      {0xc0, 0x80},              // overlong NUL
      {0xe0, 0x80, 0xaf},        // overlong '/'
      {0xed, 0xa0, 0x80},        // UTF-16 surrogate
      {0xf4, 0x90, 0x80, 0x80},  // above U+10FFFF
      {0xff},
      {97, 0xc3, 0x28, 98},
  };
  for (const bytes& text : bad) {
    auto n = static_cast<std::uint8_t>(text.size());
    expect_error(bytes{131, 119, n} + text, error::invalid_atom, 1);                      // SMALL_ATOM_UTF8_EXT
    expect_error(bytes{131, 118, 0, n} + text, error::invalid_atom, 1);                   // ATOM_UTF8_EXT
    expect_error(bytes{131, 104, 1, 119, n} + text, error::invalid_atom, 3);              // nested
    expect_error(bytes{131, 88, 119, n} + text + bytes(12, 0), error::invalid_atom, 2);  // a pid's node
  }
  // 255 characters are fine, 256 are not, however many bytes they take.
  std::string grin;
  for (int i = 0; i < 255; ++i) grin += "\xf0\x9f\x98\x80";
  CHECK(decode(bytes{131, 118, 0x03, 0xfc} + bytes(grin.begin(), grin.end())));
  grin += "\xf0\x9f\x98\x80";
  expect_error(bytes{131, 118, 0x04, 0x00} + bytes(grin.begin(), grin.end()), error::invalid_atom, 1);
  expect_error(bytes{131, 100, 1, 0} + bytes(256, 97), error::invalid_atom, 1);  // ATOM_EXT, Latin-1
  // Latin-1 atoms take any byte.
  decode_result r = decode(bytes{131, 100, 0, 2, 0xff, 0x80});
  REQUIRE(r);
  CHECK(r.value == term(atom("\xc3\xbf\xc2\x80")));
}

TEST_CASE("bitstrings with 0 or 9 bits in the last byte") {
  expect_error({131, 77, 0, 0, 0, 1, 0, 0xff}, error::bad_bit_length, 6);
  expect_error({131, 77, 0, 0, 0, 1, 9, 0xff}, error::bad_bit_length, 6);
  expect_error({131, 77, 0, 0, 0, 2, 255, 1, 2}, error::bad_bit_length, 6);
  expect_error({131, 77, 0, 0, 0, 0, 8}, error::bad_bit_length, 6);  // binary_to_term refuses it as well
  decode_result empty = decode(bytes{131, 77, 0, 0, 0, 0, 0});
  REQUIRE(empty);
  CHECK(empty.value == term::binary(std::string_view()));
  // Bits beyond the last byte's used ones are dropped, as binary_to_term(<<131,77,0,0,0,1,3,255>>) gives <<7:3>>.
  decode_result masked = decode(bytes{131, 77, 0, 0, 0, 1, 3, 0xff});
  REQUIRE(masked);
  CHECK(masked.value == term::bitstring(bytes{0xe0}, 3));
  CHECK(encode(masked.value) == bytes{131, 77, 0, 0, 0, 1, 3, 0xe0});
}

TEST_CASE("references with 0 or 6 id words") {
  for (std::uint8_t t : {tag::newer_reference, tag::new_reference}) {
    const std::size_t creation = t == tag::newer_reference ? 4 : 1;
    for (std::uint8_t words : {0, 6, 255}) {
      bytes b = bytes{131, t, 0, words} + atom_ext("a@b") + bytes(creation + 4u * words, 1);
      expect_error(b, error::bad_reference, 2);
    }
    bytes five = bytes{131, t, 0, 5} + atom_ext("a@b") + bytes(creation + 20, 1);
    CHECK(decode(five));
  }
}

TEST_CASE("maps with a key twice") {
  expect_error({131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3}, error::bad_map, 1);
  expect_error(bytes{131, 104, 1, 116, 0, 0, 0, 2} + atom_ext("k") + bytes{97, 1} + atom_ext("k") + bytes{97, 2},
               error::bad_map, 3);
  // Above 32 keys the BEAM writes keys in hash order, so a duplicate need not be next to its twin.
  bytes big = bytes{131, 116} + be32(40);
  for (int i = 0; i < 39; ++i) big = big + bytes{97, static_cast<std::uint8_t>(39 - i), 106};
  expect_error(big + bytes{97, 20, 106}, error::bad_map, 1);
  // Keys that are == but not =:= are distinct.
  CHECK(decode(bytes{131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 70, 63, 240, 0, 0, 0, 0, 0, 0, 97, 3}));
  // ... also in a big map, and [] is a key like any other.
  bytes nil_key = bytes{131, 116} + be32(40);
  for (int i = 0; i < 39; ++i) nil_key = nil_key + bytes{97, static_cast<std::uint8_t>(39 - i), 97, 0};
  decode_result r = decode(nil_key + bytes{106, 97, 0});
  REQUIRE_MESSAGE(r, r.ec.message());
  CHECK(r.value.map_size() == 40);
}

TEST_CASE("floats that are not numbers") {
  expect_error({131, 70, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}, error::bad_float, 1);  // +infinity
  expect_error({131, 70, 0xff, 0xf8, 0, 0, 0, 0, 0, 1}, error::bad_float, 1);  // NaN
  bytes text(33, 0);
  text[0] = 131;
  text[1] = 99;
  const std::string_view junk = "1.5junk";
  for (std::size_t i = 0; i < junk.size(); ++i) text[2 + i] = static_cast<std::uint8_t>(junk[i]);
  expect_error(text, error::bad_float, 1);
}

TEST_CASE("nesting beyond the configured depth") {
  bytes deep{131};
  for (int i = 0; i < 200; ++i) deep = deep + bytes{104, 1};
  deep.push_back(106);
  decode_options opts{.max_depth = 100};
  expect_error(deep, error::too_deep, 1 + 2 * 100, opts);
  CHECK(decode(deep));
}

TEST_CASE("every single-byte corruption of the corpus decodes or fails cleanly") {
  for (const bytes& whole : corpus()) {
    for (std::size_t i = 1; i < whole.size(); ++i) {
      for (std::uint8_t v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
        if (whole[i] == v) continue;
        bytes b = whole;
        b[i] = v;
        decode_result r = decode(b);
        if (!r) {
          CHECK(r.offset <= b.size());
          continue;
        }
        // Whatever decodes must re-encode to something that decodes to the same term.
        decode_result again = decode(encode(r.value));
        REQUIRE(again);
        CHECK(again.value == r.value);
      }
    }
  }
}
