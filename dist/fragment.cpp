// Distribution headers, fragment reassembly and splitting (see fragment.hpp).
#include "dist/fragment.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "etf/buffer_pool.hpp"
#include "etf/codec.hpp"
#include "etf/error.hpp"

namespace cnode::dist {
namespace {

constexpr std::byte version{131}, hdr_normal{68}, hdr_frag{69}, hdr_cont{70}, pass{112};
constexpr std::size_t frag_prefix = 2 + 8 + 8;  // 131, 69|70, SeqId, FragId
// What a partial message costs besides its bytes (map node, vectors): charged too, so that a flood of
// one-byte first fragments is bounded like a few large ones.
constexpr std::size_t partial_overhead = 128;

std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(std::byte((v >> (i * 8)) & 0xff));
}

class fragment_category_impl : public std::error_category {
 public:
  const char* name() const noexcept override { return "cnode.dist.fragment"; }
  std::string message(int c) const override {
    switch (static_cast<fragment_error>(c)) {
      case fragment_error::bad_header: return "bad distribution header";
      case fragment_error::truncated: return "packet ends inside the distribution header";
      case fragment_error::unknown_sequence: return "fragment of a sequence never started";
      case fragment_error::duplicate_sequence: return "starting fragment of a sequence already in progress";
      case fragment_error::bad_fragment_id: return "fragment id out of order";
      case fragment_error::message_too_large: return "reassembled message longer than --max-message-bytes";
      case fragment_error::budget_exceeded: return "bytes held for partial messages over the node's bound";
      case fragment_error::too_many_sequences: return "too many fragmented messages in progress";
    }
    return "unknown fragment error";
  }
};

}  // namespace

const std::error_category& fragment_category() noexcept {
  static const fragment_category_impl c;
  return c;
}

