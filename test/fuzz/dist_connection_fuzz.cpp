// The connection's whole inbound path after the handshake (dist/inbound.hpp, what dist/connection.cpp runs on the
// bytes its socket gives): 4-byte framing, ticks, distribution headers with atom cache references, fragments of
// interleaved sequences, then the control-message decoding the runtime does on each message
// (cnode/distribution.cpp). Input: a config byte (the negotiated flags DIST_HDR_ATOM_CACHE / FRAGMENTS, the packet
// limit, a node-wide partial budget, the read size), a byte for how the stream is cut into reads, then the byte
// stream itself.
// Invariants: no crash and no hang; memory bounded by what arrived and by the limits (framing buffer, partial
// bytes within the budget, a message within the packet limit); a failure comes with a reason and nothing is handed
// out after it; the default handler's self-contained packet decodes to the same message as the header form; when
// the connection goes down (failure, a bad control message, end of input) every partial byte is given back.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "dist/control.hpp"
#include "dist/error.hpp"
#include "dist/flags.hpp"
#include "dist/fragment.hpp"
#include "dist/inbound.hpp"
#include "etf/term.hpp"

using namespace cnode;
using namespace cnode::dist;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

etf::shared_bytes copy_of(std::span<const std::byte> b) {
  return etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(b.data()), b.size()});
}

// What the runtime does with one message; false: it closes the connection (bad_message).
bool handle(const inbound_message& m, std::size_t max_packet) {
  check(m.bytes.size() <= max_packet);
  if (!m.headered) {
    auto buf = copy_of(m.bytes);
    decode_outcome d = decode_control(buf, 0, buf.size());
    if (!d) check(d.offset <= buf.size() && !d.ec.message().empty());
    return static_cast<bool>(d);
  }
  auto buf = copy_of(m.bytes);
  decode_outcome d = decode_control_body(buf, 0, buf.size(), m.refs);
  // The default on_message's rebuilt packet says the same thing.
  std::vector<std::byte> self;
  self_contained_packet(m, self);
  check(header_length(self) == self.size() - m.bytes.size());
  auto sbuf = copy_of(self);
  decode_outcome s = decode_control(sbuf, 0, sbuf.size());
  check(static_cast<bool>(s) == static_cast<bool>(d));
  if (!d) {
    check(d.offset <= buf.size() && !d.ec.message().empty());
    return false;
  }
  check(s.msg == d.msg);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t cfg = data[0], cut = data[1];
  std::uint64_t effective = default_flags(false) & ~(dflag::dist_hdr_atom_cache | dflag::fragments);
  if (cfg & 1) effective |= dflag::dist_hdr_atom_cache;
  if (cfg & 2) effective |= dflag::fragments;
  const std::size_t max_packet = (cfg & 4) ? 1024 : 1024 * 1024;
  std::shared_ptr<partial_budget> budget;
  if (cfg & 8) budget = std::make_shared<partial_budget>((cfg & 16) ? 512 : 64 * 1024);
  const std::size_t read_size = (cfg & 32) ? 16 : 64 * 1024;
  inbound_path in(effective, max_packet, budget, read_size);
  check(in.headered() == ((cfg & 3) != 0));

  std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  // Reads of `chunk` bytes (0: the whole stream at once), through prepare/commit as the socket does, or append.
  const std::size_t chunk = cut == 0 ? stream.size() : cut;
  std::uint64_t messages = 0, ticks = 0;
  bool down = false;
  std::size_t fed = 0, peak = 0;
  while (!down && fed < stream.size()) {
    const std::size_t n = std::min(chunk, stream.size() - fed);
    if (cfg & 64) {
      in.append(stream.subspan(fed, n));
    } else {
      std::size_t done = 0;
      while (done < n) {
        auto room = in.prepare();
        check(!room.empty());
        const std::size_t k = std::min(room.size(), n - done);
        std::memcpy(room.data(), stream.data() + fed + done, k);
        in.commit(k);
        done += k;
      }
    }
    fed += n;
    // Memory held by the framing: at most twice the most that was ever waiting to be handed out, plus a read; and
    // that is at most one packet within the limit plus one read.
    peak = std::max(peak, in.buffered());
    check(peak < 4 + max_packet + n);
    check(in.buffer_capacity() <= 2 * peak + read_size + 4);
    for (;;) {
      const auto ev = in.next();
      if (budget) check(in.partial_bytes() <= budget->limit() && budget->held() == in.partial_bytes());
      check(in.sequences() <= 4096);
      if (ev == inbound_path::event::need_more) {
        check(in.buffered() < 4 + max_packet);
        break;
      }
      if (ev == inbound_path::event::tick) {
        ++ticks;
        continue;
      }
      if (ev == inbound_path::event::failed) {
        check(static_cast<bool>(in.error()) && !in.error().message().empty() && !reason_name(in.error()).empty());
        check(in.next() == inbound_path::event::failed);  // nothing more after a failure
        down = true;
        break;
      }
      ++messages;
      const bool ok = handle(in.message(), max_packet);
      in.message_done();
      if (!ok) {
        down = true;  // closed with bad_message
        break;
      }
    }
  }
  check(in.ticks() == ticks && in.packets() >= messages && in.bytes() == fed);
  // Down (failure, bad message, or the peer gone mid-message): nothing held for partial messages.
  in.clear();
  check(in.partial_bytes() == 0 && in.sequences() == 0);
  if (budget) check(budget->held() == 0);
  return 0;
}
