// The segment and snapshot formats on bytes alone: round trips, and how damage is told from a torn write.
#include <doctest.h>

#include "test/raft_storage/helpers.hpp"

using namespace cnode::raft;
using namespace cnode::raft::test;

namespace {

std::vector<std::uint8_t> record(std::uint64_t seq, const std::vector<wal::op>& ops) {
  std::vector<std::uint8_t> payload;
  for (const auto& o : ops) wal::encode_op(o, payload);
  const auto h = wal::record_header(seq, payload);
  payload.insert(payload.begin(), h.begin(), h.end());
  return payload;
}

std::vector<std::uint8_t> segment(std::uint64_t seq, index_t first, const std::vector<std::vector<std::uint8_t>>& recs) {
  std::vector<std::uint8_t> out;
  wal::encode_segment_header({seq, first}, out);
  for (const auto& r : recs) out.insert(out.end(), r.begin(), r.end());
  return out;
}

}  // namespace

TEST_CASE("wal: every kind of operation round-trips through a segment") {
  entry nil_entry{3, 7, cnode::etf::term()};
  const std::vector<wal::op> ops = {make_entry(1, 1),
                                    hard_state{5, "n1@host", 4},
                                    hard_state{6, std::nullopt, 0},
                                    wal::truncate_from{2},
                                    make_entry(2, 6, 1000),
                                    nil_entry,
                                    wal::snapshot_mark{9, 3}};
  const auto b = segment(4, 17, {record(10, ops), record(11, {wal::truncate_from{1}})});
  auto c = wal::read_segment(b, false, 9);
  REQUIRE(!c.ec);
  CHECK(!c.torn);
  CHECK(c.valid_bytes == b.size());
  CHECK(c.header.seq == 4);
  CHECK(c.header.first_index == 17);
  REQUIRE(c.records.size() == 2);
  CHECK(c.records[0].seq == 10);
  CHECK(c.records[0].offset == wal::segment_header_size);
  CHECK(c.records[0].ops == ops);
  CHECK(wal::read_segment(b, false, 10).ec == storage_error::bad_sequence);  // seq must follow the previous one
}

TEST_CASE("wal: a damaged header is a torn write only when no later record follows it") {
  const auto r1 = record(1, {make_entry(1, 1)});
  const auto r2 = record(2, {make_entry(2, 1)});
  const auto r3 = record(3, {make_entry(3, 1)});
  auto b = segment(1, 1, {r1, r2, r3});
  const std::size_t second = wal::segment_header_size + r1.size();
  SUBCASE("zeros from the second record on: torn") {
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(second) + 5, b.end(), 0);
    auto c = wal::read_segment(b, true, 0);
    REQUIRE(!c.ec);
    CHECK(c.torn);
    CHECK(c.valid_bytes == second);
    CHECK(c.records.size() == 1);
    CHECK(wal::read_segment(b, false, 0).ec == storage_error::corrupt_record);  // not in an older segment
  }
  SUBCASE("the second record's pages lost, the third's written: the second's write had been synced") {
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(second), b.begin() + static_cast<std::ptrdiff_t>(second + r2.size()), 0);
    auto c = wal::read_segment(b, true, 0);
    CHECK(c.ec == storage_error::corrupt_record);
    CHECK(c.offset == second);
  }
  SUBCASE("a header whose length runs past the end: torn") {
    b.resize(b.size() - 1);
    auto c = wal::read_segment(b, true, 0);
    REQUIRE(!c.ec);
    CHECK(c.torn);
    CHECK(c.records.size() == 2);
  }
}

TEST_CASE("wal: a record whose checksum holds but whose contents are malformed is corrupt") {
  std::vector<std::uint8_t> payload = {9};  // unknown op type
  auto h = wal::record_header(1, payload);
  std::vector<std::uint8_t> r = payload;
  r.insert(r.begin(), h.begin(), h.end());
  auto c = wal::read_segment(segment(1, 1, {r}), true, 0);
  CHECK(c.ec == storage_error::corrupt_record);
  CHECK(c.offset == wal::segment_header_size + wal::record_header_size);
  // An entry whose data is not an external term.
  payload.clear();
  wal::encode_op(make_entry(1, 1), payload);
  payload[21] = 77;  // the version byte 131
  h = wal::record_header(1, payload);
  r = payload;
  r.insert(r.begin(), h.begin(), h.end());
  c = wal::read_segment(segment(1, 1, {r}), true, 0);
  CHECK(c.ec == storage_error::corrupt_record);
  CHECK(c.offset == wal::segment_header_size + wal::record_header_size + 21);
}

TEST_CASE("wal: a snapshot file round-trips; any flipped byte or cut is refused") {
  const snapshot s{{42, 7, {"a@h", "bb@h", ""}}, std::string(300, 'z')};
  std::vector<std::uint8_t> b;
  wal::encode_snapshot(s, b);
  auto c = wal::read_snapshot(b);
  REQUIRE(!c.ec);
  CHECK(c.snap.meta == s.meta);
  CHECK(c.snap.data == s.data);
  for (std::size_t i = 0; i < b.size(); ++i) {
    CAPTURE(i);
    auto d = b;
    d[i] ^= 0x01;
    CHECK(wal::read_snapshot(d).ec);
    CHECK(wal::read_snapshot(std::span(b).first(i)).ec);
  }
}
