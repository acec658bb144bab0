// The cnode executable: a C++ node that joins an Erlang/Elixir cluster. Options follow erl's where erl has one.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "cnode/builtins.hpp"
#include "cnode/distribution.hpp"
#include "cnode/log.hpp"
#include "dist/cookie.hpp"
#include "epmd/client.hpp"
#include "epmd/server.hpp"
#ifdef CNODE_HAVE_PG
#include "pg/pg.hpp"
#endif
#ifdef CNODE_HAVE_REGISTRY
#include "registry/global.hpp"
#endif

namespace {

using namespace cnode;

constexpr const char* usage = R"(usage: cnode [options]

  --sname NAME[@HOST]     short node name (host: this machine's short host name)      [default: cnode]
  --name NAME@HOST        long node name
  --cookie COOKIE         magic cookie (default: ~/.erlang.cookie, created if missing)
  --node-cookie NODE=COOKIE  a different cookie for one peer (repeatable)
  --hidden                connect as a hidden node (not in nodes(), no global/pg traffic)
  --epmd-port PORT        EPMD port (default: $ERL_EPMD_PORT, else 4369)
  --embedded-epmd         start cnode's own EPMD on that port when none answers
  --no-epmd               do not register with EPMD (use with --listen-port)
  --listen-port PORT      distribution port (default: any free port)
  --listen-address ADDR   distribution listen address (default: 0.0.0.0)
  --peer NODE=HOST:PORT   reach NODE at HOST:PORT without asking EPMD (repeatable)
  --connect NODE          connect to NODE at start, retrying with backoff (repeatable)
  --net-ticktime SECONDS  as erl -kernel net_ticktime (default: 60)
  --dist-buf-busy-limit KB  outbound bytes per connection before senders wait (default: 1024, as erl +zdbbl)
  --threads N             I/O threads (default: number of cores)
  --pg-scope NAME         take part in this :pg scope besides the default pg (repeatable)
  --log-level LEVEL       error | warning | info | debug (default: info)
  --help
)";

struct options {
  std::string name;
  bool long_name = false;
  std::optional<std::string> cookie;
  std::vector<std::pair<std::string, std::string>> node_cookies;
  bool hidden = false;
  std::optional<std::uint16_t> epmd_port;
  bool embedded_epmd = false;
  bool use_epmd = true;
  std::uint16_t listen_port = 0;
  std::string listen_address = "0.0.0.0";
  std::vector<std::pair<std::string, epmd::node_address>> peers;
  std::vector<std::string> connect;
  unsigned net_ticktime = 60;
  std::size_t busy_limit_kb = 1024;
  unsigned threads = 0;
  std::vector<std::string> pg_scopes{"pg"};
};

[[noreturn]] void fail(const std::string& msg) {
  std::cerr << "cnode: " << msg << "\n(see cnode --help)\n";
  std::exit(2);
}

unsigned long number(const std::string& opt, const std::string& v, unsigned long max) {
  char* end = nullptr;
  unsigned long n = std::strtoul(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n > max) fail(opt + " wants a number up to " + std::to_string(max) + ", not '" + v + "'");
  return n;
}

std::string short_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  std::string h(buf);
  return h.substr(0, h.find('.'));
}

options parse(int argc, char** argv) {
  options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) fail(a + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    } else if (a == "--sname") {
      o.name = value();
      o.long_name = false;
    } else if (a == "--name") {
      o.name = value();
      o.long_name = true;
    } else if (a == "--cookie") {
      o.cookie = value();
    } else if (a == "--node-cookie") {
      std::string v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) fail("--node-cookie wants NODE=COOKIE");
      o.node_cookies.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--hidden") {
      o.hidden = true;
    } else if (a == "--epmd-port") {
      o.epmd_port = static_cast<std::uint16_t>(number(a, value(), 65535));
    } else if (a == "--embedded-epmd") {
      o.embedded_epmd = true;
    } else if (a == "--no-epmd") {
      o.use_epmd = false;
    } else if (a == "--listen-port") {
      o.listen_port = static_cast<std::uint16_t>(number(a, value(), 65535));
    } else if (a == "--listen-address") {
      o.listen_address = value();
    } else if (a == "--peer") {
      std::string v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) fail("--peer wants NODE=HOST:PORT");
      auto addr = epmd::parse_node_address(v.substr(eq + 1));
      if (!addr) fail("--peer: " + addr.error().message);
      o.peers.emplace_back(v.substr(0, eq), addr.value());
    } else if (a == "--connect") {
      o.connect.push_back(value());
    } else if (a == "--net-ticktime") {
      o.net_ticktime = static_cast<unsigned>(number(a, value(), 3600 * 24));
      if (o.net_ticktime == 0) fail("--net-ticktime must be at least 1");
    } else if (a == "--dist-buf-busy-limit") {
      o.busy_limit_kb = number(a, value(), 2 * 1024 * 1024);
    } else if (a == "--threads") {
      o.threads = static_cast<unsigned>(number(a, value(), 1024));
    } else if (a == "--pg-scope") {
      o.pg_scopes.push_back(value());
    } else if (a == "--log-level") {
      log::level l;
      if (!log::parse_level(value(), l)) fail("--log-level: error, warning, info or debug");
      log::threshold() = l;
    } else {
      fail("unknown option " + a);
    }
  }
  if (o.name.empty()) o.name = "cnode";
  if (o.name.find('@') == std::string::npos) {
    if (o.long_name) fail("--name wants NAME@HOST");
    o.name += "@" + short_host();
  }
  if (!o.use_epmd && o.listen_port == 0) fail("--no-epmd needs --listen-port");
  return o;
}

