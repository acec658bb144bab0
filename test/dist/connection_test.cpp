// The Asio side over real loopback sockets with short times: handshake driver, framing, ticks, tick timeout,
// the outbound limit, close.
#include <doctest.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <cstring>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "dist/connection.hpp"
#include "dist/handshake_driver.hpp"

using namespace cnode::dist;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct socket_pair {
  asio::io_context& io;
  tcp::socket a, b;
  explicit socket_pair(asio::io_context& ioc) : io(ioc), a(ioc), b(ioc) {
    tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    a.connect(acc.local_endpoint());
    b = acc.accept();
  }
};

bool run_until(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = clock_type::now() + limit;
  while (!done() && clock_type::now() < deadline) {
    io.restart();
    io.run_for(5ms);
  }
  return done();
}

struct recorder : connection_handler {
  std::vector<std::vector<std::byte>> packets;
  std::optional<std::error_code> down;
  void on_packet(connection&, std::span<const std::byte> p) override { packets.emplace_back(p.begin(), p.end()); }
  void on_down(connection&, std::error_code reason) override { down = reason; }
};

std::vector<std::byte> payload(std::size_t n, unsigned char fill) { return std::vector<std::byte>(n, std::byte{fill}); }

peer_info visible_peer(std::string node) {
  peer_info p;
  p.node = std::move(node);
  p.effective = default_flags(false);
  return p;
}

struct simple_policy : handshake_policy {
  accept_answer answer = accept_answer::ok;
  accept_answer accept_pending(std::string_view, bool, bool) override { return answer; }
  bool is_pending(std::string_view) override { return true; }
  asio::awaitable<void> wait_pending(std::string_view) override { co_return; }
};

handshake_config cfg(std::string node, std::string cookie) {
  handshake_config c;
  c.this_node = std::move(node);
  c.creation = 42;
  c.cookies.cookie = std::move(cookie);
  return c;
}

}  // namespace

TEST_CASE("handshake driver: accept and connect over loopback, then packets flow both ways") {
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const auto port = acc.local_endpoint().port();
  simple_policy policy;
  std::optional<handshake_result> acc_r, ini_r;
  tcp::socket acc_sock(io), ini_sock(io);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    acc_sock = co_await acc.async_accept(asio::use_awaitable);
    acc_r = co_await accept_handshake(acc_sock, cfg("b@localhost", "k"), policy, 2000ms);
  }, asio::detached);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    ini_r = co_await connect_handshake(ini_sock, "127.0.0.1", port, "b@localhost", cfg("a@localhost", "k"), policy,
                                       2000ms);
  }, asio::detached);
  REQUIRE(run_until(io, [&] { return acc_r && ini_r; }, 5000ms));
  REQUIRE_FALSE(acc_r->ec);
  REQUIRE_FALSE(ini_r->ec);
  CHECK(acc_r->peer.node == "a@localhost");
  CHECK(ini_r->peer.node == "b@localhost");
  CHECK(ini_r->peer.creation == 42);

  connection_options opt;
  opt.net_ticktime = 400ms;
  auto ha = std::make_shared<recorder>(), hb = std::make_shared<recorder>();
  auto ca = connection::create(std::move(ini_sock), ini_r->peer, "a@localhost", opt, ha, ini_r->leftover);
  auto cb = connection::create(std::move(acc_sock), acc_r->peer, "b@localhost", opt, hb, acc_r->leftover);
  ca->start();
  cb->start();
  bool sent = false;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    for (int i = 1; i <= 50; ++i) CHECK_FALSE(co_await ca->send(payload(static_cast<std::size_t>(i), 'x')));
    std::vector<std::byte> p = payload(7, 'y');
    CHECK(cb->try_send(p));
    sent = true;
  }, asio::detached);
  REQUIRE(run_until(io, [&] { return sent && hb->packets.size() == 50 && ha->packets.size() == 1; }, 3000ms));
  for (std::size_t i = 0; i < 50; ++i) CHECK(hb->packets[i].size() == i + 1);
  // Idle for well over net_ticktime: ticks keep both ends up.
  run_until(io, [] { return false; }, 1200ms);
  CHECK(ca->is_up());
  CHECK(cb->is_up());
  CHECK(ca->stats().ticks_out + cb->stats().ticks_out >= 2);
  CHECK(ca->stats().packets_out == 50);
  CHECK(cb->stats().packets_in == 50);
  // An explicit close: disconnected here, connection_closed there.
  ca->close();
  REQUIRE(run_until(io, [&] { return ha->down && hb->down; }, 2000ms));
  CHECK(*ha->down == error::disconnected);
  CHECK(*hb->down == error::connection_closed);
  CHECK_FALSE(ca->is_up());
}

