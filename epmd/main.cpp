// cnode-epmd: an EPMD that real erl nodes use as their own (OTP 25 wire behaviour), and a small client for it or
// any EPMD (--names, --kill, --stop, like `epmd -names|-kill|-stop`).
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/core.h>

#include "epmd/client.hpp"
#include "epmd/log.hpp"
#include "epmd/server.hpp"

namespace {

using namespace cnode::epmd;
namespace asio = boost::asio;

constexpr std::string_view usage = R"(usage: cnode-epmd [options]
       cnode-epmd [--port P] --names | --kill | --stop NAME

An Erlang Port Mapper Daemon: Erlang/Elixir nodes and cnode register their distribution port here and find
each other's. Speaks the protocol as OTP 25's epmd does.

Options:
  --port P                 listen on port P (default: $ERL_EPMD_PORT, else 4369)
  --address A[,A...]       listen only on these IP addresses (loopback is always added), default: all
  --log-level L            none, error, warning (default), info or debug; logs go to stderr
  --packet-timeout S       seconds a client has to send a whole request (default 60, as epmd)
  --relaxed-command-check  allow KILL while nodes are registered, and STOP (forced unregistration)
  --max-connections N      close new connections beyond N open ones (default 20000)
  --help                   this text

Client commands (to the EPMD on localhost at --port):
  --names                  list the registered names, as `epmd -names` does
  --kill                   ask the EPMD to stop
  --stop NAME              forcibly unregister NAME (needs --relaxed-command-check on the server)
)";

[[noreturn]] void die(const std::string& message) {
  fmt::print(stderr, "cnode-epmd: {}\n", message);
  std::exit(2);
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int run_client(std::string_view command, const std::string& stop_name, std::uint16_t port) {
  asio::io_context io;
  int status = 0;
  epmd_endpoint ep{"localhost", port};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        if (command == "names") {
          auto r = co_await try_names(ep);
          if (!r) {
            fmt::print(stderr, "cnode-epmd: {}\n", r.error().message);
            status = 1;
            co_return;
          }
          fmt::print("epmd: up and running on port {} with data:\n", port);
          for (const auto& n : *r) fmt::print("name {} at port {}\n", n.name, n.port);
          co_return;
        }
        request req = command == "kill" ? request{kill_request{}} : request{stop_request{stop_name}};
        auto r = co_await try_raw_request(ep, req);
        if (!r) {
          fmt::print(stderr, "cnode-epmd: {}\n", r.error().message);
          status = 1;
          co_return;
        }
        std::string answer(r->begin(), r->end());
        fmt::print("{}\n", answer.empty() ? std::string("(no answer: refused)") : answer);
        if (answer != "OK" && answer != "STOPPED") status = 1;
      },
      asio::detached);
  io.run();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  server_options opts;
  set_log_level(log_level::warning);  // cnode-epmd is quiet unless asked (cnode itself defaults to info)
  opts.port = epmd_port_from_env();
  std::string client_command, stop_name;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= args.size()) die(fmt::format("{} needs a value (see --help)", a));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      fmt::print("{}", usage);
      return 0;
    } else if (a == "--port") {
      auto v = value();
      auto p = parse_port(v);
      if (!p) die(fmt::format("--port {}: not a port number 1..65535", v));
      opts.port = *p;
    } else if (a == "--address") {
      std::string_view list = value();
      while (!list.empty()) {
        auto comma = list.find(',');
        std::string token(list.substr(0, comma));
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        if (token.empty()) continue;
        boost::system::error_code ec;
        auto addr = asio::ip::make_address(token, ec);
        if (ec) die(fmt::format("--address: cannot parse IP address {:?}", token));
        opts.addresses.push_back(addr);
      }
    } else if (a == "--log-level") {
      auto v = value();
      auto level = parse_log_level(v);
      if (!level) die(fmt::format("--log-level {}: use none, error, warning, info or debug", v));
      set_log_level(*level);
    } else if (a == "--packet-timeout") {
      auto v = value();
      double s = 0;
      try {
        s = std::stod(std::string(v));
      } catch (...) {
        s = -1;
      }
      if (!(s > 0)) die(fmt::format("--packet-timeout {}: give a positive number of seconds", v));
      opts.packet_timeout = std::chrono::milliseconds(static_cast<long long>(s * 1000));
    } else if (a == "--relaxed-command-check") {
      opts.relaxed_command_check = true;
    } else if (a == "--max-connections") {
      auto v = value();
      try {
        opts.max_connections = std::stoul(std::string(v));
      } catch (...) {
        die(fmt::format("--max-connections {}: not a number", v));
      }
    } else if (a == "--names" || a == "--kill") {
      client_command = a.substr(2);
    } else if (a == "--stop") {
      client_command = "stop";
      stop_name = value();
    } else {
      die(fmt::format("unknown option {} (see --help)", a));
    }
  }
  if (!client_command.empty()) return run_client(client_command, stop_name, opts.port);

  raise_fd_limit();
  asio::io_context io(1);
  server srv(io, opts);
  failure f;
  if (!srv.start(f)) {
    if (f.code == asio::error::address_in_use && epmd_answering_sync({"127.0.0.1", opts.port})) {
      // epmd exits 0 too when another epmd holds its port.
      fmt::print(stderr, "cnode-epmd: an EPMD is already answering on port {}\n", opts.port);
      return 0;
    }
    fmt::print(stderr, "cnode-epmd: {}\n", f.message);
    return 1;
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) {
      srv.stop();
      io.stop();
    }
  });
  srv.on_kill([&] {
    signals.cancel();
    srv.stop();
    io.stop();
  });
  fmt::print("cnode-epmd: listening on port {}\n", srv.port());
  std::fflush(stdout);
  io.run();
  return 0;
}