asio::awaitable<void> keep_connected(distribution& d, atom peer) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  auto backoff = std::chrono::milliseconds(250);
  for (;;) {
    auto up = d.nodes(true, true);
    if (std::find(up.begin(), up.end(), peer) == up.end()) {
      if (co_await d.connect(peer)) {
        backoff = std::chrono::milliseconds(250);
      } else {
        log::info("connect to {} failed; retrying in {} ms", peer.text(), backoff.count());
        t.expires_after(backoff);
        co_await t.async_wait(asio::use_awaitable);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(30'000));
        continue;
      }
    }
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(asio::use_awaitable);
  }
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse(argc, argv);

  auto cookie = dist::load_cookie(o.cookie);
  if (cookie.ec) {
    log::error("{}", cookie.message.empty() ? cookie.ec.message() : cookie.message);
    return 1;
  }
  if (cookie.created) log::info("created cookie file {}", cookie.path.string());

  asio::io_context ioc;
  const std::uint16_t epmd_port = o.epmd_port.value_or(epmd::epmd_port_from_env());

  std::unique_ptr<epmd::server> embedded;
  if (o.embedded_epmd && o.use_epmd && !epmd::epmd_answering_sync({"localhost", epmd_port})) {
    epmd::server_options so;
    so.port = epmd_port;
    embedded = std::make_unique<epmd::server>(ioc, so);
    epmd::failure f;
    if (!embedded->start(f)) {
      log::error("cannot start the embedded EPMD: {}", f.message);
      return 1;
    }
    log::info("started the embedded EPMD on port {}", epmd_port);
  }

  distribution_config cfg;
  cfg.hidden = o.hidden;
  cfg.cookies.cookie = cookie.cookie;
  for (auto& [n, c] : o.node_cookies) cfg.cookies.per_node[n] = c;
  cfg.listen_address = o.listen_address;
  cfg.listen_port = o.listen_port;
  cfg.use_epmd = o.use_epmd;
  cfg.epmd_port = epmd_port;
  cfg.net_ticktime = std::chrono::seconds(o.net_ticktime);
  cfg.outbound_limit = o.busy_limit_kb * 1024;
  for (auto& [n, a] : o.peers) cfg.static_peers[n] = a;

  node n(ioc.get_executor(), o.name, o.use_epmd ? 0 : static_cast<std::uint32_t>(std::time(nullptr)) | 1u);
  distribution d(n, cfg);
  function_table functions;
  int exit_code = 0;

  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        try {
          co_await d.start();
        } catch (const std::exception& e) {
          log::error("{}", e.what());
          exit_code = 1;
          ioc.stop();
          co_return;
        }
        start_builtins(n, d, functions);
#ifdef CNODE_HAVE_REGISTRY
        global::start(n, d, functions);
#endif
#ifdef CNODE_HAVE_PG
        pg::start(n, d, functions, o.pg_scopes);
#endif
        log::info("ready {} (distribution port {}, {})", n.name(), d.port(), o.hidden ? "hidden" : "visible");
        log::info("from iex: iex --sname you --cookie '{}' then Node.ping(:\"{}\")",
                  o.cookie ? *o.cookie : std::string("<your ~/.erlang.cookie>"), n.name());
        for (const auto& peer : o.connect) asio::co_spawn(ioc, keep_connected(d, atom(peer)), asio::detached);
      },
      asio::detached);

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  asio::steady_timer grace(ioc);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    log::info("signal {}: closing connections and leaving EPMD", sig);
    d.stop();
    if (embedded) embedded->stop();
    // Let the connections' writers see the close before the loop ends.
    grace.expires_after(std::chrono::milliseconds(200));
    grace.async_wait([&](const boost::system::error_code&) { ioc.stop(); });
  });

  const unsigned threads = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return exit_code;
}