bool partial_budget::take(std::size_t n) noexcept {
  std::size_t cur = held_.load(std::memory_order_relaxed);
  do {
    if (n > limit_ || cur > limit_ - n) return false;
  } while (!held_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
  return true;
}

bool partial_budget::reserve(std::size_t n) noexcept {
  std::size_t cur = reserved_.load(std::memory_order_relaxed);
  do {
    if (n > limit_ || cur > limit_ - n) return false;
  } while (!reserved_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
  return true;
}

std::error_code read_header_refs(const std::byte* p, std::size_t& pos, std::size_t end, atom_cache* cache,
                                 std::vector<etf::atom>& refs, std::size_t& err_at) {
  auto u8 = [&](std::size_t i) { return std::to_integer<std::size_t>(p[i]); };
  auto truncated = [&] {
    err_at = end;
    return make_error_code(control_error::truncated);
  };
  if (pos >= end) return truncated();
  const std::size_t n = u8(pos++);
  if (n == 0) return {};
  const std::size_t flag_bytes = n / 2 + 1;
  if (end - pos < flag_bytes) return truncated();
  const std::size_t flags_at = pos;
  pos += flag_bytes;
  auto nibble = [&](std::size_t i) { return (u8(flags_at + i / 2) >> ((i & 1) * 4)) & 0xf; };
  // The half byte after the last reference's: bit 0 is LongAtoms (2-byte atom lengths).
  const bool long_atoms = nibble(n) & 1;
  refs.reserve(refs.size() + n);
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned f = static_cast<unsigned>(nibble(i));
    const bool is_new = f & 8;
    if (pos >= end) return truncated();
    const std::size_t index = (f & 7) * 256 + u8(pos++);
    if (is_new) {
      const std::size_t len_at = pos;
      if (end - pos < (long_atoms ? 2u : 1u)) return truncated();
      const std::size_t len = long_atoms ? (u8(pos) << 8) | u8(pos + 1) : u8(pos);
      pos += long_atoms ? 2 : 1;
      if (end - pos < len) return truncated();
      // UTF8_ATOMS is mandatory since OTP 25, so the text is UTF-8.
      etf::atom_status status = etf::atom_status::ok;
      auto a = etf::atom::from_wire_utf8({reinterpret_cast<const char*>(p + pos), len}, &status);
      err_at = len_at;
      if (!a && status == etf::atom_status::table_full) return etf::error::atom_table_full;
      if (!a) return make_error_code(control_error::bad_atom_text);
      pos += len;
      refs.push_back(*a);
      if (cache) cache->set(index, *a);
    } else {
      const etf::atom* a = cache ? cache->find(index) : nullptr;
      if (!a) {
        err_at = pos - 1;
        return make_error_code(control_error::atom_cache_miss);
      }
      refs.push_back(*a);
    }
  }
  return {};
}

// ---- inbound ----

inbound_reader::inbound_reader(bool headered, limits l, std::shared_ptr<partial_budget> budget)
    : headered_(headered), limits_(l), budget_(std::move(budget)) {}

inbound_reader::~inbound_reader() { clear(); }

void inbound_reader::message_done() noexcept {
  done_ = {};
  std::vector<etf::atom>().swap(done_refs_);
}

void inbound_reader::clear() noexcept {
  direct_ = {};
  for (auto& [id, p] : partial_) release(p);
  partial_.clear();
  done_ = {};
}

void inbound_reader::release(partial& p) noexcept {
  if (budget_ && p.charged) budget_->give(p.charged);
  held_ -= p.charged;
  p.charged = 0;
  if (budget_ && p.reserved) budget_->unreserve(p.reserved);
  reserved_ -= p.reserved;
  p.reserved = 0;
  etf::big_buffers().give(std::move(p.data));
}

// The room to reserve for a message whose first fragment carries `data` bytes and announces `fragments` in all:
// its size if every fragment is as long, never more than --max-message-bytes, and only while this reader's and the
// node's reservations stay within their bounds (else 0: the buffer grows as the fragments come, as any vector).
// Reserved room is not charged to the budget (bytes are, as they arrive): untouched, it costs address space only.
std::size_t inbound_reader::reserve_for(std::size_t data, std::uint64_t fragments) noexcept {
  const std::size_t cap = limits_.max_message;
  std::size_t want = data != 0 && fragments > cap / data ? cap : static_cast<std::size_t>(data * fragments);
  want = std::min(want, cap);
  if (want <= data || reserved_ > cap - want) return 0;
  if (budget_ && !budget_->reserve(want)) return 0;
  reserved_ += want;
  return want;
}

bool inbound_reader::charge(partial& p, std::size_t n, std::error_code& ec) {
  if (budget_ && !budget_->take(n)) {
    ec = make_error_code(fragment_error::budget_exceeded);
    return false;
  }
  p.charged += n;
  held_ += n;
  return true;
}

inbound_reader::result inbound_reader::fail(std::error_code ec, std::size_t at) {
  result r;
  r.st = status::failed;
  r.ec = ec;
  r.offset = at;
  return r;
}

inbound_reader::result inbound_reader::feed(std::span<const std::byte> packet) {
  const std::byte* p = packet.data();
  const std::size_t end = packet.size();
  if (end == 0) return fail(make_error_code(control_error::empty_packet), 0);
  if (p[0] != version || !headered_) {
    // Without either flag every packet is a pass-through one; decode_control judges its first byte. With one,
    // erts refuses 'p' ("incompatible erlang"); we hand it on too (it is unambiguous), and anything else not
    // starting with 131 the same way, for the upper layer to judge.
    result r;
    r.st = status::message;
    r.msg.bytes = packet;
    return r;
  }
  if (end < 2) return fail(make_error_code(fragment_error::truncated), end);
  const std::byte tag = p[1];
  if (tag == hdr_normal) {
    std::size_t pos = 2, err_at = 0;
    refs_.clear();
    if (auto ec = read_header_refs(p, pos, end, &cache_, refs_, err_at)) return fail(ec, err_at);
    result r;
    r.st = status::message;
    r.msg.bytes = packet.subspan(pos);
    r.msg.headered = true;
    r.msg.refs = refs_;
    return r;
  }
  if (tag != hdr_frag && tag != hdr_cont) return fail(make_error_code(fragment_error::bad_header), 1);
  if (end < frag_prefix) return fail(make_error_code(fragment_error::truncated), end);
  const std::uint64_t seq = get_u64(p + 2), id = get_u64(p + 10);
  if (id == 0) return fail(make_error_code(fragment_error::bad_fragment_id), 10);
  std::error_code ec;
  if (tag == hdr_frag) {
    if (partial_.count(seq)) return fail(make_error_code(fragment_error::duplicate_sequence), 2);
    std::size_t pos = frag_prefix, err_at = 0;
    std::vector<etf::atom> refs;
    // The header's cache entries take effect now, not when the message completes (erts_prepare_dist_ext).
    if (auto e = read_header_refs(p, pos, end, &cache_, refs, err_at)) return fail(e, err_at);
    const std::size_t data = end - pos;
    if (data > limits_.max_message) return fail(make_error_code(fragment_error::message_too_large), end);
    if (id == 1) {  // a sequence of one
      done_refs_ = std::move(refs);
      done_ = etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(p + pos), data});
      result r;
      r.st = status::message;
      r.msg.bytes = {reinterpret_cast<const std::byte*>(done_.data()), done_.size()};
      r.msg.headered = true;
      r.msg.refs = done_refs_;
      r.msg.shared = done_;
      return r;
    }
    if (partial_.size() >= limits_.max_sequences)
      return fail(make_error_code(fragment_error::too_many_sequences), 2);
    partial np;
    if (!charge(np, data + partial_overhead, ec)) return fail(ec, 0);
    np.refs = std::move(refs);
    // One buffer for the whole message, at the size announced (bounded): no regrowth, no copy when it completes.
    np.reserved = reserve_for(data, id);
    if (np.reserved) {
      np.data = etf::big_buffers().take_sized(np.reserved);
    } else {
      np.data = etf::big_buffers().take(data);
    }
    append(np, p + pos, data);
    np.next_id = id - 1;
    np.count = 1;
    partial_.emplace(seq, std::move(np));
    return {};
  }
  auto it = partial_.find(seq);
  if (it == partial_.end()) return fail(make_error_code(fragment_error::unknown_sequence), 2);
  partial& cur = it->second;
  if (id != cur.next_id) {
    release(cur);
    partial_.erase(it);
    return fail(make_error_code(fragment_error::bad_fragment_id), 10);
  }
  const std::size_t data = end - frag_prefix;
  if (cur.filled + data > limits_.max_message) {
    release(cur);
    partial_.erase(it);
    return fail(make_error_code(fragment_error::message_too_large), end);
  }
  if (id == 1) {
    append(cur, p + frag_prefix, data);
    return complete(it);
  }
  if (!charge(cur, data, ec)) {
    release(cur);
    partial_.erase(it);
    return fail(ec, 0);
  }
  append(cur, p + frag_prefix, data);
  cur.next_id = id - 1;
  ++cur.count;
  return {};
}

