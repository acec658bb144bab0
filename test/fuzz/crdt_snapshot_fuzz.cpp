// libFuzzer target: the CRDT state file (crdt/snapshot.hpp), bytes from disk. The first input byte picks how the
// rest is used: odd, as the whole file; even, as the payload behind a header with the right length and checksum (so
// that the fuzzer reaches the term and object decoding instead of stopping at the CRC). Invariants: no crash; what
// decodes re-encodes to a file that decodes to the same snapshot.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "crdt/snapshot.hpp"

using namespace cnode::crdt;

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "crdt_snapshot_fuzz: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::vector<std::uint8_t> file;
  if (data[0] & 1) {
    file.assign(data + 1, data + size);
  } else {
    const char magic[] = "CNCRDT01";
    file.assign(magic, magic + 8);
    const std::uint64_t len = size - 1;
    for (int i = 7; i >= 0; --i) file.push_back(static_cast<std::uint8_t>(len >> (8 * i)));
    const auto crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), data + 1, static_cast<uInt>(len)));
    for (int i = 3; i >= 0; --i) file.push_back(static_cast<std::uint8_t>(crc >> (8 * i)));
    file.insert(file.end(), data + 1, data + size);
  }
  auto r = decode_snapshot(file);
  if (!r) {
    if (r.error.empty()) fail("a refusal without a reason");
    return 0;
  }
  auto again = decode_snapshot(encode_snapshot(r.value));
  if (!again) fail("a decoded snapshot does not decode after re-encoding");
  if (!(again.value.state == r.value.state) || again.value.node != r.value.node || again.value.writer != r.value.writer)
    fail("re-encoding changed the snapshot");
  return 0;
}
