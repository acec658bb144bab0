#include <doctest.h>

#include <cstring>
#include <vector>

#include "dist/control.hpp"
#include "dist/fragment.hpp"
#include "etf/term.hpp"

using namespace cnode;
using namespace cnode::dist;

namespace {
std::vector<std::byte> bytes_of(const std::vector<std::uint8_t>& v) {
  std::vector<std::byte> out(v.size());
  std::memcpy(out.data(), v.data(), v.size());
  return out;
}
// A SEND of a binary of n bytes, in the 131,68,0 form.
std::vector<std::byte> big_send(std::size_t n, std::uint8_t fill) {
  auto to = etf::term::pid(etf::pid_value{etf::atom::from_utf8("a@h").value(), 1, 0, 0});
  std::vector<std::uint8_t> bin(n, fill);
  control_message m{send_msg{to}, {}, etf::term::binary(bin)};
  return bytes_of(encode_control(m, packet_form::header));
}
std::vector<std::vector<std::byte>> split(const std::vector<std::byte>& p, std::uint64_t seq, std::size_t chunk) {
  fragment_stream fs(p, header_length(p), seq, chunk);
  std::vector<std::vector<std::byte>> out;
  while (!fs.done()) {
    std::vector<std::byte> head;
    std::span<const std::byte> data;
    fs.next(head, data);
    head.insert(head.end(), data.begin(), data.end());
    out.push_back(std::move(head));
  }
  return out;
}
}  // namespace

TEST_CASE("fragments: split, interleave two sequences, reassemble, budget given back") {
  auto a = big_send(300'000, 1), b = big_send(200'000, 2);
  auto fa = split(a, 7, fragment_size), fb = split(b, 9, fragment_size);
  CHECK(fa.size() == 5);
  CHECK(fa[0].size() == 19 + fragment_size);  // as erts: 65 555-byte first packets
  auto budget = std::make_shared<partial_budget>(1 << 30);
  inbound_reader r(true, {}, budget);
  std::vector<std::vector<std::byte>> got;
  for (std::size_t i = 0; i < std::max(fa.size(), fb.size()); ++i) {
    for (auto* f : {&fa, &fb}) {
      if (i >= f->size()) continue;
      auto res = r.feed((*f)[i]);
      REQUIRE(res.st != inbound_reader::status::failed);
      if (res.st == inbound_reader::status::message) got.emplace_back(res.msg.bytes.begin(), res.msg.bytes.end());
    }
  }
  REQUIRE(got.size() == 2);
  CHECK(got[0] == std::vector<std::byte>(b.begin() + 3, b.end()));  // b is shorter: done first
  CHECK(got[1] == std::vector<std::byte>(a.begin() + 3, a.end()));
  CHECK(budget->held() == 0);
  auto d = decode_control_body(etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(got[1].data()),
                                                        got[1].size()}),
                               0, got[1].size(), {});
  REQUIRE(d);
  CHECK(d.msg.payload->bytes().size() == 300000);
}