TEST_CASE("handshake driver: a stalled peer is dropped after net_setuptime; wrong cookie and refusal reported") {
  asio::io_context io;
  simple_policy policy;
  SUBCASE("silent initiator") {
    socket_pair sp(io);
    std::optional<handshake_result> r;
    const auto t0 = clock_type::now();
    asio::co_spawn(io, [&]() -> asio::awaitable<void> { r = co_await accept_handshake(sp.b, cfg("b@h", "k"), policy, 300ms); },
                   asio::detached);
    REQUIRE(run_until(io, [&] { return r.has_value(); }, 3000ms));
    CHECK(r->ec == error::setup_timeout);
    CHECK(clock_type::now() - t0 < 1000ms);
  }
  SUBCASE("half a message") {
    socket_pair sp(io);
    asio::write(sp.a, asio::buffer("\x00\x20N\x00\x00", 5));
    std::optional<handshake_result> r;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> { r = co_await accept_handshake(sp.b, cfg("b@h", "k"), policy, 300ms); },
                   asio::detached);
    REQUIRE(run_until(io, [&] { return r.has_value(); }, 3000ms));
    CHECK(r->ec == error::setup_timeout);
  }
  SUBCASE("peer closes mid-handshake") {
    socket_pair sp(io);
    asio::write(sp.a, asio::buffer("\x00\x20N", 3));
    sp.a.close();
    std::optional<handshake_result> r;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> { r = co_await accept_handshake(sp.b, cfg("b@h", "k"), policy, 2000ms); },
                   asio::detached);
    REQUIRE(run_until(io, [&] { return r.has_value(); }, 3000ms));
    CHECK(r->ec == error::connection_closed);
  }
  SUBCASE("wrong cookie, both sides") {
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    std::optional<handshake_result> ar, ir;
    tcp::socket as(io), is(io);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      as = co_await acc.async_accept(asio::use_awaitable);
      ar = co_await accept_handshake(as, cfg("b@h", "one"), policy, 1000ms);
      as.close();  // what the node does with a failed handshake
    }, asio::detached);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      ir = co_await connect_handshake(is, "127.0.0.1", acc.local_endpoint().port(), "b@h", cfg("a@h", "two"), policy, 1000ms);
    }, asio::detached);
    REQUIRE(run_until(io, [&] { return ar && ir; }, 3000ms));
    CHECK(ar->ec == error::bad_cookie);
    CHECK(ar->detail == "Connection attempt from node a@h rejected. Invalid challenge reply.");
    CHECK(ir->ec == error::connection_closed);
  }
  SUBCASE("not_allowed is written before the failure is reported") {
    policy.answer = accept_answer::not_allowed;
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    std::optional<handshake_result> ar, ir;
    tcp::socket as(io), is(io);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      as = co_await acc.async_accept(asio::use_awaitable);
      ar = co_await accept_handshake(as, cfg("b@h", "k"), policy, 1000ms);
    }, asio::detached);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      ir = co_await connect_handshake(is, "127.0.0.1", acc.local_endpoint().port(), "b@h", cfg("a@h", "k"), policy, 1000ms);
    }, asio::detached);
    REQUIRE(run_until(io, [&] { return ar && ir; }, 3000ms));
    CHECK(ar->ec == error::not_allowed);
    CHECK(ir->ec == error::not_allowed);
  }
}

TEST_CASE("connection: a silent peer is declared down with net_tick_timeout within net_ticktime") {
  asio::io_context io;
  socket_pair sp(io);
  connection_options opt;
  opt.net_ticktime = 400ms;
  auto h = std::make_shared<recorder>();
  auto c = connection::create(std::move(sp.a), visible_peer("peer@h"), "me@h", opt, h);
  const auto t0 = clock_type::now();
  c->start();
  REQUIRE(run_until(io, [&] { return h->down.has_value(); }, 3000ms));
  const auto took = clock_type::now() - t0;
  CHECK(*h->down == error::net_tick_timeout);
  CHECK(reason_name(*h->down) == "net_tick_timeout");
  CHECK(took >= 400ms);
  CHECK(took < 700ms);  // intensity + 1 intervals at most, plus scheduling
}

