// The client against the server, in process, over loopback: registration, lookups, listing, unregistration on
// close, conflicts, errors that say what happened, and clients that misbehave.
#include <doctest.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <functional>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "epmd/client.hpp"
#include "epmd/server.hpp"

using namespace cnode::epmd;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// Runs body(io, server) to completion on a fresh io_context with a server on a free port.
void with_server(std::function<asio::awaitable<void>(asio::io_context&, server&)> body, server_options opts = {}) {
  asio::io_context io;
  opts.port = 0;
  opts.addresses = {asio::ip::make_address("127.0.0.1")};
  server srv(io, opts);
  srv.start();
  std::exception_ptr failed;
  asio::co_spawn(io, body(io, srv), [&](std::exception_ptr e) {
    failed = e;
    srv.stop();
    io.stop();
  });
  io.run();
  if (failed) std::rethrow_exception(failed);
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(tuple_awaitable);
}

// Polls until names() has `count` entries (the server unregisters asynchronously after a close).
asio::awaitable<std::vector<name_entry>> names_when(epmd_endpoint ep, std::size_t count) {
  for (int i = 0; i < 200; ++i) {
    auto n = co_await names(ep);
    if (n.size() == count) co_return n;
    co_await sleep_for(10ms);
  }
  co_return co_await names(ep);
}

node_registration with_extra(node_registration r, std::string extra) {
  r.extra = std::move(extra);
  return r;
}

node_registration version_5(node_registration r) {
  r.highest_version = r.lowest_version = 5;
  return r;
}

std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();  // closed again when a goes away
}

}  // namespace

TEST_CASE("register, look up, list, unregister on close") {
  with_server([](asio::io_context&, server& srv) -> asio::awaitable<void> {
    epmd_endpoint ep{"127.0.0.1", srv.port()};
    {
      registration a = co_await register_node(ep, with_extra(node_registration("a", 9100), "x"));
      CHECK(a.creation() > 3);
      CHECK(a.extended_creation());
      node_info info = co_await port_please(ep, "a");
      CHECK(info.port == 9100);
      CHECK(info.type == 77);
      CHECK(info.highest_version == 6);
      CHECK(info.lowest_version == 5);
      CHECK(info.extra == "x");
      registration b = co_await register_node(ep, node_registration("b", 9101, node_type::hidden));
      auto all = co_await names(ep);
      REQUIRE(all.size() == 2);
      CHECK(all[0] == name_entry{"b", 9101});
      CHECK(all[1] == name_entry{"a", 9100});
      CHECK((co_await port_please(ep, "b")).type == 72);
      b.close();
      CHECK((co_await names_when(ep, 1)).at(0).name == "a");
      CHECK(srv.stats().registered == 1);
    }  // a's registration is destroyed here
    CHECK((co_await names_when(ep, 0)).empty());
  });
}

TEST_CASE("a taken name is refused with a sentence that says so; re-registration gets a new creation") {
  with_server([](asio::io_context&, server& srv) -> asio::awaitable<void> {
    epmd_endpoint ep{"127.0.0.1", srv.port()};
    auto first = co_await try_register_node(ep, node_registration("cnode", 9100));
    REQUIRE(first);
    auto second = co_await try_register_node(ep, node_registration("cnode", 9200));
    REQUIRE_FALSE(second);
    CHECK(second.error().code == make_error_code(error::name_in_use));
    CHECK(second.error().message == fmt::format("name cnode already registered at 127.0.0.1:{}", srv.port()));
    std::uint32_t c1 = first->creation();
    first->close();
    co_await names_when(ep, 0);
    auto again = co_await try_register_node(ep, node_registration("cnode", 9100));
    REQUIRE(again);
    CHECK(again->creation() == c1 + 1);
    bool threw = false;
    try {
      co_await register_node(ep, node_registration("cnode", 1));
    } catch (const epmd_exception& e) {
      threw = std::string(e.what()).find("already registered") != std::string::npos;
    }
    CHECK(threw);
  });
}

TEST_CASE("the 16-bit ALIVE2_RESP form") {
  with_server([](asio::io_context&, server& srv) -> asio::awaitable<void> {
    epmd_endpoint ep{"127.0.0.1", srv.port()};
    auto r = co_await register_node(ep, version_5(node_registration("old", 1)));
    CHECK_FALSE(r.extended_creation());
    CHECK(r.creation() >= 1);
    CHECK(r.creation() <= 3);
  });
}

