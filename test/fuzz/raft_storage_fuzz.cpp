// libFuzzer target: any bytes as a write-ahead log segment (the newest or an older one, with and without a known
// previous record) and as a snapshot file. The readers must be total (an error within the input, never a crash or
// a hang); what they accept must encode back to what reads the same. Seeds: scripts/fuzz-seed-raft_storage.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "raft/wal.hpp"

using namespace cnode::raft;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "raft_storage_fuzz: %s\n", what);
  std::abort();
}

void segment(std::span<const std::uint8_t> in, bool last, std::uint64_t prev) {
  const auto c = wal::read_segment(in, last, prev);
  if (c.ec) {
    if (c.ec.category() != storage_category()) fail("segment error from another category");
    if (c.offset > in.size()) fail("segment error offset beyond the input");
    if (!c.records.empty()) fail("records with an error");
    return;
  }
  if (c.valid_bytes > in.size()) fail("valid bytes beyond the input");
  if (!c.torn && c.valid_bytes != in.size()) fail("a clean read that stops early");
  if (c.torn && !last) fail("a torn tail in an older segment");
  if (c.valid_bytes == 0) {
    if (!c.torn || !c.records.empty()) fail("nothing valid but not a torn creation");
    return;
  }
  // The good prefix reads the same again, on its own and re-encoded from what was read.
  const auto again = wal::read_segment(in.first(c.valid_bytes), false, prev);
  if (again.ec || again.torn || again.records.size() != c.records.size()) fail("the good prefix does not read back");
  std::vector<std::uint8_t> out;
  wal::encode_segment_header(c.header, out);
  for (const auto& r : c.records) {
    std::vector<std::uint8_t> payload;
    for (const auto& o : r.ops) wal::encode_op(o, payload);
    const auto h = wal::record_header(r.seq, payload);
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), payload.begin(), payload.end());
  }
  const auto re = wal::read_segment(out, false, prev);
  if (re.ec || re.records.size() != c.records.size()) fail("re-encoded segment does not read back");
  for (std::size_t i = 0; i < re.records.size(); ++i)
    if (re.records[i].seq != c.records[i].seq || re.records[i].ops != c.records[i].ops) fail("re-encoded record differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  for (bool last : {true, false})
    for (std::uint64_t prev : {std::uint64_t{0}, std::uint64_t{1}}) segment(in, last, prev);
  const auto s = wal::read_snapshot(in);
  if (s.ec) {
    if (s.ec.category() != storage_category()) fail("snapshot error from another category");
    if (s.offset > size) fail("snapshot error offset beyond the input");
    return 0;
  }
  std::vector<std::uint8_t> out;
  wal::encode_snapshot(s.snap, out);
  if (out.size() != size || !std::equal(out.begin(), out.end(), data)) fail("snapshot does not re-encode to itself");
  return 0;
}
