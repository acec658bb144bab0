#include "raft/wal.hpp"

#include <cstring>
#include <limits>
#include <stdexcept>

#include <zlib.h>

#include "etf/codec.hpp"

namespace cnode::raft {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "raft_storage"; }
  std::string message(int ev) const override {
    switch (static_cast<storage_error>(ev)) {
      case storage_error::ok: return "success";
      case storage_error::bad_header: return "not a file of this format (bad magic, header checksum or a cut header)";
      case storage_error::unsupported_version: return "unsupported format version";
      case storage_error::corrupt_record: return "corrupt record before the end of the log";
      case storage_error::bad_sequence: return "records, segments or entries out of order";
      case storage_error::missing_data: return "missing data (a gap between segments, or between snapshot and log)";
      case storage_error::name_mismatch: return "file name disagrees with its header";
      case storage_error::bad_snapshot: return "corrupt snapshot file";
      case storage_error::in_use: return "directory in use by another storage";
      case storage_error::failed: return "an earlier write or sync failed; reopen the storage";
      case storage_error::invalid_argument: return "append or snapshot breaks the log's rules";
      case storage_error::stopped: return "group commit stopped";
    }
    return "unknown raft storage error";
  }
};

constexpr char segment_magic[8] = {'c', 'n', 'r', 'a', 'f', 't', 'w', 'l'};
constexpr char snapshot_magic[8] = {'c', 'n', 'r', 'a', 'f', 't', 's', 'n'};
constexpr std::uint8_t op_entry = 1, op_hard_state = 2, op_truncate = 3, op_snapshot_mark = 4;

template <class T>
void put(std::vector<std::uint8_t>& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i)));
}

template <class T>
T get(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return static_cast<T>(v);
}

// Bounds-checked reading of a byte range; `base` makes offsets relative to the file.
struct reader {
  std::span<const std::uint8_t> b;
  std::uint64_t base = 0;
  std::size_t pos = 0;
  bool has(std::size_t n) const { return b.size() - pos >= n; }
  template <class T>
  T take() {
    T v = get<T>(b.data() + pos);
    pos += sizeof(T);
    return v;
  }
  std::uint64_t where() const { return base + pos; }
};

void put_bytes(std::vector<std::uint8_t>& out, const void* p, std::size_t n) {
  const auto* c = static_cast<const std::uint8_t*>(p);
  out.insert(out.end(), c, c + n);
}

bool all_zero(std::span<const std::uint8_t> b) {
  for (auto c : b)
    if (c) return false;
  return true;
}

// A record header at p (at least record_header_size bytes) whose own checksum holds.
bool header_ok(const std::uint8_t* p) {
  return get<std::uint32_t>(p + 16) == wal::crc32({p, 16});
}

// Decodes a record's payload into ops. On malformed contents: false, with the file offset in `at`.
bool decode_ops(std::span<const std::uint8_t> payload, std::uint64_t base, std::vector<wal::op>& ops, std::uint64_t& at) {
  reader r{payload, base};
  etf::decode_options dopts;
  dopts.max_inflated_size = std::size_t{64} << 20;
  while (r.has(1)) {
    at = r.where();
    const std::uint8_t type = r.take<std::uint8_t>();
    switch (type) {
      case op_entry: {
        if (!r.has(20)) return false;
        entry e;
        e.index = r.take<std::uint64_t>();
        e.term = r.take<std::uint64_t>();
        const auto n = r.take<std::uint32_t>();
        if (!r.has(n)) return false;
        at = r.where();
        auto d = etf::decode(payload.subspan(r.pos, n), dopts);
        if (!d) {
          at += d.offset;
          return false;
        }
        e.data = std::move(d.value);
        r.pos += n;
        ops.emplace_back(std::move(e));
        break;
      }
      case op_hard_state: {
        if (!r.has(19)) return false;
        hard_state hs;
        hs.term = r.take<std::uint64_t>();
        hs.commit = r.take<std::uint64_t>();
        const auto has_vote = r.take<std::uint8_t>();
        const auto n = r.take<std::uint16_t>();
        if (has_vote > 1 || (!has_vote && n) || !r.has(n)) return false;
        if (has_vote) hs.voted_for = std::string(reinterpret_cast<const char*>(payload.data() + r.pos), n);
        r.pos += n;
        ops.emplace_back(std::move(hs));
        break;
      }
      case op_truncate:
        if (!r.has(8)) return false;
        ops.emplace_back(wal::truncate_from{r.take<std::uint64_t>()});
        break;
      case op_snapshot_mark: {
        if (!r.has(16)) return false;
        wal::snapshot_mark m;
        m.index = r.take<std::uint64_t>();
        m.term = r.take<std::uint64_t>();
        ops.emplace_back(m);
        break;
      }
      default: return false;
    }
  }
  return true;
}

}  // namespace

const std::error_category& storage_category() noexcept {
  static const category c;
  return c;
}