TEST_CASE("lookups: not found, NAME@HOST, epmd_answering") {
  with_server([](asio::io_context&, server& srv) -> asio::awaitable<void> {
    epmd_endpoint ep{"127.0.0.1", srv.port()};
    auto missing = co_await try_port_please(ep, "nobody");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == make_error_code(error::node_not_found));
    CHECK(missing.error().message == fmt::format("node nobody not registered at 127.0.0.1:{}", srv.port()));
    auto reg = co_await register_node(ep, node_registration("n", 4242));
    node_address addr = co_await lookup_node("n@localhost", srv.port());
    CHECK(addr == node_address{"localhost", 4242});
    auto bad = co_await try_lookup_node("no-at-sign", srv.port());
    CHECK(bad.error().code == make_error_code(error::invalid_argument));
    CHECK(co_await epmd_answering(ep));
    CHECK_FALSE(co_await epmd_answering(epmd_endpoint("127.0.0.1", closed_port()), client_options{200ms}));
  });
}

TEST_CASE("no EPMD at the address: the error names it") {
  asio::io_context io;
  std::uint16_t port = closed_port();
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await try_names(epmd_endpoint("127.0.0.1", port));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == make_error_code(error::no_epmd));
    CHECK(r.error().message.starts_with(fmt::format("no EPMD answering at 127.0.0.1:{}", port)));
    auto unresolvable = co_await try_names(epmd_endpoint("no-such-host.invalid", port));
    REQUIRE_FALSE(unresolvable);
    CHECK(unresolvable.error().message.find("no-such-host.invalid") != std::string::npos);
  }, asio::detached);
  io.run();
  CHECK_FALSE(epmd_answering_sync({"127.0.0.1", port}, 200ms));
}

TEST_CASE("a server that never answers makes the client time out") {
  asio::io_context io;
  tcp::acceptor silent(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket held(io);
  silent.async_accept(held, [](boost::system::error_code) {});
  bool done = false;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto t0 = std::chrono::steady_clock::now();
    auto r = co_await try_port_please(epmd_endpoint("127.0.0.1", silent.local_endpoint().port()), "x", client_options{150ms});
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_FALSE(r);
    CHECK(r.error().code == make_error_code(error::timeout));
    CHECK(r.error().message.find("timed out after 150 ms") != std::string::npos);
    CHECK(took < 2s);
    done = true;
  }, asio::detached);
  io.run_for(5s);
  CHECK(done);
}

TEST_CASE("slow and hostile clients time out and do not delay the others") {
  server_options opts;
  opts.packet_timeout = 300ms;
  with_server(
      [](asio::io_context& io, server& srv) -> asio::awaitable<void> {
        tcp::endpoint at(asio::ip::make_address("127.0.0.1"), srv.port());
        epmd_endpoint ep{"127.0.0.1", srv.port()};
        // Never sends; sends half a header; sends a length and a partial body; sends an oversized length; garbage.
        std::vector<tcp::socket> hostile;
        std::vector<bytes> sends = {{}, {0}, {0, 20, 120, 0}, {0xff, 0xff}, {0, 3, 'Q', 'Q', 'Q'}};
        for (auto& s : sends) {
          tcp::socket sock(io);
          co_await sock.async_connect(at, asio::use_awaitable);
          if (!s.empty()) co_await asio::async_write(sock, asio::buffer(s), asio::use_awaitable);
          hostile.push_back(std::move(sock));
        }
        auto reg = co_await register_node(ep, node_registration("good", 7));
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 50; ++i) CHECK((co_await port_please(ep, "good")).port == 7);
        CHECK(std::chrono::steady_clock::now() - t0 < 250ms);  // served while the hostile ones wait
        // Every hostile connection is closed by the server, the idle ones after the packet timeout.
        for (auto& sock : hostile) {
          std::uint8_t byte;
          auto [ec, n] = co_await sock.async_read_some(asio::buffer(&byte, 1), tuple_awaitable);
          CHECK(ec);  // eof or reset, no answer
        }
        CHECK(std::chrono::steady_clock::now() - t0 < 3s);
        auto st = srv.stats();
        CHECK(st.timeouts >= 3);
        CHECK(st.bad_requests >= 2);
        CHECK((co_await names(ep)).size() == 1);  // the registered node was untouched
      },
      opts);
}

