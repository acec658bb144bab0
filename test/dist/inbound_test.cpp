// The connection's inbound path (dist/inbound.hpp): framing, ticks, headers and fragments from arbitrary reads.
#include <doctest.h>

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
std::vector<std::byte> framed(std::initializer_list<std::vector<std::byte>> packets) {
  std::vector<std::byte> out;
  for (const auto& p : packets) {
    std::byte h[4];
    put_packet_header(h, static_cast<std::uint32_t>(p.size()));
    out.insert(out.end(), h, h + 4);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}
std::vector<std::byte> bytes_of(const std::vector<std::uint8_t>& v) {
  std::vector<std::byte> out(v.size());
  std::memcpy(out.data(), v.data(), v.size());
  return out;
}
std::vector<std::byte> a_send(packet_form form) {
  auto to = etf::term::pid(etf::pid_value{etf::atom::from_utf8("a@h").value(), 1, 0, 0});
  control_message m{send_msg{to}, {}, etf::term(etf::atom::from_utf8("hello").value())};
  return bytes_of(encode_control(m, form));
}
}  // namespace

TEST_CASE("inbound path: ticks and messages from one-byte reads, in either form") {
  for (bool headered : {false, true}) {
    CAPTURE(headered);
    inbound_path in(headered ? dflag::fragments : 0, 1024);
    CHECK(in.headered() == headered);
    auto stream = framed({{}, a_send(headered ? packet_form::header : packet_form::pass_through), {}});
    int ticks = 0, messages = 0;
    for (std::byte b : stream) {
      in.append({&b, 1});
      for (auto ev = in.next(); ev != inbound_path::event::need_more; ev = in.next()) {
        REQUIRE(ev != inbound_path::event::failed);
        if (ev == inbound_path::event::tick) ++ticks;
        if (ev == inbound_path::event::message) {
          ++messages;
          CHECK(in.message().headered == headered);
          in.message_done();
        }
      }
    }
    CHECK(ticks == 2);
    CHECK(messages == 1);
    CHECK(in.packets() == 1);
    CHECK(in.ticks() == 2);
    CHECK(in.bytes() == stream.size());
  }
}

TEST_CASE("inbound path: a failure has its reason, nothing comes after it, and partial bytes go back") {
  auto budget = std::make_shared<partial_budget>(1 << 20);
  inbound_path in(dflag::fragments, 1 << 20, budget);
  auto whole = a_send(packet_form::header);
  fragment_stream fs(whole, header_length(whole), 9, 4);
  std::vector<std::byte> first;
  std::span<const std::byte> data;
  fs.next(first, data);
  first.insert(first.end(), data.begin(), data.end());
  // A first fragment, then a continuing fragment of a sequence never started.
  std::vector<std::byte> stray{std::byte{131}, std::byte{70}};
  stray.resize(18 + 3);
  stray[9] = std::byte{42};
  stray[17] = std::byte{1};
  in.append(framed({first, stray, a_send(packet_form::header)}));
  CHECK(in.next() == inbound_path::event::failed);
  CHECK(in.error() == fragment_error::unknown_sequence);
  CHECK(in.next() == inbound_path::event::failed);
  CHECK(in.partial_bytes() == 0);
  CHECK(budget->held() == 0);

  inbound_path big(0, 16);
  std::vector<std::byte> p(17, std::byte{112});
  big.append(framed({p}));
  CHECK(big.next() == inbound_path::event::failed);
  CHECK(big.error() == error::packet_too_large);
  CHECK(reason_name(big.error()) == "packet_too_large");
}

