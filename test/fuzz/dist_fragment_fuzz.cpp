// Fragment reassembly and the normal distribution header with atom cache references (dist/fragment.hpp), checked
// against a model. Input: a config byte (headered, max_message, max_sequences, a node-wide partial budget, one or
// two connections sharing it), a byte for the chunk size of the re-split, then packets, each behind a 2-byte
// length whose top bit picks the connection.
// Invariants, for every packet: the reader's outcome is the model's (a message exactly when a sequence ends, its
// bytes the concatenation of the fragments' data and its references those of the first fragment's header; the
// protocol errors for an unknown, duplicate or out-of-order sequence); bytes held are exactly the partial data plus
// the per-partial overhead, within the budget, and come back on failure and on clear(). For every whole message:
// the self-contained 131,68 packet and its split by fragment_stream reassemble to the same bytes and atoms; for a
// pass-through packet, to_header_form / to_pass_through agree with the decoder.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "dist/control.hpp"
#include "dist/fragment.hpp"
#include "etf/term.hpp"

using namespace cnode;
using namespace cnode::dist;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr std::size_t overhead = 128;  // fragment.cpp's partial_overhead

std::uint64_t u64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

etf::shared_bytes copy_of(std::span<const std::byte> b) {
  return etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(b.data()), b.size()});
}

struct model_partial {
  std::vector<std::byte> data;
  std::vector<etf::atom> refs;
  std::uint64_t next_id;
  std::uint64_t count;
};

struct conn {
  std::unique_ptr<inbound_reader> reader;
  std::map<std::uint64_t, model_partial> partial;
  bool down = false;
  std::size_t model_held() const {
    std::size_t n = 0;
    for (const auto& [k, p] : partial) n += p.data.size() + overhead;
    return n;
  }
};

