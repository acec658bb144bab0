// storage: what was synced comes back after a reopen (hard state, entries, truncations, snapshots, across segment
// rolls and compaction); a torn tail is cut at every byte of the last record; damage before the tail, garbage,
// unknown versions, gaps and a second opener are refused with the file and the offset.
#include <doctest.h>

#include <unistd.h>

#include "test/raft_storage/helpers.hpp"

using namespace cnode::raft;
using namespace cnode::raft::test;

namespace {

hard_state hs(term_t t, std::optional<member_id> v, index_t c) { return {t, std::move(v), c}; }

// Why opening `dir` fails (it must).
storage_failure open_fails(const fs::path& dir, const storage_options& o = {}) {
  recovered r;
  storage_failure why;
  CHECK(!storage::open(dir, r, why, o));
  CHECK(why.ec);
  return why;
}

// Entries 1..n of term 1, one record (and one sync) each.
void one_record_each(const fs::path& dir, index_t n, const storage_options& o) {
  recovered r;
  auto s = must_open(dir, r, o);
  for (index_t i = 1; i <= n; ++i) {
    s->append(std::nullopt, {make_entry(i, 1)});
    REQUIRE(!s->sync());
  }
}

// A directory with three synced records in one segment; returns where the last record starts.
std::uint64_t three_records(const fs::path& dir) {
  recovered r;
  auto s = must_open(dir, r);
  s->append(hs(1, "a@h", 0), make_entries(1, 3, 1));
  REQUIRE(!s->sync());
  s->append(hs(2, "b@h", 2), make_entries(4, 5, 2));
  REQUIRE(!s->sync());
  const auto seg = files(dir, "wal-");
  REQUIRE(seg.size() == 1);
  const std::uint64_t start = fs::file_size(seg[0]);
  s->append(hs(2, "b@h", 5), make_entries(6, 7, 2));
  REQUIRE(!s->sync());
  return start;
}

}  // namespace

TEST_CASE("storage: a missing directory is created, and an empty one recovers empty") {
  temp_dir t;
  const fs::path dir = t.path / "a" / "b" / "kv";
  recovered r;
  auto s = must_open(dir, r);
  CHECK(fs::is_directory(dir));
  CHECK(r.state == hard_state{});
  CHECK(!r.snap);
  CHECK(r.log.empty());
  CHECK(s->last_index() == 0);
  CHECK(!s->sync());  // nothing buffered: nothing written
  CHECK(s->stats().fdatasyncs == 0);
  CHECK(files(dir, "wal-").empty());
}

TEST_CASE("storage: hard state, entries and a snapshot round-trip across reopens") {
  temp_dir t;
  std::vector<entry> all = make_entries(1, 20, 1);
  {
    recovered r;
    auto s = must_open(t.path, r);
    s->append(hs(1, "n1@host", 0), {all.begin(), all.begin() + 10});
    REQUIRE(!s->sync());
    s->append(std::nullopt, {all.begin() + 10, all.end()});
    s->append(hs(1, "n1@host", 12), {});
    REQUIRE(!s->sync());
    CHECK(s->stats().fdatasyncs == 2);
  }
  {
    recovered r;
    auto s = must_open(t.path, r);
    CHECK(r.state == hs(1, "n1@host", 12));
    CHECK(!r.snap);
    CHECK(r.log == all);
    snapshot sn{{12, 1, {"n1@host", "n2@host", "n3@host"}}, std::string("state\0machine", 13)};
    REQUIRE(!s->save_snapshot(sn));
    CHECK(s->snapshot_index() == 12);
    CHECK(s->first_index() == 13);
    s->append(hs(3, std::nullopt, 20), {make_entry(21, 3)});
    REQUIRE(!s->sync());
  }
  recovered r;
  auto s = must_open(t.path, r);
  REQUIRE(r.snap);
  CHECK(r.snap->meta == snapshot_meta{12, 1, {"n1@host", "n2@host", "n3@host"}});
  CHECK(r.snap->data == std::string("state\0machine", 13));
  CHECK(r.state == hs(3, std::nullopt, 20));
  std::vector<entry> want(all.begin() + 12, all.end());
  want.push_back(make_entry(21, 3));
  CHECK(r.log == want);
  CHECK(s->last_index() == 21);
}

