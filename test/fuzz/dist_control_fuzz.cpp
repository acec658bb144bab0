// Feeds arbitrary packets to the control-message decoder. The input is one packet, or (when it starts with 0xff
// 'M') a sequence of packets, each behind a 2-byte length, sharing one atom cache so that cached references made by
// one header can be used by the next. Invariants: no crash, no read outside the packet, an error offset inside the
// packet, and for every packet that decodes: encode → decode gives the same message and encoding it again gives the
// same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "dist/control.hpp"
#include "etf/term.hpp"

using namespace cnode;
using namespace cnode::dist;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void one_packet(const std::uint8_t* data, std::size_t size, atom_cache& cache) {
  // The packet sits inside a larger buffer with junk after it, so reading past `size` would be caught by the
  // offset checks below (and by ASan for reads past the buffer).
  std::vector<std::uint8_t> buf(data, data + size);
  buf.insert(buf.end(), {131, 104, 1, 97, 1});
  etf::shared_bytes shared(std::move(buf));
  decode_outcome d = decode_control(shared, 0, size, &cache);
  if (!d) {
    check(d.offset <= size);
    return;
  }
  check(d.offset == size);
  std::vector<std::uint8_t> once;
  try {
    once = encode_control(d.msg);
  } catch (...) {
    // Terms the encoder refuses (none are expected from a decoded message) must not escape as a crash silently.
    check(false);
  }
  etf::shared_bytes again(once);
  decode_outcome back = decode_control(again, 0, again.size());
  check(static_cast<bool>(back));
  check(back.msg == d.msg);
  check(back.msg.wire_op() == d.msg.wire_op());
  check(encode_control(back.msg) == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  atom_cache cache;
  if (size >= 2 && data[0] == 0xff && data[1] == 'M') {
    std::size_t pos = 2;
    while (size - pos >= 2) {
      std::size_t len = (std::size_t{data[pos]} << 8) | data[pos + 1];
      pos += 2;
      if (len > size - pos) len = size - pos;
      one_packet(data + pos, len, cache);
      pos += len;
    }
    return 0;
  }
  one_packet(data, size, cache);
  return 0;
}