bool same(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}
bool same(std::span<const etf::atom> a, std::span<const etf::atom> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// A whole headered message survives the trip through the outbound side: rebuilt as a self-contained 131,68 packet
// and split into fragments of `chunk` bytes, a fresh reader gives back the same bytes and atoms.
void round_trip(const inbound_message& m, std::size_t chunk) {
  std::vector<std::byte> self;
  self_contained_packet(m, self);
  const std::size_t hl = header_length(self);
  check(hl != 0 && hl == self.size() - m.bytes.size());
  {
    inbound_reader r(true, {});
    auto got = r.feed(self);
    check(got.st == inbound_reader::status::message && same(got.msg.bytes, m.bytes) && same(got.msg.refs, m.refs));
  }
  // At most ~64 fragments, whatever the chunk.
  chunk = std::max<std::size_t>(chunk, m.bytes.size() / 64 + 1);
  fragment_stream fs(self, hl, 7, chunk);
  inbound_reader r(true, {});
  std::uint64_t n = 0;
  while (!fs.done()) {
    std::vector<std::byte> head;
    std::span<const std::byte> d;
    fs.next(head, d);
    head.insert(head.end(), d.begin(), d.end());
    auto got = r.feed(head);
    ++n;
    if (fs.done()) {
      check(got.st == inbound_reader::status::message && same(got.msg.bytes, m.bytes) &&
            same(got.msg.refs, m.refs) && got.msg.fragments == n && n == fs.total());
    } else {
      check(got.st == inbound_reader::status::pending);
    }
  }
  check(r.held_bytes() == 0 && r.sequences() == 0);
}

// A pass-through packet and its header form decode alike; a valid one converts there and back unchanged.
void forms(std::span<const std::byte> p) {
  if (p.empty() || p[0] != std::byte{112}) return;  // not a pass-through packet (the decoder judges it alone)
  auto buf = copy_of(p);
  decode_outcome d = decode_control(buf, 0, buf.size());
  std::vector<std::byte> h, back;
  const bool converted = to_header_form(p, h);
  if (d) check(converted);
  if (!converted) return;
  auto hbuf = copy_of(h);
  decode_outcome dh = decode_control(hbuf, 0, hbuf.size());
  check(static_cast<bool>(dh) == static_cast<bool>(d));
  if (d) check(dh.msg == d.msg);
  check(to_pass_through(h, back));
  if (d) check(same(back, p));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t cfg = data[0];
  const std::size_t chunk = data[1] + 1;
  const bool headered = cfg & 1;
  static constexpr std::size_t max_messages[] = {16, 300, 4096, 1 << 20};
  static constexpr std::size_t max_seqs[] = {1, 2, 8, 4096};
  static constexpr std::size_t budgets[] = {0, 200, 1024, 1 << 20};
  inbound_reader::limits lim{.max_message = max_messages[(cfg >> 1) & 3], .max_sequences = max_seqs[(cfg >> 3) & 3]};
  std::shared_ptr<partial_budget> budget;
  if (const std::size_t b = budgets[(cfg >> 5) & 3]) budget = std::make_shared<partial_budget>(b);
  conn conns[2];
  const int nconns = (cfg & 0x80) ? 2 : 1;
  for (int i = 0; i < nconns; ++i) conns[i].reader = std::make_unique<inbound_reader>(headered, lim, budget);

  std::size_t pos = 2;
  while (size - pos >= 2) {
    conn& c = conns[(data[pos] >> 7) % nconns];
    std::size_t len = (std::size_t{data[pos] & 0x7fu} << 8) | data[pos + 1];
    pos += 2;
    if (len > size - pos) len = size - pos;
    std::span<const std::byte> pk(reinterpret_cast<const std::byte*>(data + pos), len);
    pos += len;
    if (c.down) continue;

    // What the model expects of this packet.
    enum { msg, pend, fail, any } want = any;
    std::uint64_t seq = 0, id = 0;
    std::vector<std::byte> want_bytes;
    std::vector<etf::atom> want_refs;
    std::uint64_t want_frags = 1;
    const bool frag = headered && len >= 2 && pk[0] == std::byte{131} && (pk[1] == std::byte{69} || pk[1] == std::byte{70});
    if (frag && len >= 18) {
      seq = u64(&pk[2]);
      id = u64(&pk[10]);
      if (id == 0) {
        want = fail;
      } else if (pk[1] == std::byte{69}) {
        if (c.partial.count(seq)) {
          want = fail;
        } else {
          atom_cache before = c.reader->cache();
          std::size_t hp = 18, err = 0;
          if (!read_header_refs(pk.data(), hp, len, &before, want_refs, err)) {
            want_bytes.assign(pk.begin() + static_cast<std::ptrdiff_t>(hp), pk.end());
            if (want_bytes.size() > lim.max_message) want = fail;
            else if (id == 1) want = msg;
            else if (c.partial.size() >= lim.max_sequences) want = fail;
            else if (budget && budget->held() + want_bytes.size() + overhead > budget->limit()) want = fail;
            else want = pend;
          } else {
            want = fail;
          }
        }
      } else {
        auto it = c.partial.find(seq);
        if (it == c.partial.end() || id != it->second.next_id) {
          want = fail;
        } else {
          want_bytes = it->second.data;
          want_bytes.insert(want_bytes.end(), pk.begin() + 18, pk.end());
          want_refs = it->second.refs;
          want_frags = it->second.count + 1;
          if (want_bytes.size() > lim.max_message) want = fail;
          else if (id == 1) want = msg;
          else if (budget && budget->held() + (len - 18) > budget->limit()) want = fail;
          else want = pend;
        }
      }
    } else if (frag) {
      want = fail;  // truncated fragment header
    }

    auto r = c.reader->feed(pk);
    if (want == msg) {
      check(r.st == inbound_reader::status::message && same(r.msg.bytes, want_bytes) && same(r.msg.refs, want_refs) &&
            r.msg.fragments == want_frags);
      c.partial.erase(seq);
    } else if (want == pend) {
      check(r.st == inbound_reader::status::pending);
      auto& mp = c.partial[seq];
      if (pk[1] == std::byte{69}) {
        mp = model_partial{want_bytes, want_refs, id - 1, 1};
      } else {
        mp.data = std::move(want_bytes);
        mp.next_id = id - 1;
        ++mp.count;
      }
    } else if (want == fail) {
      check(r.st == inbound_reader::status::failed);
    } else {
      check(r.st != inbound_reader::status::pending);  // not a fragment: whole, or refused
    }
    if (r.st == inbound_reader::status::failed) {
      check(static_cast<bool>(r.ec) && r.offset <= len && !r.ec.message().empty());
      // The connection closes: whatever it held goes back.
      c.reader->clear();
      c.partial.clear();
      c.down = true;
    } else if (r.st == inbound_reader::status::message) {
      if (r.msg.headered) round_trip(r.msg, chunk);
      else forms(r.msg.bytes);
      if (r.msg.shared.node()) c.reader->message_done();
    }
    // Bytes held: exactly the model's, within the budget, shared by both connections.
    std::size_t total = 0;
    for (int i = 0; i < nconns; ++i) {
      check(conns[i].reader->held_bytes() == conns[i].model_held());
      check(conns[i].reader->sequences() == conns[i].partial.size());
      check(conns[i].reader->sequences() <= lim.max_sequences);
      total += conns[i].reader->held_bytes();
    }
    if (budget) check(budget->held() == total && total <= budget->limit());
  }
  for (int i = 0; i < nconns; ++i) {
    conns[i].reader->clear();
    check(conns[i].reader->held_bytes() == 0 && conns[i].reader->sequences() == 0);
  }
  if (budget) check(budget->held() == 0);
  return 0;
}
