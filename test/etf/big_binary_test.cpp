// Big messages without copies: the buffer pool's bounds, and the encoder leaving big binaries out of its output
// (encode_options::externals) so that the output with them put back is byte for byte the plain encoding.
#include <doctest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "etf/buffer_pool.hpp"
#include "etf/codec.hpp"
#include "test_funs.hpp"

using namespace cnode::etf;
using bytes = std::vector<std::uint8_t>;

namespace {

term filled_binary(std::size_t n, int seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + seed);
  return term::binary(std::string_view(s));
}

// The output with each external's bytes inserted at its position.
bytes put_back(const bytes& out, const std::vector<external_binary>& ext) {
  bytes r;
  std::size_t pos = 0;
  for (const auto& e : ext) {
    REQUIRE(e.at >= pos);
    REQUIRE(e.at <= out.size());
    r.insert(r.end(), out.begin() + static_cast<std::ptrdiff_t>(pos), out.begin() + static_cast<std::ptrdiff_t>(e.at));
    const auto b = e.binary.bytes();
    r.insert(r.end(), b.begin(), b.end());
    pos = e.at;
  }
  r.insert(r.end(), out.begin() + static_cast<std::ptrdiff_t>(pos), out.end());
  return r;
}

void check_same(const term& t, std::size_t min, std::size_t expected_ext, encode_options o = {}) {
  const bytes plain = encode(t, o);
  std::vector<external_binary> ext;
  o.external_min = min;
  o.externals = &ext;
  bytes out;
  out.push_back(42);  // encoding appends: positions are in the whole buffer
  encode(t, out, o);
  CHECK(ext.size() == expected_ext);
  bytes whole = put_back(out, ext);
  REQUIRE(whole.size() == plain.size() + 1);
  CHECK(whole[0] == 42);
  whole.erase(whole.begin());
  CHECK(whole == plain);
  std::size_t left_out = 0;
  for (const auto& e : ext) left_out += e.binary.byte_size();
  CHECK(out.size() + left_out == plain.size() + 1);
}

}  // namespace

TEST_CASE("externals: the output with the binaries put back is the plain encoding") {
  const term big = filled_binary(200'000, 1);
  const term other = filled_binary(70'000, 2);
  check_same(big, 64 * 1024, 1);
  check_same(term::tuple({atom("reply"), big, term(7), other, filled_binary(100, 3)}), 64 * 1024, 2);
  check_same(term::list({big, big, term::map({{atom("k"), other}})}), 64 * 1024, 3);
  // Below the threshold: copied as usual.
  check_same(filled_binary(1000, 4), 64 * 1024, 0);
  check_same(term::tuple({filled_binary(1000, 4), big}), 1000, 2);
  // A bitstring's bytes (its last byte partly used) are left out too.
  check_same(term::bitstring(big.bytes(), 3), 64 * 1024, 1);
  // Big binaries around chunk-sized data (the encoder's 64 KiB chunk is flushed between them).
  check_same(term::tuple({filled_binary(65'535, 5), big, filled_binary(65'537, 6), term::string("abc")}), 100'000, 1);
  // UTF-8 atoms, no version byte: as the distribution encodes payloads.
  check_same(term::tuple({atom("ok"), big}), 64 * 1024, 1, encode_options{.utf8_atoms = true, .version = false});
}

TEST_CASE("externals: none inside a fun (its Size field counts them) or when compressing") {
  const term big = filled_binary(100'000, 7);
  const term fun = test::fun_with({big, term(1)});
  check_same(fun, 64 * 1024, 0);
  check_same(term::tuple({fun, big}), 64 * 1024, 1);  // after the fun is done, they are left out again
  check_same(term::tuple({big, fun}), 64 * 1024, 1);
  check_same(big, 64 * 1024, 0, encode_options{.compression_level = 6});
}

TEST_CASE("externals: decoding the put-back bytes gives the term") {
  const term t = term::tuple({atom("a"), filled_binary(300'000, 8), term::list({filled_binary(80'000, 9)})});
  std::vector<external_binary> ext;
  bytes out;
  encode(t, out, encode_options{.external_min = 64 * 1024, .externals = &ext});
  REQUIRE(ext.size() == 2);
  CHECK(decode_or_throw(put_back(out, ext)) == t);
}

TEST_CASE("buffer pool: reuse, fit, bounds") {
  buffer_pool pool({.min_capacity = 1024, .max_bytes = 10'000, .max_idle = std::chrono::hours(1)});
  // Small buffers are never kept.
  auto small = pool.take(100);
  CHECK(small.capacity() >= 100);
  CHECK(small.empty());
  pool.give(std::move(small));
  CHECK(pool.kept_buffers() == 0);

  auto a = pool.take(4000);
  CHECK(a.capacity() >= 4000);
  a.insert(a.end(), 4000, 1);
  const auto* data = a.data();
  pool.give(std::move(a));
  CHECK(pool.kept_buffers() == 1);
  CHECK(pool.kept_bytes() >= 4000);

  // A request it fits is served by it, emptied; one it would be more than twice too big for is not.
  auto b = pool.take(1500);
  CHECK(pool.kept_buffers() == 1);
  CHECK(pool.misses() >= 1);
  auto c = pool.take(3000);
  CHECK(c.data() == data);
  CHECK(c.empty());
  CHECK(pool.hits() == 1);
  CHECK(pool.kept_buffers() == 0);
  CHECK(pool.kept_bytes() == 0);

  // Never more than max_bytes kept: the oldest go first.
  pool.give(std::move(c));
  pool.give(std::move(b));
  auto d = pool.take(4000);  // the 4000 one again
  auto e = pool.take(4000);
  pool.give(std::move(d));
  pool.give(std::move(e));
  CHECK(pool.kept_bytes() <= 10'000);
  // A buffer larger than the whole bound is not kept.
  auto huge = pool.take(20'000);
  pool.give(std::move(huge));
  CHECK(pool.kept_bytes() <= 10'000);
  CHECK(pool.kept_buffers() >= 1);
}

TEST_CASE("buffer pool: idle buffers are trimmed") {
  buffer_pool pool({.min_capacity = 1024, .max_bytes = 1 << 20, .max_idle = std::chrono::milliseconds(50)});
  for (int i = 0; i < 4; ++i) pool.give(pool.take(2000 + i * 100));
  CHECK(pool.kept_buffers() >= 1);
  pool.trim(buffer_pool::clock::now() + std::chrono::seconds(1));
  CHECK(pool.kept_buffers() == 0);
  CHECK(pool.kept_bytes() == 0);
  pool.give(pool.take(3000));
  pool.trim(buffer_pool::clock::time_point::max());
  CHECK(pool.kept_bytes() == 0);
}

TEST_CASE("buffer pool: a big shared buffer goes back to the node's pool when its last binary goes") {
  auto& pool = big_buffers();
  pool.trim(buffer_pool::clock::time_point::max());
  const std::size_t n = pool.bounds().min_capacity + 1000;
  {
    bytes raw(n, 9);
    shared_bytes sb = shared_bytes::copy(raw);
    term bin = term::binary_ref(sb, 10, n - 20);
    sb = {};
    CHECK(pool.kept_buffers() == 0);  // the binary still refers into it
    CHECK(bin.byte_size() == n - 20);
  }
  CHECK(pool.kept_buffers() == 1);
  const auto hits = pool.hits();
  shared_bytes again = shared_bytes::copy(bytes(n, 1));
  CHECK(pool.hits() == hits + 1);
  CHECK(again.size() == n);
  CHECK(again.data()[n - 1] == 1);
}
