// The sending side of the atom cache (issue 14): the encoder's ATOM_CACHE_REF (etf::atom_ref_table), the header
// written with a connection's output cache (write_header), re-encoding without references (drop_atom_refs), and
// fragments of a message with references; every packet read back by our own inbound_reader and decoded.
#include <doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "dist/control.hpp"
#include "dist/fragment.hpp"
#include "etf/codec.hpp"
#include "etf/term.hpp"

using namespace cnode;
using namespace cnode::dist;
using etf::atom;
using etf::term;

namespace {

term pid_on(const char* node, std::uint32_t id) {
  return term::pid(etf::pid_value{atom::from_utf8(node).value(), id, 0, 1});
}

// A SEND of payload, encoded with atom cache references (the runtime's encode_packet with the flag in effect).
out_packet deferred(const term& payload, etf::atom_ref_table& t) {
  control_message m{send_msg{pid_on("peer@h", 5)}, {}, payload};
  std::vector<std::uint8_t> raw;
  out_packet p;
  t.clear();
  encode_control(m, raw, packet_form::header, &p.externals, 64 * 1024, &t);
  p.refs = t.take();
  p.deferred_header = true;
  p.bytes.resize(raw.size());
  std::memcpy(p.bytes.data(), raw.data(), raw.size());
  return p;
}

// The packet as the writer puts it on the wire when it is not fragmented: header, then bytes.
std::vector<std::byte> wire(out_packet& p, atom_out_cache& cache) {
  write_header(p.refs, cache, p.head);
  p.deferred_header = false;
  std::vector<std::span<const std::byte>> segs;
  p.segments(segs);
  std::vector<std::byte> out;
  for (auto s : segs) out.insert(out.end(), s.begin(), s.end());
  return out;
}

// Decodes one whole message read by r.
control_message read_back(inbound_reader& r, std::span<const std::byte> packet) {
  auto res = r.feed(packet);
  REQUIRE(res.st == inbound_reader::status::message);
  REQUIRE(res.msg.headered);
  auto buf = etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(res.msg.bytes.data()), res.msg.bytes.size()});
  auto d = decode_control_body(buf, 0, buf.size(), res.msg.refs);
  REQUIRE_MESSAGE(d, d.ec.message());
  return d.msg;
}

std::vector<term> atoms(const std::string& prefix, int n) {
  std::vector<term> v;
  for (int i = 0; i < n; ++i) v.emplace_back(atom(prefix + std::to_string(i)));
  return v;
}

// Two distinct atoms on one cache slot.
std::pair<atom, atom> slot_pair() {
  std::vector<int> seen(etf::atom_ref_table::used_slots, -1);
  for (int i = 0;; ++i) {
    atom a("slot_pair_" + std::to_string(i));
    const auto s = etf::atom_ref_table::slot_of(a);
    if (seen[s] >= 0) return {atom("slot_pair_" + std::to_string(seen[s])), a};
    seen[s] = i;
  }
}

std::size_t count_tag(const std::vector<std::uint8_t>& b, std::uint8_t tag) {
  std::size_t n = 0;
  for (std::size_t i = 0; i + 1 < b.size(); ++i) n += b[i] == tag;
  return n;
}

}  // namespace

TEST_CASE("atom_ref_table: ATOM_CACHE_REF by first-seen index, the same atom one index, a slot's second atom inline") {
  etf::atom_ref_table t;
  auto [x, y] = slot_pair();
  REQUIRE(etf::atom_ref_table::slot_of(x) == etf::atom_ref_table::slot_of(y));
  term v = term::tuple({term(atom("alpha")), term(x), term(atom("alpha")), term(y), term(atom("beta"))});
  std::vector<std::uint8_t> out;
  etf::encode(v, out, {.utf8_atoms = true, .version = false, .atom_refs = &t});
  // {alpha, x, alpha, y, beta}: 104,5, 82,0, 82,1, 82,0, y inline, 82,2
  REQUIRE(t.atoms().size() == 3);
  CHECK(t.atoms()[0] == atom("alpha"));
  CHECK(t.atoms()[1] == x);
  CHECK(t.atoms()[2] == atom("beta"));
  const std::string yt(y.text());
  std::vector<std::uint8_t> want{104, 5, 82, 0, 82, 1, 82, 0, 119, static_cast<std::uint8_t>(yt.size())};
  want.insert(want.end(), yt.begin(), yt.end());
  want.insert(want.end(), {82, 2});
  CHECK(out == want);
  // Decoded with the references, it is the term again.
  auto d = etf::decode(out, {.atom_cache_refs = t.atoms(), .expect_version = false});
  REQUIRE(d);
  CHECK(d.value == v);
  t.clear();
  CHECK(t.atoms().empty());
  CHECK(t.ref_for(y) == 0);  // the slot is free again
}