void inbound_reader::append(partial& p, const std::byte* from, std::size_t n) {
  const auto* src = reinterpret_cast<const std::uint8_t*>(from);
  if (n == 0) return;  // an empty fragment (the buffer may be none yet: no memcpy of a null pointer)
  if (p.filled + n <= p.data.size()) {
    std::memcpy(p.data.data() + p.filled, src, n);  // into the room sized at the first fragment
  } else {
    p.data.resize(p.filled);
    p.data.insert(p.data.end(), src, src + n);
  }
  p.filled += n;
}

// The last fragment has been taken: the message, in its buffer cut to what arrived.
inbound_reader::result inbound_reader::complete(std::unordered_map<std::uint64_t, partial>::iterator it) {
  partial& cur = it->second;
  cur.data.resize(cur.filled);  // a shrink: nothing is written
  done_ = etf::shared_bytes(std::move(cur.data));
  done_refs_ = std::move(cur.refs);
  const std::uint64_t count = cur.count + 1;
  release(cur);
  partial_.erase(it);
  result r;
  r.st = status::message;
  r.msg.bytes = {reinterpret_cast<const std::byte*>(done_.data()), done_.size()};
  r.msg.headered = true;
  r.msg.refs = done_refs_;
  r.msg.shared = done_;
  r.msg.fragments = count;
  return r;
}

