// Packet reassembly and the tick rule, without sockets.
#include <doctest.h>

#include <vector>

#include "dist/framing.hpp"

using namespace cnode::dist;

namespace {
std::vector<std::byte> packet(std::size_t n, unsigned char fill) {
  std::vector<std::byte> v(4 + n, std::byte{fill});
  put_packet_header(v.data(), static_cast<std::uint32_t>(n));
  return v;
}
}  // namespace

TEST_CASE("frame_buffer: ticks, packets, split reads, oversize") {
  frame_buffer fb(1000, 16);
  std::vector<std::byte> stream;
  for (auto& p : {packet(0, 0), packet(3, 'a'), packet(40, 'b'), packet(0, 0), packet(1, 'c')})
    stream.insert(stream.end(), p.begin(), p.end());
  std::vector<std::size_t> seen;
  std::span<const std::byte> pkt;
  // Byte by byte through prepare/commit.
  for (auto b : stream) {
    auto room = fb.prepare();
    REQUIRE(!room.empty());
    room[0] = b;
    fb.commit(1);
    for (;;) {
      auto r = fb.next(pkt);
      if (r == frame_buffer::result::need_more) break;
      REQUIRE(r != frame_buffer::result::too_large);
      seen.push_back(r == frame_buffer::result::tick ? 0 : pkt.size());
    }
  }
  CHECK(seen == std::vector<std::size_t>{0, 3, 40, 0, 1});
  CHECK(fb.buffered() == 0);

  frame_buffer small(10);
  small.append(packet(11, 'x'));
  CHECK(small.next(pkt) == frame_buffer::result::too_large);
}

TEST_CASE("frame_buffer: a big packet is read straight into place, then the buffer shrinks back") {
  frame_buffer fb(1 << 20, 1024);
  const auto big = packet(300000, 'z');
  std::size_t off = 0;
  std::span<const std::byte> pkt;
  while (off < big.size()) {
    auto room = fb.prepare();
    const auto n = std::min(room.size(), big.size() - off);
    std::copy(big.begin() + off, big.begin() + off + n, room.begin());
    fb.commit(n);
    off += n;
  }
  REQUIRE(fb.next(pkt) == frame_buffer::result::packet);
  CHECK(pkt.size() == 300000);
  CHECK(pkt[299999] == std::byte{'z'});
  CHECK(fb.next(pkt) == frame_buffer::result::need_more);
  CHECK(fb.prepare().size() < 300000);
}

TEST_CASE("frame_buffer: an idle connection holds a few KiB; reads that fill the room double it up to read_size") {
  frame_buffer fb(1 << 20, 64 * 1024);
  CHECK(fb.capacity() <= frame_buffer::first_read + 4);
  CHECK(fb.prepare().size() >= frame_buffer::first_read);
  // Small packets, one per read: the room stays as it is.
  for (int i = 0; i < 100; ++i) {
    fb.append(packet(20, 'a'));
    std::span<const std::byte> pkt;
    REQUIRE(fb.next(pkt) == frame_buffer::result::packet);
  }
  CHECK(fb.capacity() <= frame_buffer::first_read + 4);
  // A stream: every read fills what was offered, so the offer doubles until read_size.
  std::size_t last = 0;
  for (int i = 0; i < 8; ++i) {
    auto room = fb.prepare();
    CHECK(room.size() >= last);
    last = room.size();
    std::fill(room.begin(), room.end(), std::byte{0});  // ticks: 4 zero bytes each
    fb.commit(room.size() - room.size() % 4);
    std::span<const std::byte> pkt;
    while (fb.next(pkt) == frame_buffer::result::tick) {
    }
  }
  CHECK(fb.prepare().size() >= 64 * 1024);
  CHECK(fb.capacity() <= 2 * (64 * 1024 + 4));
}

TEST_CASE("ticker: ticks when idle, times out after intensity silent intervals") {
  ticker t(4, false);
  std::uint64_t read = 0, written = 0;
  // Traffic both ways: nothing to do.
  CHECK(t.on_interval(read += 10, written += 1, true) == ticker::action::none);
  // We wrote nothing: tick. The peer keeps talking.
  CHECK(t.on_interval(read += 4, written, true) == ticker::action::send_tick);
  // A non-empty queue counts as writing.
  CHECK(t.on_interval(read += 4, written, false) == ticker::action::none);
  // Peer silent: three intervals are tolerated, the fourth is the end.
  CHECK(t.on_interval(read, written += 1, true) == ticker::action::none);
  CHECK(t.on_interval(read, written += 1, true) == ticker::action::none);
  CHECK(t.on_interval(read, written += 1, true) == ticker::action::none);
  CHECK(t.on_interval(read, written += 1, true) == ticker::action::timeout);

  // A hidden peer is ticked whenever it sent nothing, even if we wrote.
  ticker h(4, true);
  CHECK(h.on_interval(0, 1, true) == ticker::action::send_tick);
  CHECK(h.on_interval(5, 2, true) == ticker::action::none);
}