TEST_CASE("atom cache out: more than 255 atoms in one message: 255 references, the rest inline, decoded intact") {
  etf::atom_ref_table t;
  auto as = atoms("many_", 600);
  term payload = term::list(as);
  auto p = deferred(payload, t);
  CHECK(p.refs.size() == 255);
  atom_out_cache cache;
  inbound_reader r(true, {});
  auto pkt = wire(p, cache);
  CHECK(pkt[2] == std::byte{255});
  auto m = read_back(r, pkt);
  REQUIRE(m.payload);
  CHECK(*m.payload == payload);
  CHECK(std::get<send_msg>(m.body).to == pid_on("peer@h", 5));
}

TEST_CASE("atom cache out: the output cache across packets: NewCacheEntry once, then CachedAtomRef") {
  etf::atom_ref_table t;
  auto as = atoms("across_", 100);
  term payload = term::tuple({term::list(as), term(atom("across_0")), term::binary(std::vector<std::uint8_t>(10, 1))});
  atom_out_cache cache;
  inbound_reader r(true, {});
  // Neither cache holds its 2 048 entries before the first one is set (a connection that never uses it pays a
  // pointer, not 32 KiB).
  CHECK_FALSE(cache.allocated());
  CHECK_FALSE(r.cache().allocated());
  auto p1 = deferred(payload, t);
  const auto w1 = wire(p1, cache);
  CHECK(cache.allocated());
  auto p2 = deferred(payload, t);
  const auto w2 = wire(p2, cache);
  // Same body: the references' indices do not depend on the cache.
  CHECK(p1.bytes == p2.bytes);
  // About 102 references ('' of SEND, the pid's node, 100 atoms; fewer where two share a slot): all new in the
  // first header, all cached in the second.
  const std::size_t n = p1.refs.size();
  REQUIRE(n >= 90);
  REQUIRE(p2.refs.size() == n);
  const std::size_t flag_bytes = n / 2 + 1;
  for (std::size_t i = 0; i < n; ++i) {
    const auto f1 = (std::to_integer<unsigned>(w1[3 + i / 2]) >> ((i & 1) * 4)) & 0xf;
    const auto f2 = (std::to_integer<unsigned>(w2[3 + i / 2]) >> ((i & 1) * 4)) & 0xf;
    CHECK((f1 & 8) == 8);
    CHECK((f2 & 8) == 0);
    CHECK((f1 & 7) == (f2 & 7));  // the same segment
  }
  CHECK(p2.head.size() == 3 + flag_bytes + n);  // one index byte per reference, no texts
  CHECK(p1.head.size() > p2.head.size() + 800);
  // The reader resolves the second from what the first set.
  auto m1 = read_back(r, w1);
  CHECK(r.cache().allocated());
  auto m2 = read_back(r, w2);
  CHECK(*m1.payload == payload);
  CHECK(*m2.payload == payload);
  // A third message with one atom replaced on a slot: the slot's new atom is a new entry again.
  auto [x, y] = slot_pair();
  auto p3 = deferred(term::tuple({term(x)}), t);
  wire(p3, cache);
  auto p4 = deferred(term::tuple({term(y)}), t);
  auto w4 = wire(p4, cache);
  const std::size_t y_at = 2;  // '' , peer@h, y
  CHECK(((std::to_integer<unsigned>(w4[3 + y_at / 2]) >> ((y_at & 1) * 4)) & 8) == 8);
  auto p5 = deferred(term::tuple({term(x)}), t);
  auto w5 = wire(p5, cache);
  CHECK(((std::to_integer<unsigned>(w5[3 + y_at / 2]) >> ((y_at & 1) * 4)) & 8) == 8);  // y took x's slot
}