std::span<std::byte> inbound_reader::begin_direct(std::span<const std::byte> prefix, std::size_t data) {
  if (direct_.active || !headered_ || prefix.size() != frag_prefix || prefix[0] != version || prefix[1] != hdr_cont)
    return {};
  const std::uint64_t seq = get_u64(prefix.data() + 2), id = get_u64(prefix.data() + 10);
  if (id == 0) return {};
  auto it = partial_.find(seq);
  if (it == partial_.end()) return {};
  partial& cur = it->second;
  if (id != cur.next_id || cur.filled + data > limits_.max_message || cur.filled + data > cur.data.size()) return {};
  // feed charges every fragment but the last (the message then leaves the reader at once).
  if (id != 1) {
    if (budget_ && !budget_->take(data)) return {};
    cur.charged += data;
    held_ += data;
  }
  direct_ = {true, seq, id, data};
  return {reinterpret_cast<std::byte*>(cur.data.data() + cur.filled), data};
}

inbound_reader::result inbound_reader::end_direct() {
  const direct d = direct_;
  direct_ = {};
  auto it = d.active ? partial_.find(d.seq) : partial_.end();
  if (it == partial_.end()) return fail(make_error_code(fragment_error::unknown_sequence), 2);  // not reached
  partial& cur = it->second;
  cur.filled += d.data;
  if (d.id == 1) return complete(it);
  cur.next_id = d.id - 1;
  ++cur.count;
  return {};
}

// ---- forms ----

namespace {
// The length of the term at bytes[pos..] (no version byte), or 0 if it is not a complete term.
std::size_t term_length(std::span<const std::byte> bytes, std::size_t pos) {
  etf::decode_options o;
  o.expect_version = false;
  auto u = std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data()) + pos,
                                         bytes.size() - pos);
  auto r = etf::decode_prefix(u, o);
  return r ? r.offset : 0;
}
}  // namespace

bool to_header_form(std::span<const std::byte> in, std::vector<std::byte>& out) {
  if (in.size() < 3 || in[0] != pass || in[1] != version) return false;
  // The control tuple is small: finding its end costs little next to the payload copy this makes anyway.
  const std::size_t ctrl = term_length(in, 2);
  if (ctrl == 0) return false;
  const std::size_t after = 2 + ctrl;
  // What follows the control term is 131 and a payload, or nothing. A 131 with nothing after it has no header
  // form: dropping it would turn a packet the decoder refuses ("payload after a control message that takes none")
  // into one it accepts (found by the dist_fragment fuzzer).
  if (after < in.size() && (in[after] != version || after + 1 == in.size())) return false;
  out.clear();
  out.reserve(in.size() + 1);
  out.insert(out.end(), {version, hdr_normal, std::byte{0}});
  out.insert(out.end(), in.begin() + 2, in.begin() + static_cast<std::ptrdiff_t>(after));
  if (after < in.size()) out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(after) + 1, in.end());
  return true;
}

bool to_pass_through(std::span<const std::byte> in, std::vector<std::byte>& out) {
  if (in.size() < 4 || in[0] != version || in[1] != hdr_normal || in[2] != std::byte{0}) return false;
  const std::size_t ctrl = term_length(in, 3);
  if (ctrl == 0) return false;
  const std::size_t after = 3 + ctrl;
  out.clear();
  out.reserve(in.size() + 1);
  out.insert(out.end(), {pass, version});
  out.insert(out.end(), in.begin() + 3, in.begin() + static_cast<std::ptrdiff_t>(after));
  if (after < in.size()) {
    out.push_back(version);
    out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(after), in.end());
  }
  return true;
}