TEST_CASE("fragments: bounds and faults") {
  auto a = big_send(300'000, 1);
  auto fa = split(a, 1, fragment_size);
  SUBCASE("message larger than max_message") {
    inbound_reader r(true, {.max_message = 100'000});
    CHECK(r.feed(fa[0]).st == inbound_reader::status::pending);
    auto res = r.feed(fa[1]);
    CHECK(res.st == inbound_reader::status::failed);
    CHECK(res.ec == fragment_error::message_too_large);
    CHECK(r.held_bytes() == 0);
  }
  SUBCASE("node budget crossed, given back when the connection goes") {
    auto budget = std::make_shared<partial_budget>(150'000);
    {
      inbound_reader r(true, {}, budget);
      CHECK(r.feed(fa[0]).st == inbound_reader::status::pending);
      CHECK(r.feed(fa[1]).st == inbound_reader::status::pending);
      auto res = r.feed(fa[2]);
      CHECK(res.ec == fragment_error::budget_exceeded);
      inbound_reader r2(true, {}, budget);
      auto fb = split(a, 2, fragment_size);
      CHECK(r2.feed(fb[0]).st == inbound_reader::status::pending);
      CHECK(budget->held() > 0);
    }
    CHECK(budget->held() == 0);  // lost mid-message: nothing left behind
  }
  SUBCASE("unknown sequence, duplicate start, fragment id out of order") {
    inbound_reader r(true, {});
    CHECK(r.feed(fa[1]).ec == fragment_error::unknown_sequence);
    inbound_reader r2(true, {});
    r2.feed(fa[0]);
    CHECK(r2.feed(fa[0]).ec == fragment_error::duplicate_sequence);
    inbound_reader r3(true, {});
    r3.feed(fa[0]);
    CHECK(r3.feed(fa[2]).ec == fragment_error::bad_fragment_id);
    CHECK(r3.held_bytes() == 0);
  }
  SUBCASE("truncated headers never read past the packet") {
    for (std::size_t n = 1; n < 19; ++n) {
      inbound_reader r(true, {});
      auto res = r.feed(std::span<const std::byte>(fa[0].data(), n));
      CHECK(res.st != inbound_reader::status::message);
    }
  }
}

TEST_CASE("packet forms: pass-through <-> 131,68,0") {
  auto h = big_send(10, 3);
  std::vector<std::byte> p, back;
  REQUIRE(to_pass_through(h, p));
  CHECK(p[0] == std::byte{112});
  REQUIRE(to_header_form(p, back));
  CHECK(back == h);
  CHECK(header_length(h) == 3);
}

TEST_CASE("packet forms: a pass-through packet ending in a bare 131 has no header form") {
  // Found by the dist_fragment fuzzer: UNLINK_ID_ACK takes no payload, and 'p',131,Control,131 is refused by the
  // decoder; dropping the 131 made it a valid header packet.
  auto from = etf::term::pid(etf::pid_value{etf::atom::from_utf8("a@h").value(), 1, 0, 0});
  control_message m{unlink_id_ack_msg{1, from, from}, {}, {}};
  auto p = bytes_of(encode_control(m));
  p.push_back(std::byte{131});
  auto pb = etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(p.data()), p.size()});
  CHECK_FALSE(decode_control(pb, 0, pb.size()));
  std::vector<std::byte> h{std::byte{7}};
  CHECK_FALSE(to_header_form(p, h));
  CHECK(h == std::vector<std::byte>{std::byte{7}});  // left alone
  p.pop_back();
  CHECK(to_header_form(p, h));
}

namespace {
// A first fragment of `data` bytes announcing `count` fragments, and continuing ones, built by hand (a peer may
// announce anything).
std::vector<std::byte> frag(bool first, std::uint64_t seq, std::uint64_t id, std::size_t data, std::uint8_t fill) {
  std::vector<std::byte> p{std::byte{131}, std::byte(first ? 69 : 70)};
  for (int i = 7; i >= 0; --i) p.push_back(std::byte((seq >> (i * 8)) & 0xff));
  for (int i = 7; i >= 0; --i) p.push_back(std::byte((id >> (i * 8)) & 0xff));
  if (first) p.push_back(std::byte{0});  // no atom cache references
  p.insert(p.end(), data, std::byte{fill});
  return p;
}
}  // namespace

TEST_CASE("reassembly: one buffer reserved at the announced size, shared with the receiver") {
  auto a = big_send(300'000, 5);
  auto fa = split(a, 3, fragment_size);
  REQUIRE(fa.size() == 5);
  auto budget = std::make_shared<partial_budget>(1 << 30);
  inbound_reader r(true, {}, budget);
  CHECK(r.feed(fa[0]).st == inbound_reader::status::pending);
  // 5 fragments of the first one's size: room for all of them at once, charged only as bytes arrive.
  const std::size_t first_data = fa[0].size() - 19;
  CHECK(r.reserved_bytes() == 5 * first_data);
  CHECK(budget->reserved() == 5 * first_data);
  CHECK(budget->held() == first_data + 128);
  for (std::size_t i = 1; i + 1 < fa.size(); ++i) CHECK(r.feed(fa[i]).st == inbound_reader::status::pending);
  auto res = r.feed(fa.back());
  REQUIRE(res.st == inbound_reader::status::message);
  REQUIRE(res.msg.shared.node() != nullptr);
  CHECK(reinterpret_cast<const std::uint8_t*>(res.msg.bytes.data()) == res.msg.shared.data());
  CHECK(res.msg.bytes.size() == res.msg.shared.size());
  CHECK(std::vector<std::byte>(res.msg.bytes.begin(), res.msg.bytes.end()) ==
        std::vector<std::byte>(a.begin() + 3, a.end()));
  CHECK(r.reserved_bytes() == 0);
  CHECK(budget->reserved() == 0);
  CHECK(budget->held() == 0);
  // The receiver keeps the buffer (a decoded binary refers into it) after the reader lets it go.
  etf::shared_bytes kept = res.msg.shared;
  auto d = decode_control_body(kept, 0, kept.size(), {});
  REQUIRE(d);
  r.message_done();
  CHECK(d.msg.payload->bytes().size() == 300'000);
  CHECK(d.msg.payload->bytes()[299'999] == 5);
}

TEST_CASE("reassembly: what a peer announces is reserved within --max-message-bytes and the node's bound") {
  SUBCASE("a huge announced count reserves at most max_message, per reader in all") {
    auto budget = std::make_shared<partial_budget>(1 << 30);
    inbound_reader r(true, {.max_message = 1'000'000}, budget);
    CHECK(r.feed(frag(true, 1, 1'000'000'000'000ull, 10, 1)).st == inbound_reader::status::pending);
    CHECK(r.reserved_bytes() == 1'000'000);
    CHECK(budget->held() == 10 + 128);  // the budget is charged with what arrived, not what was announced
    // A second sequence finds this reader's reservations at their bound: it grows as its bytes come.
    CHECK(r.feed(frag(true, 2, 50, 1000, 2)).st == inbound_reader::status::pending);
    CHECK(r.reserved_bytes() == 1'000'000);
    CHECK(budget->reserved() == 1'000'000);
    // Still one message each, whatever was reserved.
    CHECK(r.feed(frag(false, 2, 49, 1000, 2)).st == inbound_reader::status::pending);
    r.clear();
    CHECK(r.reserved_bytes() == 0);
    CHECK(budget->reserved() == 0);
    CHECK(budget->held() == 0);
  }
  SUBCASE("an overflowing size times count is capped, not wrapped") {
    inbound_reader r(true, {.max_message = 4'000'000});
    CHECK(r.feed(frag(true, 1, ~0ull, 3000, 1)).st == inbound_reader::status::pending);
    CHECK(r.reserved_bytes() == 4'000'000);
  }
  SUBCASE("the node's bound on reservations is the budget's limit, shared by every connection") {
    auto budget = std::make_shared<partial_budget>(500'000);
    inbound_reader r1(true, {.max_message = 400'000}, budget), r2(true, {.max_message = 400'000}, budget);
    CHECK(r1.feed(frag(true, 1, 1000, 300, 1)).st == inbound_reader::status::pending);
    CHECK(r1.reserved_bytes() == 300'000);
    CHECK(r2.feed(frag(true, 1, 1000, 300, 1)).st == inbound_reader::status::pending);
    CHECK(r2.reserved_bytes() == 0);  // it would cross 500 000: no reservation, and the message still comes
    for (std::uint64_t id = 999; id >= 1; --id) {
      auto res = r2.feed(frag(false, 1, id, 300, 1));
      REQUIRE(res.st == (id == 1 ? inbound_reader::status::message : inbound_reader::status::pending));
      if (id == 1) CHECK(res.msg.bytes.size() == 300'000);
    }
    CHECK(budget->reserved() == 300'000);
  }
  SUBCASE("a message larger than announced still reassembles; a lost connection gives everything back") {
    auto budget = std::make_shared<partial_budget>(1 << 30);
    inbound_reader r(true, {}, budget);
    CHECK(r.feed(frag(true, 1, 3, 10, 1)).st == inbound_reader::status::pending);
    CHECK(r.reserved_bytes() == 30);
    CHECK(r.feed(frag(false, 1, 2, 100'000, 2)).st == inbound_reader::status::pending);
    auto res = r.feed(frag(false, 1, 1, 100'000, 3));
    REQUIRE(res.st == inbound_reader::status::message);
    CHECK(res.msg.bytes.size() == 200'010);
    CHECK(res.msg.bytes[200'009] == std::byte{3});
    CHECK(r.feed(frag(true, 2, 3, 10, 1)).st == inbound_reader::status::pending);
    CHECK(budget->reserved() == 30);
    r.clear();
    CHECK(budget->reserved() == 0);
    CHECK(budget->held() == 0);
  }
}

TEST_CASE("out_packet: segments and fragments of a packet whose binaries were left out") {
  auto to = etf::term::pid(etf::pid_value{etf::atom::from_utf8("a@h").value(), 1, 0, 0});
  std::vector<std::uint8_t> b1(200'000), b2(90'000);
  for (std::size_t i = 0; i < b1.size(); ++i) b1[i] = static_cast<std::uint8_t>(i * 7);
  for (std::size_t i = 0; i < b2.size(); ++i) b2[i] = static_cast<std::uint8_t>(i * 13);
  control_message m{send_msg{to}, {},
                    etf::term::tuple({etf::term::binary(b1), etf::term(1), etf::term::binary(b2)})};
  const auto plain = bytes_of(encode_control(m, packet_form::header));
  std::vector<std::uint8_t> raw;
  out_packet p;
  encode_control(m, raw, packet_form::header, &p.externals, 64 * 1024);
  p.bytes = bytes_of(raw);
  REQUIRE(p.externals.size() == 2);
  CHECK(p.size() == plain.size());
  CHECK(p.bytes.size() + 290'000 == plain.size());
  std::vector<std::span<const std::byte>> segs;
  p.segments(segs);
  std::vector<std::byte> joined;
  for (auto s : segs) joined.insert(joined.end(), s.begin(), s.end());
  CHECK(joined == plain);
  // Fragments over the segments are the fragments of the plain packet.
  fragment_stream fs(segs, header_length(p.bytes), 5, fragment_size);
  auto want = split(plain, 5, fragment_size);
  std::size_t i = 0;
  while (!fs.done()) {
    std::vector<std::byte> head;
    std::vector<std::span<const std::byte>> data;
    fs.next(head, data);
    for (auto s : data) head.insert(head.end(), s.begin(), s.end());
    REQUIRE(i < want.size());
    CHECK(head == want[i]);
    ++i;
  }
  CHECK(i == want.size());
  out_packet flat = p;
  flat.flatten();
  CHECK(flat.externals.empty());
  CHECK(flat.bytes == plain);
}