TEST_CASE("connection: ticks are answered once, received packets in order, leftover first") {
  asio::io_context io;
  socket_pair sp(io);
  connection_options opt;
  opt.net_ticktime = 60s;  // our own ticker stays out of the way
  auto h = std::make_shared<recorder>();
  std::vector<std::byte> leftover = {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}, std::byte{'L'}};
  auto c = connection::create(std::move(sp.a), visible_peer("peer@h"), "me@h", opt, h, leftover);
  c->start();
  // A tick then a packet from the raw peer.
  asio::write(sp.b, asio::buffer(std::string("\0\0\0\0\0\0\0\2PQ", 10)));
  REQUIRE(run_until(io, [&] { return h->packets.size() == 2; }, 2000ms));
  CHECK(h->packets[0] == std::vector<std::byte>{std::byte{'L'}});
  CHECK(h->packets[1].size() == 2);
  // The tick was answered with one tick.
  std::array<std::byte, 4> got{};
  std::size_t n = 0;
  sp.b.non_blocking(true);
  run_until(io, [&] {
    boost::system::error_code ec;
    n += sp.b.read_some(asio::buffer(got.data() + n, 4 - n), ec);
    return n == 4;
  }, 2000ms);
  CHECK(n == 4);
  CHECK(got == std::array<std::byte, 4>{});
  CHECK(c->stats().ticks_in == 1);
  CHECK(c->stats().ticks_out == 1);
  c->close();
  run_until(io, [&] { return h->down.has_value(); }, 1000ms);
}

TEST_CASE("connection: a packet over max_packet closes the connection") {
  asio::io_context io;
  socket_pair sp(io);
  connection_options opt;
  opt.max_packet = 1000;
  auto h = std::make_shared<recorder>();
  auto c = connection::create(std::move(sp.a), visible_peer("peer@h"), "me@h", opt, h);
  c->start();
  asio::write(sp.b, asio::buffer(std::string("\x00\x01\x00\x00", 4)));
  REQUIRE(run_until(io, [&] { return h->down.has_value(); }, 2000ms));
  CHECK(*h->down == error::packet_too_large);
}

TEST_CASE("connection: senders wait past the outbound limit, never an unbounded queue") {
  asio::io_context io;
  socket_pair sp(io);
  // Small socket buffers so that the peer not reading fills them quickly.
  sp.a.set_option(asio::socket_base::send_buffer_size(16 * 1024));
  sp.b.set_option(asio::socket_base::receive_buffer_size(16 * 1024));
  connection_options opt;
  opt.outbound_limit = 256 * 1024;
  auto h = std::make_shared<recorder>();
  auto c = connection::create(std::move(sp.a), visible_peer("peer@h"), "me@h", opt, h);
  c->start();
  constexpr int total = 200;  // 200 x 64 KiB = 12.5 MiB, far more than the limit and the socket buffers
  int sent = 0;
  std::size_t max_queued = 0;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < total; ++i) {
      REQUIRE_FALSE(co_await c->send(payload(64 * 1024, static_cast<unsigned char>(i))));
      ++sent;
      max_queued = std::max(max_queued, c->stats().queued_bytes);
    }
  }, asio::detached);
  run_until(io, [&] { return false; }, 300ms);
  CHECK(sent < total);  // the sender is suspended
  CHECK(c->stats().waiting_senders == 1);
  CHECK(c->stats().queued_bytes <= opt.outbound_limit + 64 * 1024);
  std::vector<std::byte> p = payload(10, 'q');
  CHECK_FALSE(c->try_send(p));  // busy
  // Now the peer reads: every packet arrives, the sender finishes.
  std::size_t received = 0;
  std::vector<std::byte> sink(256 * 1024);
  sp.b.non_blocking(true);
  REQUIRE(run_until(io, [&] {
    boost::system::error_code ec;
    received += sp.b.read_some(asio::buffer(sink), ec);
    return sent == total && received == static_cast<std::size_t>(total) * (4 + 64 * 1024);
  }, 20000ms));
  CHECK(max_queued <= opt.outbound_limit + 64 * 1024);
  CHECK(c->stats().packets_out == total);
  // A waiting sender learns about the connection going down.
  c->close();
  run_until(io, [&] { return h->down.has_value(); }, 1000ms);
  std::optional<std::error_code> late;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> { late = co_await c->send(payload(1, 'z')); }, asio::detached);
  REQUIRE(run_until(io, [&] { return late.has_value(); }, 1000ms));
  CHECK(*late == error::disconnected);
}

