// Feeds arbitrary bytes to the handshake state machine in both roles, split into arbitrary reads, answering its
// questions as the first byte says. Valid messages can be spliced in around the fuzz data so the fuzzer reaches
// the later steps (a digest cannot be guessed). Invariants: no crash, no hang, and a finished handshake only
// with a peer that proved the cookie.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dist/framing.hpp"
#include "dist/handshake.hpp"

using namespace cnode::dist;

namespace {

std::vector<std::byte> framed(std::string_view msg) {
  std::vector<std::byte> v{std::byte(msg.size() >> 8), std::byte(msg.size() & 0xff)};
  for (char c : msg) v.push_back(static_cast<std::byte>(c));
  return v;
}

std::string be32(std::uint32_t x) {
  return {static_cast<char>(x >> 24), static_cast<char>(x >> 16), static_cast<char>(x >> 8), static_cast<char>(x)};
}

std::string be64(std::uint64_t x) { return be32(static_cast<std::uint32_t>(x >> 32)) + be32(static_cast<std::uint32_t>(x)); }

std::string digest(std::uint32_t challenge, std::string_view cookie) {
  const auto d = gen_digest(challenge, cookie);
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

handshake_config config(std::string node) {
  handshake_config c;
  c.this_node = std::move(node);
  c.creation = 7;
  c.cookies.cookie = "fuzz";
  c.challenge = 1234;
  c.name_seed = 99;
  c.named_creation = 5;
  return c;
}

void answer(handshake& hs, std::uint8_t mode) {
  static constexpr accept_answer answers[] = {accept_answer::ok,    accept_answer::ok_simultaneous,
                                              accept_answer::nok,   accept_answer::alive,
                                              accept_answer::already_pending, accept_answer::not_allowed};
  for (int guard = 0; guard < 4 && hs.current() == handshake::state::asking; ++guard) {
    switch (hs.asked()) {
      case handshake::question::accept_pending: hs.answer_accept(answers[((mode >> 1) & 7) % 6]); break;
      case handshake::question::is_pending: hs.answer_is_pending((mode & 0x20) != 0); break;
      case handshake::question::wait_pending: hs.answer_wait_pending(); break;
      case handshake::question::none: return;
    }
  }
}

void feed_chunks(handshake& hs, std::span<const std::byte> data, std::size_t chunk, std::uint8_t mode) {
  while (!data.empty()) {
    const auto n = std::min(chunk, data.size());
    hs.feed(data.first(n));
    data = data.subspan(n);
    answer(hs, mode);
    (void)hs.take_output();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* raw, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = raw[0];
  const auto data = std::span<const std::byte>(reinterpret_cast<const std::byte*>(raw + 1), size - 1);
  static constexpr std::size_t chunks[] = {1, 3, 17, 1 << 20};
  const std::size_t chunk = chunks[mode >> 6];

  {  // acceptor
    auto hs = handshake::acceptor(config("b@h"));
    if (mode & 1) {
      const std::string name = "a@h";
      feed_chunks(hs, framed("N" + be64(default_flags(false)) + be32(9) + std::string("\0\3", 2) + name), chunk, mode);
    }
    feed_chunks(hs, data, chunk, mode);
    if (mode & 0x10) feed_chunks(hs, framed("r" + be32(77) + digest(1234, "fuzz")), chunk, mode);
    if (hs.current() == handshake::state::done && hs.peer().effective == 0) __builtin_trap();
    (void)hs.leftover();
  }
  {  // initiator
    auto hs = handshake::initiator(config("a@h"), "b@h");
    (void)hs.take_output();
    if (mode & 1) feed_chunks(hs, framed("sok"), chunk, mode);
    feed_chunks(hs, data, chunk, mode);
    if (mode & 0x10) {
      const std::string name = "b@h";
      feed_chunks(hs, framed("N" + be64(default_flags(false)) + be32(4321) + be32(8) + std::string("\0\3", 2) + name),
                  chunk, mode);
      feed_chunks(hs, framed("a" + digest(1234, "fuzz")), chunk, mode);
    }
    (void)hs.leftover();
  }
  {  // both roles inside TLS: 4-byte message headers (inet_tls_dist keeps {packet, 4})
    auto c = config("b@h");
    c.header_bytes = 4;
    auto acc = handshake::acceptor(c);
    feed_chunks(acc, data, chunk, mode);
    auto ic = config("a@h");
    ic.header_bytes = 4;
    auto ini = handshake::initiator(ic, "b@h");
    (void)ini.take_output();
    feed_chunks(ini, data, chunk, mode);
    if (acc.current() == handshake::state::done && acc.peer().effective == 0) __builtin_trap();
  }
  {  // the 4-byte framing after the handshake
    frame_buffer fb(1 << 16, 64);
    auto rest = data;
    std::span<const std::byte> pkt;
    while (!rest.empty()) {
      auto room = fb.prepare();
      const auto n = std::min({room.size(), rest.size(), chunk});
      std::copy_n(rest.begin(), n, room.begin());
      fb.commit(n);
      rest = rest.subspan(n);
      for (;;) {
        const auto r = fb.next(pkt);
        if (r == frame_buffer::result::need_more) break;
        if (r == frame_buffer::result::too_large) { rest = {}; break; }
      }
    }
  }
  return 0;
}
