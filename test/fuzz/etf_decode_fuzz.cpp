// libFuzzer target: any bytes through decode(). What decodes must re-encode to bytes that decode to an =:= term, with
// and without compression, and decode_prefix must agree with decode. Seeds: scripts/fuzz-seed-etf_decode.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <span>

#include "etf/codec.hpp"

using namespace cnode::etf;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "etf_decode_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  decode_options opts;
  opts.max_inflated_size = std::size_t{16} << 20;  // keeps a bomb within the fuzzer's RSS limit
  std::span<const std::uint8_t> in(data, size);
  decode_result r = decode(in, opts);
  decode_result p = decode_prefix(in, opts);
  if (!r) {
    if (r.offset > size) fail("error offset beyond the input");
    if (r.ec.category() != etf_category()) fail("error from another category");
    // decode_prefix fails the same way, except that it accepts what decode refuses as trailing bytes.
    if (r.ec != make_error_code(error::trailing_bytes) && (p || p.ec != r.ec || p.offset != r.offset))
      fail("decode_prefix disagrees with decode on an error");
    if (r.ec == make_error_code(error::trailing_bytes) && (!p || p.offset >= size))
      fail("trailing_bytes but decode_prefix did not stop early");
    return 0;
  }
  if (!p || p.offset != size || !(p.value == r.value)) fail("decode_prefix disagrees with decode");
  std::vector<std::uint8_t> out = encode(r.value);
  decode_result again = decode(out);
  if (!again) fail("our own encoding does not decode");
  if (!(again.value == r.value)) fail("decode(encode(decode(x))) =/= decode(x)");
  if (encode(again.value) != out) fail("encoding is not stable");
  if (size < 4096) {
    decode_result z = decode(encode(r.value, {.utf8_atoms = true, .compression_level = 1}));
    if (!z || !(z.value == r.value)) fail("compressed UTF-8-atom encoding does not round-trip");
  }
  return 0;
}