TEST_CASE("storage: what was appended but not synced is not there after a reopen") {
  temp_dir t;
  {
    recovered r;
    auto s = must_open(t.path, r);
    s->append(hs(1, std::nullopt, 0), make_entries(1, 2, 1));
    REQUIRE(!s->sync());
    s->append(hs(2, "x@y", 0), make_entries(3, 4, 2));
  }
  recovered r;
  auto s = must_open(t.path, r);
  CHECK(r.state == hs(1, std::nullopt, 0));
  CHECK(r.log == make_entries(1, 2, 1));
}

TEST_CASE("storage: a conflicting suffix is replaced, also across a reopen and across segments") {
  temp_dir t;
  storage_options small;
  small.segment_bytes = 256;
  one_record_each(t.path, 10, small);
  CHECK(files(t.path, "wal-").size() > 2);
  {
    recovered r;
    auto s = must_open(t.path, r, small);
    s->append(std::nullopt, make_entries(6, 8, 2));  // replaces 6..10
    REQUIRE(!s->sync());
    CHECK(s->last_index() == 8);
  }
  std::vector<entry> want = make_entries(1, 5, 1);
  for (auto& e : make_entries(6, 8, 2)) want.push_back(e);
  {
    recovered r;
    auto s = must_open(t.path, r, small);
    CHECK(r.log == want);
    s->append(std::nullopt, make_entries(2, 3, 3));  // into an older segment's range
    REQUIRE(!s->sync());
  }
  recovered r;
  auto s = must_open(t.path, r, small);
  want = {make_entry(1, 1)};
  for (auto& e : make_entries(2, 3, 3)) want.push_back(e);
  CHECK(r.log == want);
}

TEST_CASE("storage: appends that break the log's rules are refused and leave nothing buffered") {
  temp_dir t;
  recovered r;
  auto s = must_open(t.path, r);
  s->append(std::nullopt, make_entries(1, 5, 1));
  CHECK_THROWS_AS(s->append(std::nullopt, {make_entry(7, 1)}), std::invalid_argument);              // a gap
  CHECK_THROWS_AS(s->append(std::nullopt, {make_entry(6, 1), make_entry(8, 1)}), std::invalid_argument);
  CHECK_THROWS_AS(s->append(std::nullopt, {make_entry(0, 1)}), std::invalid_argument);
  REQUIRE(!s->sync());
  REQUIRE(!s->save_snapshot({{3, 1, {"a"}}, "x"}));
  CHECK_THROWS_AS(s->append(std::nullopt, {make_entry(3, 2)}), std::invalid_argument);  // into the snapshot
  CHECK(!s->save_snapshot({{2, 1, {"a"}}, "y"}));  // not newer: already covered, nothing done
  CHECK(files(t.path, "snapshot-").size() == 1);
  CHECK(s->snapshot_index() == 3);
  CHECK_THROWS_AS(s->save_snapshot({{0, 0, {}}, ""}), std::invalid_argument);
  CHECK(s->last_index() == 5);
}

TEST_CASE("storage: segments roll, and a snapshot removes the segments it covers and the older snapshot") {
  temp_dir t;
  storage_options small;
  small.segment_bytes = 1024;
  {
    recovered r;
    auto s = must_open(t.path, r, small);
    s->append(hs(4, "n2@h", 0), {});  // only in the first segment's records: later segments must repeat it
    REQUIRE(!s->sync());
    for (index_t i = 1; i <= 200; ++i) {
      s->append(std::nullopt, {make_entry(i, 4, 40)});
      REQUIRE(!s->sync());
    }
    const auto before = files(t.path, "wal-").size();
    CHECK(before > 10);
    REQUIRE(!s->save_snapshot({{100, 4, {"n1@h", "n2@h"}}, "s100"}));
    const auto mid = files(t.path, "wal-");
    CHECK(mid.size() < before);
    CHECK(s->stats().segments == mid.size());
    REQUIRE(!s->save_snapshot({{190, 4, {"n1@h", "n2@h"}}, "s190"}));
    CHECK(files(t.path, "wal-").size() < mid.size());
    CHECK(files(t.path, "snapshot-").size() == 1);
  }
  recovered r;
  auto s = must_open(t.path, r, small);
  REQUIRE(r.snap);
  CHECK(r.snap->meta.index == 190);
  CHECK(r.snap->data == "s190");
  CHECK(r.state == hs(4, "n2@h", 190));  // commit raised to the snapshot
  CHECK(r.log == make_entries(191, 200, 4, 40));
}

