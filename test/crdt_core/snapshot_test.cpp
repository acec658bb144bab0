// The state file's bytes: round trip, and every kind of damage gives a sentence, never a crash.
#include <doctest.h>

#include <zlib.h>

#include "crdt/snapshot.hpp"
#include "etf/codec.hpp"
#include "test/crdt_core/support.hpp"

using namespace crdt_test;

namespace {
snapshot sample() {
  replica_store s(atom("a@h"), store_options{.writer = atom("a@h#7")});
  REQUIRE(s.counter_add(term(atom("n")), -4));
  REQUIRE(s.set_add(term(atom("s")), term::binary("x")));
  REQUIRE(s.map_put(term::binary("m"), term(1), term::tuple({term(2), term(3.5)}), 1000));
  REQUIRE(s.register_set(term(atom("r")), term(atom("v")), 1000));
  return {atom("a@h"), s.writer(), s.state()};
}
}  // namespace

TEST_CASE("a snapshot round-trips") {
  const snapshot s = sample();
  auto bytes = encode_snapshot(s);
  CHECK(std::string(bytes.begin(), bytes.begin() + 8) == "CNCRDT01");
  auto back = decode_snapshot(bytes);
  REQUIRE(back);
  CHECK(back.value.node == s.node);
  CHECK(back.value.writer == s.writer);
  CHECK(back.value.state == s.state);
  auto empty = decode_snapshot(encode_snapshot(snapshot{atom("a@h"), atom("a@h#1"), {}}));
  REQUIRE(empty);
  CHECK(empty.value.state.empty());
}

TEST_CASE("damaged snapshots are refused with what is wrong") {
  const auto good = encode_snapshot(sample());
  auto error_of = [](std::vector<std::uint8_t> b) { return decode_snapshot(b).error; };
  CHECK(error_of({}).find("truncated") != std::string::npos);
  CHECK(error_of(std::vector<std::uint8_t>(good.begin(), good.begin() + 30)).find("truncated") != std::string::npos);
  auto bad_magic = good;
  bad_magic[0] = 'X';
  CHECK(error_of(bad_magic).find("magic") != std::string::npos);
  auto future = good;
  future[7] = '9';
  CHECK(error_of(future).find("format") != std::string::npos);
  auto flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  CHECK(error_of(flipped).find("checksum") != std::string::npos);
  auto longer = good;
  longer.push_back(0);
  CHECK(error_of(longer).find("padded") != std::string::npos);
  // Every single-byte change and every truncation: refused or read back whole, never a crash.
  int refused = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto b = good;
    b[i] ^= 0xff;
    if (!decode_snapshot(b)) ++refused;
    CHECK_FALSE(decode_snapshot(std::span(good.data(), i)));
  }
  CHECK(refused == static_cast<int>(good.size()));
}

TEST_CASE("a payload with a good checksum but the wrong content is refused") {
  // Header and CRC made right around terms that are not snapshots.
  for (const term& t : {term(1), term::tuple({term(atom("crdt_snapshot")), term(1), term(2), term::nil()}),
                        term::tuple({term(atom("crdt_snapshot")), term(atom("a")), term(atom("b")), term(3)})}) {
    std::vector<std::uint8_t> payload;
    cnode::etf::encode(t, payload);
    auto file = encode_snapshot(snapshot{atom("a"), atom("b"), {}});
    file.resize(20);
    file.insert(file.end(), payload.begin(), payload.end());
    // fix the length and the checksum
    const std::uint64_t len = payload.size();
    for (int i = 0; i < 8; ++i) file[8 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(len >> (56 - 8 * i));
    const auto crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), payload.data(), static_cast<uInt>(payload.size())));
    for (int i = 0; i < 4; ++i) file[16 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(crc >> (24 - 8 * i));
    auto r = decode_snapshot(file);
    CHECK_FALSE(r);
    CHECK((r.error.find("crdt_snapshot") != std::string::npos || r.error.find("malformed") != std::string::npos));
  }
}