TEST_CASE("1000 registered nodes, then lookups for all of them") {
  with_server([](asio::io_context&, server& srv) -> asio::awaitable<void> {
    epmd_endpoint ep{"127.0.0.1", srv.port()};
    std::vector<registration> regs;
    for (int i = 0; i < 1000; ++i)
      regs.push_back(co_await register_node(ep, node_registration(fmt::format("n{}", i), std::uint16_t(10000 + i))));
    CHECK((co_await names(ep)).size() == 1000);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i)
      REQUIRE((co_await port_please(ep, fmt::format("n{}", i))).port == 10000 + i);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("1000 sequential lookups with 1000 nodes registered: " << ms << " ms");
    regs.clear();
    CHECK((co_await names_when(ep, 0)).empty());
  });
}

TEST_CASE("node names, addresses and ERL_EPMD_PORT") {
  auto n = parse_node_name("a@host.example");
  REQUIRE(n);
  CHECK(n->alive == "a");
  CHECK(n->host == "host.example");
  CHECK_FALSE(parse_node_name("@h"));
  CHECK_FALSE(parse_node_name("a@"));
  CHECK_FALSE(parse_node_name("a"));
  CHECK(*parse_node_address("127.0.0.1:9100") == node_address{"127.0.0.1", 9100});
  CHECK(*parse_node_address("[::1]:9100") == node_address{"::1", 9100});
  CHECK_FALSE(parse_node_address("host:0"));
  CHECK_FALSE(parse_node_address("host"));
  CHECK_FALSE(parse_node_address(":1"));
  ::setenv("ERL_EPMD_PORT", "4400", 1);
  CHECK(epmd_port_from_env() == 4400);
  ::setenv("ERL_EPMD_PORT", "junk", 1);
  CHECK(epmd_port_from_env() == 4369);
  ::unsetenv("ERL_EPMD_PORT");
  CHECK(epmd_port_from_env() == 4369);
  CHECK(is_local_peer(asio::ip::make_address("127.3.4.5"), asio::ip::make_address("10.0.0.1")));
  CHECK(is_local_peer(asio::ip::make_address("::1"), asio::ip::make_address("::1")));
  CHECK(is_local_peer(asio::ip::make_address("::ffff:127.0.0.1"), asio::ip::make_address("::1")));
  CHECK(is_local_peer(asio::ip::make_address("10.0.0.1"), asio::ip::make_address("10.0.0.1")));
  CHECK_FALSE(is_local_peer(asio::ip::make_address("10.0.0.2"), asio::ip::make_address("10.0.0.1")));
}

TEST_CASE("embedded EPMD: started only when none answers") {
  asio::io_context io;
  server_options opts;
  opts.port = closed_port();
  opts.addresses = {asio::ip::make_address("127.0.0.1")};
  auto first = start_epmd_unless_running(io, opts, 300ms);
  REQUIRE(first);
  CHECK(first->port() == opts.port);
  std::thread runner([&] { io.run_for(5s); });
  auto second = start_epmd_unless_running(io, opts, 2s);  // the first one answers now
  CHECK_FALSE(second);
  first->stop();
  io.stop();
  runner.join();
}

TEST_CASE("IPv6 and host names: ::1, localhost, and a peer seen as local over IPv6") {
  with_server([](asio::io_context&, server& srv) -> asio::awaitable<void> {
    // The server listens on ::1 as well (loopback is always added to explicit addresses, as epmd does).
    epmd_endpoint v6("::1", srv.port());
    auto reg = co_await try_register_node(v6, node_registration("six", 4646));
    REQUIRE(reg);
    CHECK(reg->epmd() == fmt::format("[::1]:{}", srv.port()));
    epmd_endpoint byname("localhost", srv.port());
    CHECK((co_await port_please(byname, "six")).port == 4646);
    node_address a = co_await lookup_node("six@localhost", srv.port());
    CHECK(a.port == 4646);
    auto dump = co_await try_raw_request(v6, request{dump_request{}});  // DUMP is local-only: ::1 is local
    REQUIRE(dump);
    std::string text(dump->begin() + 4, dump->end());
    CHECK(text.starts_with("active name     <six> at port 4646, fd = "));
  });
}
