#include "crdt/snapshot.hpp"

#include <zlib.h>

#include <cstring>

#include "crdt/codec.hpp"
#include "etf/codec.hpp"

namespace cnode::crdt {

namespace {

constexpr char magic[8] = {'C', 'N', 'C', 'R', 'D', 'T', '0', '1'};
constexpr std::size_t header_size = 20;

std::uint32_t crc_of(std::span<const std::uint8_t> b) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes at most UINT_MAX bytes a call.
  for (std::size_t off = 0; off < b.size();) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(b.size() - off, 1u << 30));
    crc = crc32(crc, b.data() + off, n);
    off += n;
  }
  return static_cast<std::uint32_t>(crc);
}

void put_be(std::vector<std::uint8_t>& out, std::size_t at, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) out[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
}

std::uint64_t get_be(std::span<const std::uint8_t> b, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}

snapshot_result fail(std::string why) { return {{}, std::move(why)}; }

}  // namespace

std::vector<std::uint8_t> encode_snapshot(const snapshot& s) {
  std::vector<std::uint8_t> out(header_size);
  std::memcpy(out.data(), magic, sizeof magic);
  const term t = term::tuple({term(etf::atom("crdt_snapshot")), term(s.node), term(s.writer), encode(s.state)});
  etf::encode(t, out);
  const std::span<const std::uint8_t> payload(out.data() + header_size, out.size() - header_size);
  put_be(out, 8, payload.size(), 8);
  put_be(out, 16, crc_of(payload), 4);
  return out;
}

snapshot_result decode_snapshot(std::span<const std::uint8_t> b) {
  if (b.size() < header_size) return fail("truncated: " + std::to_string(b.size()) + " bytes, not even a header");
  if (std::memcmp(b.data(), magic, sizeof magic) != 0) {
    if (std::memcmp(b.data(), magic, 6) == 0) return fail("a format this cnode does not know");
    return fail("not a cnode CRDT state file (bad magic)");
  }
  const std::uint64_t len = get_be(b, 8, 8);
  if (len != b.size() - header_size)
    return fail("truncated or padded: the header says " + std::to_string(len) + " bytes of payload, the file has " +
                std::to_string(b.size() - header_size));
  const auto payload = b.subspan(header_size);
  if (crc_of(payload) != get_be(b, 16, 4)) return fail("checksum mismatch (the file is damaged)");
  auto d = etf::decode(payload);
  if (!d) return fail("payload is not a term: " + d.ec.message() + " at byte " + std::to_string(header_size + d.offset));
  const term& t = d.value;
  if (!t.is_tuple(4) || !t.element(0).is_atom(etf::atom("crdt_snapshot")) || !t.element(1).is_atom() ||
      !t.element(2).is_atom())
    return fail("payload is not {crdt_snapshot, Node, Writer, Objects}");
  auto g = decode_group(t.element(3));
  if (!g) return fail("the objects are malformed");
  return {snapshot{t.element(1).atom_value(), t.element(2).atom_value(), std::move(*g)}, {}};
}

}  // namespace cnode::crdt