TEST_CASE("atom cache out: long atom texts set LongAtoms and 2-byte lengths") {
  etf::atom_ref_table t;
  std::string s;
  for (int i = 0; i < 200; ++i) s += "\xc3\xa9";  // 200 code points, 400 bytes
  term payload = term::tuple({term(atom(s)), term(atom("short"))});
  auto p = deferred(payload, t);
  atom_out_cache cache;
  inbound_reader r(true, {});
  auto w = wire(p, cache);
  const std::size_t n = p.refs.size();
  REQUIRE(n == 4);
  CHECK(((std::to_integer<unsigned>(w[3 + n / 2]) >> ((n & 1) * 4)) & 1) == 1);
  CHECK(*read_back(r, w).payload == payload);
}

TEST_CASE("atom cache out: a packet with references re-encoded for a peer without the flag (drop_atom_refs)") {
  etf::atom_ref_table t;
  auto as = atoms("drop_", 300);
  term payload = term::tuple({term::list(as), term::binary(std::vector<std::uint8_t>(100'000, 7))});
  control_message want{send_msg{pid_on("peer@h", 5)}, {}, payload};
  for (const bool header : {false, true}) {
    CAPTURE(header);
    auto p = deferred(payload, t);
    REQUIRE(!p.externals.empty());
    REQUIRE(drop_atom_refs(p, header));
    CHECK(!p.deferred_header);
    CHECK(p.refs.empty());
    CHECK(p.externals.empty());
    const auto plain = encode_control(want, header ? packet_form::header : packet_form::pass_through);
    CHECK(p.bytes.size() == plain.size());
    CHECK(std::memcmp(p.bytes.data(), plain.data(), plain.size()) == 0);
  }
}

TEST_CASE("atom cache out: a message over the fragment size with references: the first fragment carries the header") {
  etf::atom_ref_table t;
  auto as = atoms("frag_", 400);
  std::vector<term> big;
  for (int i = 0; i < 3000; ++i) big.push_back(term::tuple({as[i % 400], term(i)}));
  term payload = term::list(big);
  atom_out_cache cache;
  inbound_reader r(true, {});
  for (int round = 0; round < 2; ++round) {
    CAPTURE(round);
    auto p = deferred(payload, t);
    REQUIRE(p.bytes.size() > 3 * 4096);
    write_header(p.refs, cache, p.head);
    p.deferred_header = false;
    std::vector<std::span<const std::byte>> segs;
    p.segments(segs);
    fragment_stream fs(std::move(segs), p.head.size(), 11 + round, 4096);
    std::optional<control_message> got;
    std::size_t n = 0;
    while (!fs.done()) {
      std::vector<std::byte> head;
      std::vector<std::span<const std::byte>> data;
      fs.next(head, data);
      if (n == 0) {
        CHECK(head[1] == std::byte{69});
        CHECK(head[18] == std::byte{255});  // N after SeqId and FragId
      }
      for (auto s : data) head.insert(head.end(), s.begin(), s.end());
      ++n;
      auto res = r.feed(head);
      REQUIRE(res.st != inbound_reader::status::failed);
      if (res.st == inbound_reader::status::message) {
        auto buf = etf::shared_bytes::copy(
            {reinterpret_cast<const std::uint8_t*>(res.msg.bytes.data()), res.msg.bytes.size()});
        auto d = decode_control_body(buf, 0, buf.size(), res.msg.refs);
        REQUIRE(d);
        got = d.msg;
      }
    }
    CHECK(n > 3);
    REQUIRE(got);
    CHECK(*got->payload == payload);
  }
}

TEST_CASE("atom cache out: the encoder writes references for the control message too (REG_SEND, LINK)") {
  etf::atom_ref_table t;
  control_message m{reg_send_msg{pid_on("me@h", 3), atom("some_name")}, {}, term(atom("hello"))};
  std::vector<std::uint8_t> raw;
  encode_control(m, raw, packet_form::header, nullptr, 0, &t);
  // {6, From, '', some_name} then hello: me@h, '', some_name, hello
  REQUIRE(t.atoms().size() == 4);
  CHECK(t.atoms()[0] == atom("me@h"));
  CHECK(t.atoms()[1] == atom());
  CHECK(t.atoms()[2] == atom("some_name"));
  CHECK(t.atoms()[3] == atom("hello"));
  CHECK(count_tag(raw, 82) >= 4);
  CHECK(raw[0] == 104);  // no header, no 131: the connection writes the header
}