namespace wal {

std::uint32_t crc32(std::span<const std::uint8_t> bytes) noexcept {
  uLong c = ::crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large inputs in pieces.
  while (!bytes.empty()) {
    const std::size_t n = std::min<std::size_t>(bytes.size(), std::numeric_limits<uInt>::max());
    c = ::crc32(c, bytes.data(), static_cast<uInt>(n));
    bytes = bytes.subspan(n);
  }
  return static_cast<std::uint32_t>(c);
}

void encode_segment_header(const segment_header& h, std::vector<std::uint8_t>& out) {
  const std::size_t start = out.size();
  put_bytes(out, segment_magic, sizeof segment_magic);
  put<std::uint32_t>(out, format_version);
  put<std::uint64_t>(out, h.seq);
  put<std::uint64_t>(out, h.first_index);
  put<std::uint32_t>(out, 0);
  put<std::uint32_t>(out, crc32({out.data() + start, 32}));
}

void encode_op(const op& o, std::vector<std::uint8_t>& out) {
  if (const auto* e = std::get_if<entry>(&o)) {
    const std::size_t start = out.size();
    out.push_back(op_entry);
    put<std::uint64_t>(out, e->index);
    put<std::uint64_t>(out, e->term);
    put<std::uint32_t>(out, 0);
    const std::size_t data = out.size();
    try {
      etf::encode(e->data, out);
    } catch (...) {
      out.resize(start);
      throw;
    }
    const std::size_t n = out.size() - data;
    if (n > std::numeric_limits<std::uint32_t>::max()) {
      out.resize(start);
      throw std::invalid_argument("raft storage: an entry of 4 GiB or more");
    }
    for (std::size_t i = 0; i < 4; ++i) out[data - 4 + i] = static_cast<std::uint8_t>(n >> (8 * i));
  } else if (const auto* hs = std::get_if<hard_state>(&o)) {
    const std::size_t n = hs->voted_for ? hs->voted_for->size() : 0;
    if (n > 0xffff) throw std::invalid_argument("raft storage: a voted-for name longer than 65535 bytes");
    out.push_back(op_hard_state);
    put<std::uint64_t>(out, hs->term);
    put<std::uint64_t>(out, hs->commit);
    out.push_back(hs->voted_for ? 1 : 0);
    put<std::uint16_t>(out, n);
    if (n) put_bytes(out, hs->voted_for->data(), n);
  } else if (const auto* t = std::get_if<truncate_from>(&o)) {
    out.push_back(op_truncate);
    put<std::uint64_t>(out, t->index);
  } else {
    const auto& m = std::get<snapshot_mark>(o);
    out.push_back(op_snapshot_mark);
    put<std::uint64_t>(out, m.index);
    put<std::uint64_t>(out, m.term);
  }
}

std::array<std::uint8_t, record_header_size> record_header(std::uint64_t seq, std::span<const std::uint8_t> payload) {
  if (payload.size() > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("raft storage: a record of 4 GiB or more");
  std::vector<std::uint8_t> h;
  h.reserve(record_header_size);
  put<std::uint32_t>(h, payload.size());
  put<std::uint64_t>(h, seq);
  put<std::uint32_t>(h, crc32(payload));
  put<std::uint32_t>(h, crc32({h.data(), 16}));
  std::array<std::uint8_t, record_header_size> a;
  std::memcpy(a.data(), h.data(), a.size());
  return a;
}

segment_contents read_segment(std::span<const std::uint8_t> b, bool last, std::uint64_t prev_seq) {
  segment_contents out;
  auto fail = [&](storage_error e, std::uint64_t at) {
    out.ec = e;
    out.offset = at;
    out.records.clear();
    return std::move(out);
  };
  auto torn_at = [&](std::uint64_t at) {
    out.torn = true;
    out.valid_bytes = at;
    return std::move(out);
  };
  // A creation that never became durable: the file was made but its first write is not all there.
  if (b.size() < segment_header_size) return last ? torn_at(0) : fail(storage_error::bad_header, b.size());
  if (std::memcmp(b.data(), segment_magic, sizeof segment_magic) != 0) {
    if (last && all_zero(b)) return torn_at(0);
    return fail(storage_error::bad_header, 0);
  }
  // The version before the checksum: another version may lay its header out differently.
  if (get<std::uint32_t>(b.data() + 8) != format_version) return fail(storage_error::unsupported_version, 8);
  if (get<std::uint32_t>(b.data() + 32) != crc32(b.first(32))) return fail(storage_error::bad_header, 32);
  if (get<std::uint32_t>(b.data() + 28) != 0) return fail(storage_error::bad_header, 28);
  out.header.seq = get<std::uint64_t>(b.data() + 12);
  out.header.first_index = get<std::uint64_t>(b.data() + 20);

  std::size_t pos = segment_header_size;
  std::uint64_t prev = prev_seq;
  while (pos < b.size()) {
    const std::size_t rem = b.size() - pos;
    if (rem < record_header_size || !header_ok(b.data() + pos)) {
      // A cut or damaged header. Only the newest segment may end in a torn write, and only if no record of a later
      // write follows (a later record proves this one's fdatasync had returned).
      if (!last) return fail(storage_error::corrupt_record, pos);
      for (std::size_t p = pos + 1; p + record_header_size <= b.size(); ++p) {
        const std::uint8_t* h = b.data() + p;
        const auto len = get<std::uint32_t>(h);
        const auto seq = get<std::uint64_t>(h + 4);
        if (seq <= prev || len > b.size() - p - record_header_size || !header_ok(h)) continue;
        if (get<std::uint32_t>(h + 12) == crc32({h + record_header_size, len}))
          return fail(storage_error::corrupt_record, pos);
      }
      return torn_at(pos);
    }
    const std::uint8_t* h = b.data() + pos;
    const auto len = get<std::uint32_t>(h);
    const auto seq = get<std::uint64_t>(h + 4);
    if (seq == 0 || (prev != 0 && seq != prev + 1)) return fail(storage_error::bad_sequence, pos);
    if (len > rem - record_header_size) return last ? torn_at(pos) : fail(storage_error::corrupt_record, pos);
    const auto payload = b.subspan(pos + record_header_size, len);
    if (get<std::uint32_t>(h + 12) != crc32(payload)) {
      // Damage in the last record is a torn write; damage with a record after it is corruption.
      if (last && pos + record_header_size + len == b.size()) return torn_at(pos);
      return fail(storage_error::corrupt_record, pos);
    }
    record r;
    r.seq = seq;
    r.offset = pos;
    std::uint64_t at = 0;
    if (!decode_ops(payload, pos + record_header_size, r.ops, at)) return fail(storage_error::corrupt_record, at);
    out.records.push_back(std::move(r));
    prev = seq;
    pos += record_header_size + len;
  }
  out.valid_bytes = pos;
  return out;
}

void encode_snapshot(const snapshot& s, std::vector<std::uint8_t>& out) {
  for (const auto& m : s.meta.members)
    if (m.size() > 0xffff) throw std::invalid_argument("raft storage: a member name longer than 65535 bytes");
  const std::size_t start = out.size();
  put_bytes(out, snapshot_magic, sizeof snapshot_magic);
  put<std::uint32_t>(out, format_version);
  put<std::uint64_t>(out, s.meta.index);
  put<std::uint64_t>(out, s.meta.term);
  put<std::uint32_t>(out, s.meta.members.size());
  for (const auto& m : s.meta.members) {
    put<std::uint16_t>(out, m.size());
    put_bytes(out, m.data(), m.size());
  }
  put<std::uint64_t>(out, s.data.size());
  put_bytes(out, s.data.data(), s.data.size());
  put<std::uint32_t>(out, crc32({out.data() + start, out.size() - start}));
}

snapshot_contents read_snapshot(std::span<const std::uint8_t> b) {
  snapshot_contents out;
  auto fail = [&](storage_error e, std::uint64_t at) {
    out.ec = e;
    out.offset = at;
    out.snap = {};
    return std::move(out);
  };
  constexpr std::size_t min_size = 8 + 4 + 8 + 8 + 4 + 8 + 4;
  if (b.size() < 12 || std::memcmp(b.data(), snapshot_magic, sizeof snapshot_magic) != 0)
    return fail(storage_error::bad_header, 0);
  if (get<std::uint32_t>(b.data() + 8) != format_version) return fail(storage_error::unsupported_version, 8);
  if (b.size() < min_size) return fail(storage_error::bad_snapshot, b.size());
  const std::size_t body = b.size() - 4;
  if (get<std::uint32_t>(b.data() + body) != crc32(b.first(body))) return fail(storage_error::bad_snapshot, body);
  reader r{b.first(body)};
  r.pos = 12;
  out.snap.meta.index = r.take<std::uint64_t>();
  out.snap.meta.term = r.take<std::uint64_t>();
  const auto count = r.take<std::uint32_t>();
  if (count > (body - r.pos) / 2) return fail(storage_error::bad_snapshot, r.pos - 4);
  out.snap.meta.members.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    if (!r.has(2)) return fail(storage_error::bad_snapshot, r.pos);
    const auto n = r.take<std::uint16_t>();
    if (!r.has(n)) return fail(storage_error::bad_snapshot, r.pos - 2);
    out.snap.meta.members.emplace_back(reinterpret_cast<const char*>(b.data() + r.pos), n);
    r.pos += n;
  }
  if (!r.has(8)) return fail(storage_error::bad_snapshot, r.pos);
  const auto n = r.take<std::uint64_t>();
  if (n != body - r.pos) return fail(storage_error::bad_snapshot, r.pos - 8);
  out.snap.data.assign(reinterpret_cast<const char*>(b.data() + r.pos), n);
  return out;
}

}  // namespace wal
}  // namespace cnode::raft
