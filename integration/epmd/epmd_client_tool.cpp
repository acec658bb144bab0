// Drives cnode::epmd's client for the integration tests. The EPMD is at --host (default localhost) and the port in
// ERL_EPMD_PORT (or --port). One command a run; output is one line a fact, errors as "error: <message>" (exit 1).
//   register NAME PORT [hidden] [v5]   registers, prints "registered creation=C extended=0|1", then holds the
//                                      registration until stdin closes or says "close" (prints "closed"), or EPMD
//                                      drops it (prints "lost")
//   port_please NAME                   "node name=N port=P type=T protocol=X high=H low=L extra=E"
//   lookup NAME@HOST                   "address HOST PORT"
//   names                              "name N port P" lines, then "end"
//   answering                          "yes" or "no"
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "epmd/client.hpp"

using namespace cnode::epmd;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

int status = 0;

void fail(const failure& f) {
  fmt::print("error: {}\n", f.message);
  std::fflush(stdout);
  status = 1;
}

asio::awaitable<void> wait_for_close_command() {
  asio::posix::stream_descriptor in(co_await asio::this_coro::executor, ::dup(0));
  std::string line;
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(in, asio::dynamic_buffer(line), '\n',
                                                   asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    std::string cmd = line.substr(0, n - 1);
    line.erase(0, n);
    if (cmd == "close") co_return;
  }
}

asio::awaitable<void> run(std::vector<std::string> args, epmd_endpoint ep) {
  const std::string& cmd = args.at(0);
  if (cmd == "register") {
    node_registration node(args.at(1), static_cast<std::uint16_t>(std::stoi(args.at(2))));
    for (std::size_t i = 3; i < args.size(); ++i) {
      if (args[i] == "hidden") node.type = node_type::hidden;
      if (args[i] == "v5") node.highest_version = node.lowest_version = 5;
    }
    auto r = co_await try_register_node(ep, std::move(node));
    if (!r) co_return fail(r.error());
    fmt::print("registered creation={} extended={}\n", r->creation(), r->extended_creation() ? 1 : 0);
    std::fflush(stdout);
    auto which = co_await (wait_for_close_command() || r->wait_lost());
    if (which.index() == 0) {
      r->close();
      fmt::print("closed\n");
    } else {
      fmt::print("lost\n");
    }
    std::fflush(stdout);  // stdout is a pipe in the tests: the line must not wait in the buffer
  } else if (cmd == "port_please") {
    auto r = co_await try_port_please(ep, args.at(1));
    if (!r) co_return fail(r.error());
    fmt::print("node name={} port={} type={} protocol={} high={} low={} extra={}\n", r->name, r->port, r->type,
               r->protocol, r->highest_version, r->lowest_version, r->extra);
  } else if (cmd == "lookup") {
    auto r = co_await try_lookup_node(args.at(1), ep.port);
    if (!r) co_return fail(r.error());
    fmt::print("address {} {}\n", r->host, r->port);
  } else if (cmd == "names") {
    auto r = co_await try_names(ep);
    if (!r) co_return fail(r.error());
    for (const auto& n : *r) fmt::print("name {} port {}\n", n.name, n.port);
    fmt::print("end\n");
  } else if (cmd == "answering") {
    fmt::print("{}\n", co_await epmd_answering(ep) ? "yes" : "no");
  } else {
    fmt::print("error: unknown command {}\n", cmd);
    status = 2;
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  epmd_endpoint ep("localhost", epmd_port_from_env());
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--host" && i + 1 < argc) {
      ep.host = argv[++i];
    } else if (a == "--port" && i + 1 < argc) {
      ep.port = static_cast<std::uint16_t>(std::stoi(argv[++i]));
    } else {
      args.push_back(a);
    }
  }
  if (args.empty()) {
    fmt::print(stderr, "usage: epmd_client_tool [--host H] [--port P] COMMAND ARGS...\n");
    return 2;
  }
  asio::io_context io;
  asio::co_spawn(io, run(std::move(args), std::move(ep)), asio::detached);
  io.run();
  return status;
}