TEST_CASE("connection: a waiting sender can be cancelled (e.g. by a timeout)") {
  asio::io_context io;
  socket_pair sp(io);
  sp.a.set_option(asio::socket_base::send_buffer_size(16 * 1024));
  sp.b.set_option(asio::socket_base::receive_buffer_size(16 * 1024));
  connection_options opt;
  opt.outbound_limit = 64 * 1024;
  auto h = std::make_shared<recorder>();
  auto c = connection::create(std::move(sp.a), visible_peer("peer@h"), "me@h", opt, h);
  c->start();
  std::optional<bool> timed_out;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    for (;;) {  // fill until a send has to wait, then give up on it after 100 ms
      asio::steady_timer t(io, 100ms);
      auto r = co_await (c->async_send(payload(32 * 1024, 'w'), asio::as_tuple(asio::use_awaitable)) ||
                         t.async_wait(asio::as_tuple(asio::use_awaitable)));
      if (r.index() == 1) {
        timed_out = true;
        co_return;
      }
    }
  }, asio::detached);
  REQUIRE(run_until(io, [&] { return timed_out.has_value(); }, 5000ms));
  run_until(io, [] { return false; }, 50ms);
  CHECK(c->stats().waiting_senders == 0);  // the cancelled sender left the line
  CHECK(c->is_up());
  c->close();
  run_until(io, [&] { return h->down.has_value(); }, 1000ms);
}

