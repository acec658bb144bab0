// erlang:send/3's noconnect through the distribution layer: a send to a node with no connection must not dial it,
// an ordinary send must. The "peer" is a plain TCP listener that counts the connections it is offered.
#include <doctest.h>

#include <atomic>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "cnode/distribution.hpp"

using namespace cnode;
using namespace std::chrono_literals;

namespace {

struct dial_counter {
  asio::ip::tcp::acceptor acceptor;
  std::atomic<int> dialled{0};
  explicit dial_counter(asio::any_io_executor ex)
      : acceptor(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    accept();
  }
  void accept() {
    acceptor.async_accept([this](std::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      dialled.fetch_add(1);
      s.close();  // the handshake fails at once; only the attempt matters here
      accept();
    });
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
};

}  // namespace

TEST_CASE("noconnect: a send to an unconnected node is dropped without dialling; an ordinary send dials") {
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  std::thread t([&] { ioc.run(); });
  node n{ioc.get_executor(), "nc@localhost", 1};
  dial_counter peer(ioc.get_executor()), other(ioc.get_executor());

  distribution_config cfg;
  cfg.use_epmd = false;
  cfg.listen_address = "127.0.0.1";
  cfg.static_peers["peer@localhost"] = epmd::node_address{"127.0.0.1", peer.port()};
  cfg.static_peers["other@localhost"] = epmd::node_address{"127.0.0.1", other.port()};
  distribution d(n, cfg);
  n.set_router(&d);
  asio::co_spawn(ioc, d.start(), asio::use_future).get();

  auto eventually = [](auto f) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (f()) return true;
      std::this_thread::yield();
    }
    return false;
  };

  const term to_peer = term::tuple({term(atom("someone")), term(atom("peer@localhost"))});
  const term to_other = term::tuple({term(atom("someone")), term(atom("other@localhost"))});
  std::atomic<bool> done{false};
  n.spawn([&](process& self) -> asio::awaitable<void> {
    for (int i = 0; i < 100; ++i) self.send_noconnect(to_peer, term(i));
    // To a pid of that node, too.
    self.send_noconnect(term::pid(etf::pid_value{atom("peer@localhost"), 1, 0, 1}), term(atom("x")));
    done = true;
    co_return;
  });
  REQUIRE(eventually([&] { return done.load(); }));
  // A connect is marked pending synchronously by the send that starts it, so none may be pending now.
  CHECK_FALSE(d.is_pending("peer@localhost"));
  // An ordinary send to another node: it dials. A dial started by the noconnect sends would have been started
  // before it on this one-thread io_context, so by the time `other` sees its dial, `peer` would have seen one.
  n.send(term(), to_other, term(atom("hello")));
  REQUIRE(eventually([&] { return other.dialled.load() >= 1; }));
  CHECK(peer.dialled.load() == 0);

  d.stop();
  work.reset();
  ioc.stop();
  t.join();
}