void self_contained_packet(const inbound_message& m, std::vector<std::byte>& p) {
  const std::size_t n = m.refs.size();
  p.assign({version, hdr_normal, std::byte(n)});
  if (n > 0) {
    std::vector<std::byte> flags(n / 2 + 1, std::byte{0});
    for (std::size_t i = 0; i < n; ++i) flags[i / 2] |= std::byte((8 | (i >> 8)) << ((i & 1) * 4));
    flags[n / 2] |= std::byte(1 << ((n & 1) * 4));  // LongAtoms
    p.insert(p.end(), flags.begin(), flags.end());
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view text = m.refs[i].text();
    p.push_back(std::byte(i & 0xff));
    p.push_back(std::byte(text.size() >> 8));
    p.push_back(std::byte(text.size() & 0xff));
    for (char ch : text) p.push_back(std::byte(static_cast<unsigned char>(ch)));
  }
  p.insert(p.end(), m.bytes.begin(), m.bytes.end());
}

std::size_t header_length(std::span<const std::byte> packet) noexcept {
  if (packet.size() < 3 || packet[0] != version || packet[1] != hdr_normal) return 0;
  std::size_t pos = 2;
  const std::size_t n = std::to_integer<std::size_t>(packet[pos++]);
  if (n == 0) return pos;
  const std::size_t flag_bytes = n / 2 + 1;
  if (packet.size() - pos < flag_bytes) return 0;
  const std::size_t flags_at = pos;
  pos += flag_bytes;
  auto nibble = [&](std::size_t i) {
    return (std::to_integer<unsigned>(packet[flags_at + i / 2]) >> ((i & 1) * 4)) & 0xf;
  };
  const bool long_atoms = nibble(n) & 1;
  for (std::size_t i = 0; i < n; ++i) {
    if (pos >= packet.size()) return 0;
    ++pos;  // the index
    if (nibble(i) & 8) {
      const std::size_t lb = long_atoms ? 2 : 1;
      if (packet.size() - pos < lb) return 0;
      const std::size_t len = long_atoms ? (std::to_integer<std::size_t>(packet[pos]) << 8) |
                                               std::to_integer<std::size_t>(packet[pos + 1])
                                         : std::to_integer<std::size_t>(packet[pos]);
      pos += lb;
      if (packet.size() - pos < len) return 0;
      pos += len;
    }
  }
  return pos;
}

// ---- outbound ----

void write_header(std::span<const etf::atom> refs, atom_out_cache& cache, std::vector<std::byte>& head) {
  const std::size_t n = std::min(refs.size(), etf::atom_ref_table::max_refs);
  head.insert(head.end(), {version, hdr_normal, std::byte(n)});
  if (n == 0) return;
  bool long_atoms = false;
  for (std::size_t i = 0; i < n; ++i) long_atoms = long_atoms || refs[i].size() > 255;
  const std::size_t flags_at = head.size();
  head.resize(flags_at + n / 2 + 1, std::byte{0});
  auto set_nibble = [&](std::size_t i, unsigned v) { head[flags_at + i / 2] |= std::byte(v << ((i & 1) * 4)); };
  set_nibble(n, long_atoms ? 1 : 0);
  for (std::size_t i = 0; i < n; ++i) {
    const etf::atom& a = refs[i];
    const std::size_t slot = etf::atom_ref_table::slot_of(a);
    const etf::atom* held = cache.find(slot);
    if (held && *held == a) {
      set_nibble(i, static_cast<unsigned>((slot >> 8) & 7));
      head.push_back(std::byte(slot & 0xff));
      continue;
    }
    cache.set(slot, a);
    set_nibble(i, static_cast<unsigned>(8 | ((slot >> 8) & 7)));
    head.push_back(std::byte(slot & 0xff));
    const std::string_view text = a.text();
    if (long_atoms) head.push_back(std::byte(text.size() >> 8));
    head.push_back(std::byte(text.size() & 0xff));
    const auto* t = reinterpret_cast<const std::byte*>(text.data());
    head.insert(head.end(), t, t + text.size());
  }
}

bool drop_atom_refs(out_packet& p, bool header) {
  if (!p.deferred_header) return true;
  p.flatten();
  auto body = etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(p.bytes.data()), p.bytes.size()});
  auto d = decode_control_body(body, 0, body.size(), p.refs);
  if (!d) return false;
  std::vector<std::uint8_t> out;
  encode_control(d.msg, out, header ? packet_form::header : packet_form::pass_through);
  p.bytes.assign(reinterpret_cast<const std::byte*>(out.data()), reinterpret_cast<const std::byte*>(out.data()) + out.size());
  p.refs.clear();
  p.head.clear();
  p.deferred_header = false;
  return true;
}

