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