TEST_CASE("storage: a snapshot beyond the log or off its lineage drops the log (Raft §7); on it keeps the suffix") {
  temp_dir t;
  {
    recovered r;
    auto s = must_open(t.path, r);
    s->append(hs(1, std::nullopt, 0), make_entries(1, 10, 1));
    REQUIRE(!s->sync());
    REQUIRE(!s->save_snapshot({{4, 1, {"a"}}, "on"}));  // the log holds (4, 1): 5..10 stay
    CHECK(s->last_index() == 10);
    REQUIRE(!s->save_snapshot({{8, 2, {"a"}}, "off"}));  // (8, 2) is not in the log: all of it goes
    CHECK(s->last_index() == 8);
    s->append(std::nullopt, make_entries(9, 9, 2));
    REQUIRE(!s->sync());
  }
  {
    recovered r;
    auto s = must_open(t.path, r);
    CHECK(r.snap->meta.index == 8);
    CHECK(r.log == make_entries(9, 9, 2));
    REQUIRE(!s->save_snapshot({{50, 3, {"a"}}, "ahead"}));  // a follower's install past its log
    s->append(std::nullopt, make_entries(51, 52, 3));
    REQUIRE(!s->sync());
  }
  recovered r;
  auto s = must_open(t.path, r);
  CHECK(r.snap->meta.index == 50);
  CHECK(r.log == make_entries(51, 52, 3));
}

TEST_CASE("storage: a snapshot file made durable without its mark in the log (a crash between) is applied") {
  temp_dir t;
  {
    recovered r;
    auto s = must_open(t.path, r);
    s->append(hs(1, std::nullopt, 0), make_entries(1, 10, 1));
    REQUIRE(!s->sync());
  }
  std::vector<std::uint8_t> b;
  wal::encode_snapshot({{6, 1, {"a", "b"}}, "six"}, b);
  spit(t.path / "snapshot-00000000000000000006-00000000000000000001.snap", b);
  spit(t.path / "snapshot-00000000000000000009-00000000000000000001.snap.tmp", {1, 2, 3});  // an unfinished one
  recovered r;
  auto s = must_open(t.path, r);
  CHECK(r.snap->meta.index == 6);
  CHECK(r.log == make_entries(7, 10, 1));
  CHECK(files(t.path, "snapshot-").size() == 1);  // the temporary is gone
}