std::size_t out_packet::size() const noexcept {
  std::size_t n = bytes.size();
  for (const auto& e : externals) n += e.binary.byte_size();
  return n;
}

void out_packet::segments(std::vector<std::span<const std::byte>>& out) const {
  if (!head.empty()) out.push_back(head);
  std::size_t pos = 0;
  std::span<const std::byte> all(bytes);
  for (const auto& e : externals) {
    if (e.at > pos) out.push_back(all.subspan(pos, e.at - pos));
    const auto b = e.binary.bytes();
    if (!b.empty()) out.push_back({reinterpret_cast<const std::byte*>(b.data()), b.size()});
    pos = e.at;
  }
  if (pos < all.size()) out.push_back(all.subspan(pos));
}

void out_packet::flatten() {
  if (externals.empty()) return;
  std::vector<std::span<const std::byte>> segs;
  std::vector<std::byte> h = std::move(head);
  head.clear();
  segments(segs);
  head = std::move(h);
  std::vector<std::byte> flat;
  flat.reserve(size());
  for (auto s : segs) flat.insert(flat.end(), s.begin(), s.end());
  bytes = std::move(flat);
  externals.clear();
}

fragment_stream::fragment_stream(std::span<const std::byte> packet, std::size_t header_len, std::uint64_t seq_id,
                                 std::size_t chunk)
    : fragment_stream(std::vector<std::span<const std::byte>>{packet}, header_len, seq_id, chunk) {}

fragment_stream::fragment_stream(std::vector<std::span<const std::byte>> segments, std::size_t header_len,
                                 std::uint64_t seq_id, std::size_t chunk)
    : segs_(std::move(segments)), header_len_(header_len), chunk_(chunk == 0 ? 1 : chunk), seq_(seq_id) {
  for (auto s : segs_) size_ += s.size();
  const std::size_t data = size_ - header_len;
  total_ = data == 0 ? 1 : (data + chunk_ - 1) / chunk_;
  next_id_ = total_;
  advance(0);
}

void fragment_stream::advance(std::size_t n) noexcept {
  seg_off_ += n;
  while (seg_ < segs_.size() && seg_off_ >= segs_[seg_].size()) {
    seg_off_ -= segs_[seg_].size();
    ++seg_;
  }
}

std::size_t fragment_stream::next(std::vector<std::byte>& head, std::span<const std::byte>& data) {
  std::vector<std::span<const std::byte>> parts;
  const std::size_t covered = next(head, parts);
  data = parts.empty() ? std::span<const std::byte>() : parts.front();  // one span: the packet is one segment
  return covered;
}

std::size_t fragment_stream::next(std::vector<std::byte>& head, std::vector<std::span<const std::byte>>& data) {
  const bool first = offset_ == 0;
  head.push_back(version);
  head.push_back(first ? hdr_frag : hdr_cont);
  put_u64(head, seq_);
  put_u64(head, next_id_--);
  std::size_t covered = 0;
  if (first) {
    // N, Flags, refs: the normal header after its 131,68 (within the first segment).
    const auto h = segs_.front();
    head.insert(head.end(), h.begin() + 2, h.begin() + static_cast<std::ptrdiff_t>(header_len_));
    offset_ = header_len_;
    advance(header_len_);
    covered = header_len_;
  }
  const std::size_t n = std::min(chunk_, size_ - offset_);
  for (std::size_t left = n; left > 0;) {
    const auto s = segs_[seg_];
    const std::size_t k = std::min(left, s.size() - seg_off_);
    data.push_back(s.subspan(seg_off_, k));
    left -= k;
    advance(k);
  }
  offset_ += n;
  if (offset_ == header_len_ && n == 0) offset_ = size_;  // an empty body: one fragment
  return covered + n;
}

}  // namespace cnode::dist