TEST_CASE("connection: many senders on several threads, order kept per sender") {
  asio::io_context io;
  socket_pair sp(io);
  connection_options opt;
  opt.outbound_limit = 32 * 1024;  // small, so that senders really wait and get admitted in turn
  struct counter : connection_handler {
    std::mutex mu;
    std::map<int, int> last;  // sender -> last sequence number seen
    int received = 0;
    bool in_order = true;
    std::optional<std::error_code> down;
    void on_packet(connection&, std::span<const std::byte> p) override {
      std::lock_guard lk(mu);
      const int sender = std::to_integer<int>(p[0]);
      const int seq = (std::to_integer<int>(p[1]) << 8) | std::to_integer<int>(p[2]);
      if (last.count(sender) && last[sender] + 1 != seq) in_order = false;
      last[sender] = seq;
      ++received;
    }
    void on_down(connection&, std::error_code r) override {
      std::lock_guard lk(mu);
      down = r;
    }
  };
  auto hs = std::make_shared<recorder>();
  auto hr = std::make_shared<counter>();
  auto sender_conn = connection::create(std::move(sp.a), visible_peer("peer@h"), "me@h", opt, hs);
  auto receiver_conn = connection::create(std::move(sp.b), visible_peer("me@h"), "peer@h", opt, hr);
  sender_conn->start();
  receiver_conn->start();
  constexpr int senders = 6, per_sender = 500;
  std::atomic<int> finished{0};
  for (int s = 0; s < senders; ++s) {
    asio::co_spawn(asio::make_strand(io), [&, s]() -> asio::awaitable<void> {
      for (int i = 0; i < per_sender; ++i) {
        std::vector<std::byte> p(1000, std::byte{0});
        p[0] = std::byte(s);
        p[1] = std::byte(i >> 8);
        p[2] = std::byte(i & 0xff);
        if (co_await sender_conn->send(std::move(p))) co_return;
      }
      ++finished;
    }, asio::detached);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back([&] { io.run_for(10s); });
  const auto deadline = clock_type::now() + 10s;
  for (;;) {
    {
      std::lock_guard lk(hr->mu);
      if (hr->received == senders * per_sender) break;
    }
    if (clock_type::now() > deadline) break;
    std::this_thread::sleep_for(5ms);  // polling the worker threads' progress
  }
  {
    std::lock_guard lk(hr->mu);
    CHECK(hr->received == senders * per_sender);
    CHECK(hr->in_order);
  }
  CHECK(finished == senders);
  sender_conn->close();
  receiver_conn->close();
  io.stop();
  for (auto& t : threads) t.join();
}

namespace {
struct message_recorder : recorder {
  std::vector<std::vector<std::byte>> bodies;  // headered messages: what follows the distribution header
  std::vector<bool> shared;
  void on_message(connection& c, inbound_message& m) override {
    if (!m.headered) return connection_handler::on_message(c, m);
    bodies.emplace_back(m.bytes.begin(), m.bytes.end());
    shared.push_back(m.shared.node() != nullptr);
  }
};

// A SEND to a@h of {big binary, 7, another big binary} with the binaries left out of the packet's bytes, and the
// plain packet it stands for.
std::pair<out_packet, std::vector<std::byte>> big_packet(std::size_t n) {
  auto to = cnode::etf::term::pid(cnode::etf::pid_value{cnode::etf::atom::from_utf8("a@h").value(), 1, 0, 0});
  std::vector<std::uint8_t> b1(n), b2(n / 2 + 3);
  for (std::size_t i = 0; i < b1.size(); ++i) b1[i] = static_cast<std::uint8_t>(i * 7 + 1);
  for (std::size_t i = 0; i < b2.size(); ++i) b2[i] = static_cast<std::uint8_t>(i * 3 + 2);
  control_message m{send_msg{to}, {},
                    cnode::etf::term::tuple({cnode::etf::term::binary(b1), cnode::etf::term(7),
                                             cnode::etf::term::binary(b2)})};
  const auto plain = encode_control(m, packet_form::header);
  std::vector<std::uint8_t> raw;
  out_packet p;
  encode_control(m, raw, packet_form::header, &p.externals, 64 * 1024);
  p.bytes.resize(raw.size());
  std::memcpy(p.bytes.data(), raw.data(), raw.size());
  std::vector<std::byte> pl(plain.size());
  std::memcpy(pl.data(), plain.data(), plain.size());
  return {std::move(p), std::move(pl)};
}
}  // namespace

TEST_CASE("connection: binaries left out of a packet go on the wire from where they are, whole or in fragments") {
  for (const int mode : {0, 1, 2}) {  // FRAGMENTS; DIST_HDR_ATOM_CACHE alone (whole 131,68 packets); neither
    CAPTURE(mode);
    const bool frags = mode == 0;
    asio::io_context io;
    socket_pair sp(io);
    connection_options opt;
    opt.net_ticktime = 60s;
    peer_info pa = visible_peer("b@h"), pb = visible_peer("a@h");
    const dflags extra = mode == 0 ? dflag::fragments : mode == 1 ? dflag::dist_hdr_atom_cache : 0;
    pa.effective = (pa.effective & ~dflag::fragments) | extra;
    pb.effective = (pb.effective & ~dflag::fragments) | extra;
    auto ha = std::make_shared<message_recorder>(), hb = std::make_shared<message_recorder>();
    auto a = connection::create(std::move(sp.a), pa, "a@h", opt, ha);
    auto b = connection::create(std::move(sp.b), pb, "b@h", opt, hb);
    a->start();
    b->start();
    auto [p1, plain1] = big_packet(500'000);
    auto [p2, plain2] = big_packet(100'000);
    REQUIRE(a->try_send(p1, 1));
    REQUIRE(a->try_send(p2, 2));
    if (mode < 2) {
      REQUIRE(run_until(io, [&] { return hb->bodies.size() == 2; }, 5000ms));
      // Each arrives whole (the shorter one may finish first: fragments of two senders interleave).
      auto want1 = std::vector<std::byte>(plain1.begin() + 3, plain1.end());
      auto want2 = std::vector<std::byte>(plain2.begin() + 3, plain2.end());
      CHECK(((hb->bodies[0] == want1 && hb->bodies[1] == want2) || (hb->bodies[0] == want2 && hb->bodies[1] == want1)));
      CHECK(hb->shared[0] == frags);  // a reassembled message comes in a buffer of its own
      CHECK(hb->shared[1] == frags);
      CHECK((a->stats().fragments_out > 8) == frags);
    } else {
      // Without DIST_HDR_ATOM_CACHE/FRAGMENTS the peer gets pass-through packets: the connection flattened them.
      REQUIRE(run_until(io, [&] { return hb->packets.size() == 2; }, 5000ms));
      std::vector<std::byte> pass1, pass2;
      REQUIRE(to_pass_through(plain1, pass1));
      REQUIRE(to_pass_through(plain2, pass2));
      CHECK(hb->packets[0] == pass1);
      CHECK(hb->packets[1] == pass2);
    }
    CHECK(a->stats().queued_bytes == 0);
    a->close();
    b->close();
    run_until(io, [&] { return ha->down.has_value() && hb->down.has_value(); }, 2000ms);
  }
}

namespace {
// A SEND of payload with atom cache references and its header deferred (the runtime's encoding for a peer with
// DIST_HDR_ATOM_CACHE).
out_packet with_refs(const cnode::etf::term& payload) {
  auto to = cnode::etf::term::pid(cnode::etf::pid_value{cnode::etf::atom::from_utf8("b@h").value(), 1, 0, 0});
  control_message m{send_msg{to}, {}, payload};
  cnode::etf::atom_ref_table t;
  std::vector<std::uint8_t> raw;
  out_packet p;
  encode_control(m, raw, packet_form::header, &p.externals, 64 * 1024, &t);
  p.refs = t.take();
  p.deferred_header = true;
  p.bytes.resize(raw.size());
  std::memcpy(p.bytes.data(), raw.data(), raw.size());
  return p;
}

struct decoding_recorder : recorder {
  std::vector<cnode::etf::term> payloads;
  std::vector<bool> headered;
  void on_message(connection&, inbound_message& m) override {
    cnode::etf::shared_bytes buf =
        cnode::etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(m.bytes.data()), m.bytes.size()});
    auto d = m.headered ? decode_control_body(buf, 0, buf.size(), m.refs) : decode_control(buf, 0, buf.size());
    if (!d) throw std::runtime_error(d.ec.message());
    payloads.push_back(d.msg.payload.value_or(cnode::etf::term()));
    headered.push_back(m.headered);
  }
};
}  // namespace

TEST_CASE("connection: packets with atom cache references, headers written in wire order, big and small interleaved") {
  using cnode::etf::atom;
  using cnode::etf::term;
  std::vector<term> many;
  for (int i = 0; i < 3000; ++i) many.emplace_back(atom("conn_atom_" + std::to_string(i)));
  std::vector<term> big_items;
  for (int i = 0; i < 20000; ++i) big_items.push_back(term::tuple({many[static_cast<std::size_t>(i) % 3000], term(i)}));
  const term big = term::tuple({term::list(big_items), term::binary(std::vector<std::uint8_t>(100'000, 3))});
  // Modes: the atom cache and FRAGMENTS (as between BEAM nodes); FRAGMENTS only and neither (the references are
  // dropped at ordering time: a reconnect to a peer without the flag).
  for (const int mode : {0, 1, 2}) {
    CAPTURE(mode);
    asio::io_context io;
    socket_pair sp(io);
    connection_options opt;
    opt.net_ticktime = 60s;
    peer_info pa = visible_peer("b@h"), pb = visible_peer("a@h");
    const dflags base = pa.effective & ~(dflag::fragments | dflag::dist_hdr_atom_cache);
    const dflags extra = mode == 0 ? dflag::fragments | dflag::dist_hdr_atom_cache : mode == 1 ? dflag::fragments : 0;
    pa.effective = base | extra;
    pb.effective = base | extra;
    auto ha = std::make_shared<decoding_recorder>(), hb = std::make_shared<decoding_recorder>();
    auto a = connection::create(std::move(sp.a), pa, "a@h", opt, ha);
    auto b = connection::create(std::move(sp.b), pb, "b@h", opt, hb);
    a->start();
    b->start();
    // Three big messages (each in fragments) from keys 1..3 between small ones from keys 10.., each small one a
    // slice of 100 atoms, twice over (the second round finds the atoms cached).
    std::vector<term> want;
    std::size_t sent = 0;
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < 30; ++i) {
        if (i % 10 == 0) {
          auto p = with_refs(big);
          a->async_send(std::move(p), 1 + static_cast<std::uint64_t>(i / 10), asio::detached);
          ++sent;
        }
        std::vector<term> slice(many.begin() + i * 100, many.begin() + i * 100 + 100);
        const term small = term::tuple({term::list(slice), term(i)});
        a->async_send(with_refs(small), 10 + static_cast<std::uint64_t>(i), asio::detached);
        want.push_back(small);
        ++sent;
      }
    }
    REQUIRE(run_until(io, [&] { return hb->payloads.size() == sent; }, 20000ms));
    std::size_t bigs = 0, smalls = 0;
    for (const auto& p : hb->payloads) {
      if (p == big) {
        ++bigs;
      } else {
        CHECK(std::find(want.begin(), want.end(), p) != want.end());
        ++smalls;
      }
    }
    CHECK(bigs == 6);
    CHECK(smalls == 60);
    CHECK(a->stats().queued_bytes == 0);
    CHECK((a->stats().fragments_out > 0) == (mode < 2));
    {
      // The same message of 200 fresh atoms twice: with the cache the second costs references (a byte or two
      // each), not texts.
      std::vector<term> fresh;
      for (int i = 0; i < 200; ++i) fresh.emplace_back(atom("conn_fresh_" + std::to_string(i)));
      const term m = term::list(fresh);
      std::uint64_t sizes[2];
      for (auto& size : sizes) {
        const auto before = a->stats().bytes_out;
        const auto n = hb->payloads.size();
        a->async_send(with_refs(m), 99, asio::detached);
        REQUIRE(run_until(io, [&] { return hb->payloads.size() == n + 1 && a->stats().bytes_out > before; }, 5000ms));
        CHECK(hb->payloads.back() == m);
        size = a->stats().bytes_out - before;
      }
      MESSAGE("200 atoms: " << sizes[0] << " then " << sizes[1] << " bytes");
      if (mode == 0) CHECK(sizes[1] + 2000 < sizes[0]);
      else CHECK(sizes[1] == sizes[0]);
    }
    a->close();
    b->close();
    run_until(io, [&] { return ha->down.has_value() && hb->down.has_value(); }, 2000ms);
  }
}

namespace {
// A packet of n bytes in the form a connection sends: 131,68,0 then the body (header form) or 112 then the body; the
// body begins with the sequence number (4 bytes) and is filled with fill.
std::vector<std::byte> small_packet(bool header, std::uint32_t seq, std::size_t body, unsigned char fill) {
  std::vector<std::byte> p;
  if (header) p = {std::byte{131}, std::byte{68}, std::byte{0}};
  else p = {std::byte{112}};
  for (int s = 24; s >= 0; s -= 8) p.push_back(std::byte(static_cast<unsigned char>(seq >> s)));
  p.resize(p.size() + body, std::byte{fill});
  return p;
}
std::uint32_t seq_of(const std::vector<std::byte>& body) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = v << 8 | std::to_integer<std::uint32_t>(body[static_cast<std::size_t>(i)]);
  return v;
}
}  // namespace

TEST_CASE("connection: small packets go in shared runs, in order with whole packets; refused while fragmenting, "
          "in the wrong form, past the limit, when down") {
  for (const bool frags : {true, false}) {  // FRAGMENTS (header form), or neither flag (pass-through)
    CAPTURE(frags);
    asio::io_context io;
    socket_pair sp(io);
    connection_options opt;
    opt.net_ticktime = 60s;
    opt.outbound_limit = 64 * 1024;
    peer_info pa = visible_peer("b@h"), pb = visible_peer("a@h");
    pa.effective = frags ? pa.effective | dflag::fragments : pa.effective & ~(dflag::fragments | dflag::dist_hdr_atom_cache);
    pb.effective = pa.effective;
    auto ha = std::make_shared<message_recorder>(), hb = std::make_shared<message_recorder>();
    auto a = connection::create(std::move(sp.a), pa, "a@h", opt, ha);
    auto b = connection::create(std::move(sp.b), pb, "b@h", opt, hb);
    a->start();
    b->start();
    REQUIRE(a->headered() == frags);
    auto received = [&] { return frags ? hb->bodies.size() : hb->packets.size(); };
    auto body_at = [&](std::size_t i) {
      // The bytes after the header or after 112.
      return frags ? hb->bodies[i] : std::vector<std::byte>(hb->packets[i].begin() + 1, hb->packets[i].end());
    };

    // Runs and whole packets of one sender interleaved: every packet arrives once, in order, as sent.
    constexpr std::uint32_t n = 3000;
    std::uint32_t sent = 0;
    std::size_t smalls = 0;
    while (sent < n) {
      const std::size_t len = sent % 7 * 37;
      auto p = small_packet(frags, sent, len, static_cast<unsigned char>(sent));
      if (sent % 11 == 5) {
        if (!a->try_send(p, 1)) break;
      } else {
        if (!a->try_send_small(p, frags, 1)) break;
        ++smalls;
      }
      ++sent;
      if (sent % 500 == 0) run_until(io, [&] { return received() == sent; }, 5000ms);
    }
    REQUIRE(sent == n);
    REQUIRE(run_until(io, [&] { return received() == n; }, 5000ms));
    bool all_right = true;
    for (std::uint32_t i = 0; i < n; ++i) {
      const auto body = body_at(i);
      const std::size_t len = i % 7 * 37;
      if (body.size() != 4 + len || seq_of(body) != i ||
          std::count(body.begin() + 4, body.end(), std::byte(static_cast<unsigned char>(i))) !=
              static_cast<std::ptrdiff_t>(len))
        all_right = false;
    }
    CHECK(all_right);
    CHECK(a->stats().packets_out == n);
    CHECK(a->stats().writes < n / 10);  // runs: many packets a write
    CHECK(a->stats().queued_bytes == 0);

    // Refused: the other form, a first byte that is neither 131 nor 112, too long.
    auto p = small_packet(frags, 1, 10, 'x');
    CHECK_FALSE(a->try_send_small(small_packet(!frags, 1, 10, 'x'), !frags, 1));
    CHECK_FALSE(a->try_send_small(small_packet(!frags, 1, 10, 'x'), frags, 1));
    CHECK_FALSE(a->try_send_small(small_packet(frags, 1, connection::run_packet_max, 'x'), frags, 1));

    // Past the limit (the writer does not run while io is not run): refused, then taken again once written.
    std::size_t taken = 0;
    while (a->try_send_small(small_packet(frags, 7, 1000, 'y'), frags, 2)) ++taken;
    CHECK(taken > 10);
    CHECK(a->stats().queued_bytes >= opt.outbound_limit);
    CHECK(a->stats().queued_bytes <= opt.outbound_limit + 1100);
    REQUIRE(run_until(io, [&] { return a->stats().queued_bytes == 0; }, 5000ms));
    CHECK(a->try_send_small(p, frags, 2));
    REQUIRE(run_until(io, [&] { return received() == n + taken + 1; }, 5000ms));

    if (frags) {
      // While a message goes out in fragments, no runs (its key's later packets must wait behind it).
      auto [big, plain] = big_packet(300'000);
      const std::size_t before = received();
      REQUIRE(a->try_send(big, 3));
      CHECK_FALSE(a->try_send_small(p, frags, 3));
      CHECK_FALSE(a->try_send_small(p, frags, 4));
      REQUIRE(run_until(io, [&] { return received() == before + 1 && a->stats().streaming_bytes == 0; }, 5000ms));
      CHECK(a->try_send_small(p, frags, 3));
    }
    a->close();
    b->close();
    run_until(io, [&] { return ha->down.has_value() && hb->down.has_value(); }, 2000ms);
    CHECK_FALSE(a->try_send_small(p, frags, 1));
  }
}

TEST_CASE("connection: under a writer_wake_hold a sender's packets wait for the hold's end, then go in one write") {
  writer_wake_hold::enable(true);
  struct off_again {
    ~off_again() { writer_wake_hold::enable(false); }
  } restore;
  asio::io_context io;
  socket_pair sp(io);
  connection_options opt;
  opt.net_ticktime = 60s;
  auto ha = std::make_shared<recorder>(), hb = std::make_shared<recorder>();
  auto a = connection::create(std::move(sp.a), visible_peer("b@h"), "a@h", opt, ha);
  auto b = connection::create(std::move(sp.b), visible_peer("a@h"), "b@h", opt, hb);
  a->start();
  b->start();
  io.poll();  // both writers park
  REQUIRE(a->stats().writes == 0);
  {
    writer_wake_hold outer;
    {
      writer_wake_hold inner;
      auto p1 = payload(10, 1);
  REQUIRE(a->try_send(p1, 1));
    }
    // The inner hold's end is not the outermost: nothing woke the writer.
    auto p2 = payload(20, 2);
  REQUIRE(a->try_send(p2, 1));
    auto p3 = payload(30, 3);
  REQUIRE(a->try_send(p3, 1));
    io.restart();
    io.poll();  // a woken writer would have written here (its write completes within poll on loopback)
    CHECK(a->stats().writes == 0);
    CHECK(a->stats().queued_bytes > 0);
    CHECK(hb->packets.empty());
  }
  REQUIRE(run_until(io, [&] { return hb->packets.size() == 3; }, 5000ms));
  CHECK(a->stats().writes == 1);  // the three packets in one write
  CHECK(hb->packets[0] == payload(10, 1));
  CHECK(hb->packets[2] == payload(30, 3));
  // Without a hold the first send wakes the writer at once.
  auto p4 = payload(5, 4);
  REQUIRE(a->try_send(p4, 1));
  io.restart();
  io.poll();
  CHECK(a->stats().writes >= 2);
  a->close();
  b->close();
  run_until(io, [&] { return ha->down.has_value() && hb->down.has_value(); }, 2000ms);
}