namespace {
std::vector<std::byte> big_send(std::size_t n, std::uint8_t fill) {
  auto to = etf::term::pid(etf::pid_value{etf::atom::from_utf8("a@h").value(), 1, 0, 0});
  std::vector<std::uint8_t> bin(n);
  for (std::size_t i = 0; i < n; ++i) bin[i] = static_cast<std::uint8_t>(fill + i * 7);
  control_message m{send_msg{to}, {}, etf::term::binary(bin)};
  return bytes_of(encode_control(m, packet_form::header));
}
std::vector<std::vector<std::byte>> split(const std::vector<std::byte>& p, std::uint64_t seq) {
  fragment_stream fs(p, header_length(p), seq, fragment_size);
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
// The body (control term and payload after the header) of a 131,68,0 packet.
std::vector<std::byte> body_of(const std::vector<std::byte>& p) {
  return {p.begin() + static_cast<std::ptrdiff_t>(header_length(p)), p.end()};
}
}  // namespace

TEST_CASE("inbound path: big fragments read straight into their message's buffer, interleaved, from any read size") {
  // Two big messages (1 MiB and 300 KiB) in fragments, interleaved, with small whole messages and ticks between.
  const auto a = big_send(1 << 20, 1), b = big_send(300 << 10, 2), small = a_send(packet_form::header);
  const auto fa = split(a, 7), fb = split(b, 9);
  std::vector<std::vector<std::byte>> packets;
  for (std::size_t i = 0; i < std::max(fa.size(), fb.size()); ++i) {
    if (i < fa.size()) packets.push_back(fa[i]);
    if (i % 3 == 0) packets.push_back(small);
    if (i < fb.size()) packets.push_back(fb[i]);
    if (i % 5 == 0) packets.push_back({});
  }
  std::vector<std::byte> stream;
  for (const auto& p : packets) {
    auto f = framed({p});
    stream.insert(stream.end(), f.begin(), f.end());
  }
  for (std::size_t chunk : {std::size_t{1}, std::size_t{13}, std::size_t{4096}, std::size_t{70000}, stream.size()}) {
    CAPTURE(chunk);
    auto budget = std::make_shared<partial_budget>(4 << 20);
    inbound_path in(dflag::fragments, 2 << 20, budget);
    std::vector<std::vector<std::byte>> got;
    std::size_t fed = 0, ticks = 0;
    while (fed < stream.size()) {
      // As the socket does: at most what prepare offers, at most what has "arrived".
      auto room = in.prepare();
      REQUIRE(!room.empty());
      const std::size_t n = std::min({room.size(), chunk, stream.size() - fed});
      std::memcpy(room.data(), stream.data() + fed, n);
      in.commit(n);
      fed += n;
      for (auto ev = in.next(); ev != inbound_path::event::need_more; ev = in.next()) {
        REQUIRE(ev != inbound_path::event::failed);
        if (ev == inbound_path::event::tick) {
          ++ticks;
          continue;
        }
        got.emplace_back(in.message().bytes.begin(), in.message().bytes.end());
        in.message_done();
      }
      CHECK(budget->held() == in.partial_bytes());
    }
    // Every message, whole, in the order its last packet came.
    std::vector<std::vector<std::byte>> want;
    for (std::size_t i = 0; i < std::max(fa.size(), fb.size()); ++i) {
      if (i + 1 == fa.size()) want.push_back(body_of(a));
      if (i % 3 == 0) want.push_back(body_of(small));
      if (i + 1 == fb.size()) want.push_back(body_of(b));
    }
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == want[i]);
    CHECK(in.packets() == packets.size() - ticks);
    CHECK(in.fragment_packets() == fa.size() + fb.size());
    CHECK(in.bytes() == stream.size());
    // Reads of a fragment or more: nearly every continuation fragment went straight into place.
    if (chunk >= 4096) CHECK(in.direct_packets() >= (fa.size() + fb.size()) / 2);
    CHECK(in.direct_packets() < fa.size() + fb.size());  // never a first fragment
    CHECK(in.partial_bytes() == 0);
    CHECK(budget->held() == 0);
  }
}

TEST_CASE("inbound path: a connection lost in the middle of a direct read, and a wrong fragment id where one would start") {
  const auto a = big_send(512 << 10, 3);
  const auto fa = split(a, 4);
  std::vector<std::byte> stream;
  for (const auto& p : fa) {
    auto f = framed({p});
    stream.insert(stream.end(), f.begin(), f.end());
  }
  {
    auto budget = std::make_shared<partial_budget>(4 << 20);
    inbound_path in(dflag::fragments, 2 << 20, budget);
    // The first fragment and half of the third.
    const std::size_t upto = 2 * (4 + fa[0].size()) + (4 + fa[2].size()) / 2;
    std::size_t fed = 0;
    while (fed < upto) {
      auto room = in.prepare();
      const std::size_t n = std::min(room.size(), upto - fed);
      std::memcpy(room.data(), stream.data() + fed, n);
      in.commit(n);
      fed += n;
      CHECK(in.next() == inbound_path::event::need_more);
    }
    CHECK(in.direct_packets() >= 1);
    CHECK(in.partial_bytes() > 0);
    in.clear();
    CHECK(in.partial_bytes() == 0);
    CHECK(in.sequences() == 0);
    CHECK(budget->held() == 0);
    // What comes next goes through the framing again: the whole message, sent anew, arrives whole.
    std::size_t again = 0, messages = 0;
    while (again < stream.size()) {
      auto room = in.prepare();
      const std::size_t n = std::min(room.size(), stream.size() - again);
      std::memcpy(room.data(), stream.data() + again, n);
      in.commit(n);
      again += n;
      for (auto ev = in.next(); ev != inbound_path::event::need_more; ev = in.next()) {
        REQUIRE(ev == inbound_path::event::message);
        CHECK(std::vector<std::byte>(in.message().bytes.begin(), in.message().bytes.end()) == body_of(a));
        in.message_done();
        ++messages;
      }
    }
    CHECK(messages == 1);
    CHECK(budget->held() == 0);
  }
  {
    // The second fragment with FragId 1 too early: refused as feed refuses it, by the framing's path.
    auto bad = fa[1];
    std::memset(bad.data() + 10, 0, 8);
    bad[17] = std::byte{1};
    auto s = framed({fa[0], bad});
    inbound_path in(dflag::fragments, 2 << 20);
    std::size_t fed = 0;
    auto ev = inbound_path::event::need_more;
    while (fed < s.size() && ev == inbound_path::event::need_more) {
      auto room = in.prepare();
      const std::size_t n = std::min(room.size(), s.size() - fed);
      std::memcpy(room.data(), s.data() + fed, n);
      in.commit(n);
      fed += n;
      ev = in.next();
    }
    CHECK(ev == inbound_path::event::failed);
    CHECK(in.error() == fragment_error::bad_fragment_id);
    CHECK(in.direct_packets() == 0);
  }
}