TEST_CASE("storage: a torn tail at every byte of the last record recovers exactly the records before it") {
  temp_dir src;
  const std::uint64_t start = three_records(src.path);
  const fs::path seg = files(src.path, "wal-").at(0);
  const auto full = slurp(seg);
  REQUIRE(full.size() > start + wal::record_header_size);
  std::vector<entry> prefix = make_entries(1, 5, 0);
  for (auto& e : prefix) e.term = e.index <= 3 ? 1 : 2;
  for (std::uint64_t cut = start; cut < full.size(); ++cut) {
    for (bool zeros : {false, true}) {
      CAPTURE(cut);
      CAPTURE(zeros);
      temp_dir t;
      std::vector<std::uint8_t> b(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
      if (zeros) b.resize(full.size(), 0);  // the file's length made it to disk, the last pages did not
      const fs::path p = t.path / seg.filename();
      spit(p, b);
      {
        recovered r;
        auto s = must_open(t.path, r);
        CHECK(r.state == hs(2, "b@h", 2));
        CHECK(r.log == prefix);
        CHECK(fs::file_size(p) == start);
        s->append(hs(3, "c@h", 5), {make_entry(6, 3)});
        REQUIRE(!s->sync());
      }
      recovered r;
      auto s = must_open(t.path, r);
      CHECK(r.state == hs(3, "c@h", 5));
      REQUIRE(r.log.size() == 6);
      CHECK(r.log.back() == make_entry(6, 3));
    }
  }
}

TEST_CASE("storage: a flipped byte before the last record is an error naming the file and the record") {
  temp_dir src;
  const std::uint64_t last_start = three_records(src.path);
  const fs::path seg = files(src.path, "wal-").at(0);
  const auto full = slurp(seg);
  // The records' offsets, from the format.
  std::vector<std::uint64_t> starts;
  for (std::uint64_t p = wal::segment_header_size; p < full.size();) {
    starts.push_back(p);
    p += wal::record_header_size + (full[p] | full[p + 1] << 8 | full[p + 2] << 16 | std::uint64_t{full[p + 3]} << 24);
  }
  REQUIRE(starts.size() == 3);
  REQUIRE(starts[2] == last_start);
  for (std::uint64_t at = 0; at < last_start; ++at) {
    CAPTURE(at);
    temp_dir t;
    auto b = full;
    b[at] ^= 0x20;
    const fs::path p = t.path / seg.filename();
    spit(p, b);
    recovered r;
    storage_failure why;
    auto s = storage::open(t.path, r, why);
    REQUIRE(!s);
    CHECK(why.file == p);
    REQUIRE(why.offset);
    if (at < wal::segment_header_size) {
      CHECK((why.ec == storage_error::bad_header || why.ec == storage_error::unsupported_version ||
             why.ec == storage_error::name_mismatch));
    } else {
      CHECK(why.ec == storage_error::corrupt_record);
      CHECK(*why.offset == (at < starts[1] ? starts[0] : starts[1]));
    }
    CHECK(why.message().find(p.string()) != std::string::npos);
    CHECK(slurp(p) == b);  // nothing was changed
    CHECK(r.log.empty());
  }
  // The same damage in the last record cannot be told from a torn write: it is dropped.
  temp_dir t;
  auto b = full;
  b[last_start + 30] ^= 0x20;
  spit(t.path / seg.filename(), b);
  recovered r;
  auto s = must_open(t.path, r);
  CHECK(r.log.size() == 5);
}

TEST_CASE("storage: damage in an older segment is an error even at its end") {
  temp_dir t;
  storage_options small;
  small.segment_bytes = 200;
  one_record_each(t.path, 6, small);
  const auto segs = files(t.path, "wal-");
  REQUIRE(segs.size() >= 2);
  auto b = slurp(segs[0]);
  b.pop_back();  // cut the older segment's last record
  spit(segs[0], b);
  const auto why = open_fails(t.path, small);
  CHECK(why.ec == storage_error::corrupt_record);
  CHECK(why.file == segs[0]);
}

TEST_CASE("storage: empty, garbage and unknown-version files") {
  SUBCASE("an empty newest segment is a creation that never completed: removed") {
    temp_dir t;
    spit(t.path / "wal-00000000000000000001-00000000000000000001.log", {});
    recovered r;
    auto s = must_open(t.path, r);
    CHECK(r.log.empty());
    CHECK(files(t.path, "wal-").empty());
    s->append(std::nullopt, {make_entry(1, 1)});
    CHECK(!s->sync());
  }
  SUBCASE("a garbage segment") {
    temp_dir t;
    const fs::path p = t.path / "wal-00000000000000000001-00000000000000000001.log";
    std::vector<std::uint8_t> g(100);
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = static_cast<std::uint8_t>(i * 37 + 11);
    spit(p, g);
    const auto why = open_fails(t.path);
    CHECK(why.ec == storage_error::bad_header);
    CHECK(why.file == p);
    CHECK(why.offset == 0u);
  }
  SUBCASE("a segment of a newer format version") {
    temp_dir t;
    std::vector<std::uint8_t> b;
    wal::encode_segment_header({1, 1}, b);
    b[8] = 2;
    const fs::path p = t.path / "wal-00000000000000000001-00000000000000000001.log";
    spit(p, b);
    const auto why = open_fails(t.path);
    CHECK(why.ec == storage_error::unsupported_version);
    CHECK(why.offset == 8u);
  }
  SUBCASE("an empty or garbage snapshot file") {
    temp_dir t;
    const fs::path p = t.path / "snapshot-00000000000000000005-00000000000000000001.snap";
    for (std::vector<std::uint8_t> b : {std::vector<std::uint8_t>{}, std::vector<std::uint8_t>(64, 0xab)}) {
      spit(p, b);
      const auto why = open_fails(t.path);
      CHECK(why.ec == storage_error::bad_header);
      CHECK(why.file == p);
    }
  }
  SUBCASE("a snapshot file with a flipped byte, or named for another index") {
    temp_dir t;
    std::vector<std::uint8_t> b;
    wal::encode_snapshot({{5, 1, {"a"}}, "data"}, b);
    b[b.size() - 6] ^= 1;
    const fs::path p = t.path / "snapshot-00000000000000000005-00000000000000000001.snap";
    spit(p, b);
    const auto why = open_fails(t.path);
    CHECK(why.ec == storage_error::bad_snapshot);
    b[b.size() - 6] ^= 1;
    fs::remove(p);
    spit(t.path / "snapshot-00000000000000000006-00000000000000000001.snap", b);
    CHECK(open_fails(t.path).ec == storage_error::name_mismatch);
  }
  SUBCASE("other files are left alone") {
    temp_dir t;
    spit(t.path / "README", {'h', 'i'});
    recovered r;
    auto s = must_open(t.path, r);
    CHECK(fs::exists(t.path / "README"));
  }
}

TEST_CASE("storage: gaps are refused: a missing segment, a log that starts after the snapshot, a missing snapshot") {
  temp_dir t;
  storage_options small;
  small.segment_bytes = 200;
  one_record_each(t.path, 8, small);
  auto segs = files(t.path, "wal-");
  REQUIRE(segs.size() >= 3);
  SUBCASE("a segment in the middle") {
    fs::remove(segs[1]);
    const auto why = open_fails(t.path, small);
    CHECK(why.ec == storage_error::missing_data);
    CHECK(why.file == segs[2]);
  }
  SUBCASE("the oldest segment, with no snapshot") {
    fs::remove(segs[0]);
    const auto why = open_fails(t.path, small);
    CHECK(why.ec == storage_error::missing_data);
    CHECK(why.file == segs[1]);
  }
  SUBCASE("the snapshot that the log marks") {
    {
      recovered r;
      auto s = must_open(t.path, r, small);
      REQUIRE(!s->save_snapshot({{3, 1, {}}, ""}));
    }
    for (auto& p : files(t.path, "snapshot-")) fs::remove(p);
    const auto why = open_fails(t.path, small);
    CHECK(why.ec == storage_error::missing_data);
  }
}

TEST_CASE("storage: a directory is opened by one storage at a time; a file is not a directory") {
  temp_dir t;
  recovered r;
  auto s = must_open(t.path, r);
  CHECK(open_fails(t.path).ec == storage_error::in_use);
  s.reset();
  CHECK(must_open(t.path, r));
  spit(t.path / "plain", {1});
  std::error_code ec;
  CHECK(!storage::open(t.path / "plain", r, ec));
  CHECK(ec == std::errc::not_a_directory);
  if (::geteuid() != 0) {  // root reads anything
    fs::create_directory(t.path / "closed");
    fs::permissions(t.path / "closed", fs::perms::none);
    CHECK(open_fails(t.path / "closed").ec == std::errc::permission_denied);
  }
}

TEST_CASE("storage: a failed write leaves the storage failed; a reopen cuts the partial record") {
  temp_dir t;
  recovered r;
  auto s = must_open(t.path, r);
  s->append(hs(1, std::nullopt, 0), make_entries(1, 3, 1));
  REQUIRE(!s->sync());
  const auto seg = files(t.path, "wal-").at(0);
  const auto size = fs::file_size(seg);
  std::error_code ec;
  {
    file_size_limit limit(size + 100);
    s->append(std::nullopt, make_entries(4, 5, 1, 4096));
    ec = s->sync();
  }
  CHECK(ec == std::errc::file_too_large);
  CHECK(s->failed());
  s->append(std::nullopt, {make_entry(6, 1)});
  CHECK(s->sync() == storage_error::failed);
  CHECK(fs::file_size(seg) == size + 100);  // the partial record is there
  s.reset();
  s = must_open(t.path, r);
  CHECK(r.log == make_entries(1, 3, 1));
  CHECK(fs::file_size(seg) == size);
}
