// Load generator for an EPMD on 127.0.0.1 (ours or the real one): registers --nodes names through cnode's client,
// then runs --concurrency lookup loops (one TCP connection a PORT_PLEASE2_REQ, as nodes do) for --seconds, and
// prints "registered N lookups L seconds S rate R/s failures F". Bounded in count and time; loopback only.
// --raw 1 does each lookup with bare socket calls (connect, write, read to EOF, no timers) instead of the client's
// try_port_please, so that more of the CPU goes to the server being measured.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/core.h>

#include "epmd/client.hpp"

using namespace cnode::epmd;
namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::uint16_t port = epmd_port_from_env();
  int nodes = 1000, concurrency = 16;
  double seconds = 3;
  bool raw = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--port") port = static_cast<std::uint16_t>(std::stoi(argv[i + 1]));
    if (a == "--nodes") nodes = std::stoi(argv[i + 1]);
    if (a == "--concurrency") concurrency = std::stoi(argv[i + 1]);
    if (a == "--seconds") seconds = std::stod(argv[i + 1]);
    if (a == "--raw") raw = std::string(argv[i + 1]) == "1";
  }
  asio::io_context io(1);
  epmd_endpoint ep("127.0.0.1", port);
  std::vector<registration> regs;
  long lookups = 0, failures = 0;
  int running = 0;
  clock_type::time_point start, end;
  auto loop = [&](int worker) -> asio::awaitable<void> {
    unsigned i = static_cast<unsigned>(worker) * 7919u;
    while (clock_type::now() < end) {
      std::string name = fmt::format("load{}", (i++ * 2654435761u) % static_cast<unsigned>(nodes));
      if (raw) {
        constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
        asio::ip::tcp::socket sock(io);
        asio::ip::tcp::endpoint at(asio::ip::make_address("127.0.0.1"), port);
        bytes req = encode_request(port_please2_request{name});
        auto [cec] = co_await sock.async_connect(at, tuple);
        auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(req), tuple);
        std::uint8_t buf[256];
        std::size_t got = 0;
        for (;;) {
          auto [rec, n] = co_await sock.async_read_some(asio::buffer(buf + got, sizeof buf - got), tuple);
          got += n;
          if (rec || got == sizeof buf) break;
        }
        if (!cec && !wec && got > 2 && buf[0] == 119 && buf[1] == 0) ++lookups; else ++failures;
        continue;
      }
      auto r = co_await try_port_please(ep, std::move(name));
      if (r) ++lookups; else ++failures;
    }
    if (--running == 0) io.stop();
  };
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    for (int n = 0; n < nodes; ++n) {
      node_registration node(fmt::format("load{}", n), static_cast<std::uint16_t>(20000 + n % 40000));
      auto r = co_await try_register_node(ep, std::move(node));
      if (!r) {
        fmt::print("error: {}\n", r.error().message);
        io.stop();
        co_return;
      }
      regs.push_back(std::move(*r));
    }
    start = clock_type::now();
    end = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
    running = concurrency;
    for (int w = 0; w < concurrency; ++w) asio::co_spawn(io, loop(w), asio::detached);
  }, asio::detached);
  io.run();
  double took = std::chrono::duration<double>(clock_type::now() - start).count();
  fmt::print("registered {} lookups {} seconds {:.2f} rate {:.0f}/s failures {}\n", regs.size(), lookups, took,
             lookups / took, failures);
  return failures == 0 && static_cast<int>(regs.size()) == nodes ? 0 : 1;
}
