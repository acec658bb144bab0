// The EPMD server, on a caller-given io_context: the same code is the cnode-epmd program and the EPMD a node embeds
// (--embedded-epmd: start one when epmd_answering() says none answers on the port).
//
//   cnode::epmd::server srv(io, {.port = 4369});
//   srv.start();            // binds and listens (throws epmd_exception; or start(failure&))
//   io.run();               // any number of threads: the server serialises itself on a strand
//   srv.stop();             // closes the listeners and every connection (registrations vanish)
//
// Behaviour follows OTP 25's epmd on the wire (see registry.hpp for creations and epmd/README.section.md):
// - one coroutine a connection, no thread a client; a request must arrive whole within packet_timeout (epmd's
//   default 60 s), a response must be written within it too, otherwise the connection is closed;
// - a connection that registered stays open without a deadline; its closing, or any byte on it, unregisters;
// - ALIVE2, DUMP, KILL and STOP only from the local host (peer on 127/8 or ::1, or the same address as ours);
//   KILL answers "NO" while names are registered and STOP is refused, unless relaxed_command_check;
// - malformed requests close the connection without an answer, as epmd does, and log one line saying why.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>

#include "epmd/error.hpp"
#include "epmd/registry.hpp"

namespace cnode::epmd {

struct server_options {
  std::uint16_t port = default_port;  // 0 picks a free port (see server::port())
  // Empty: every IPv4 and IPv6 address. Otherwise these, plus the loopback addresses, as epmd -address does.
  std::vector<boost::asio::ip::address> addresses;
  std::chrono::milliseconds packet_timeout{std::chrono::seconds(60)};
  bool relaxed_command_check = false;
  std::size_t max_connections = 20000;  // beyond this, new connections are closed at once
  std::size_t max_unused_names = registry::default_max_unused;
};

struct server_stats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t requests = 0;
  std::uint64_t bad_requests = 0;
  std::uint64_t timeouts = 0;
  std::size_t open_connections = 0;
  std::size_t registered = 0;
};

class server {
 public:
  server(boost::asio::io_context& io, server_options opts);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  void start();                 // throws epmd_exception
  bool start(failure& f);       // false and f filled when no listener could be opened
  void stop();                  // idempotent; safe from any thread
  std::uint16_t port() const;   // the bound port
  server_stats stats() const;   // counters read atomically; safe from any thread

  // Called (on the server's strand) after a KILL_REQ was answered "OK". Default: stop().
  void on_kill(std::function<void()> f);

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// --embedded-epmd: when no EPMD answers on 127.0.0.1:opts.port, starts this server on io and returns it; returns
// nullptr when one answers already (also when another process won the race to bind the port meanwhile). Blocks for
// at most about probe_timeout (it asks on a private io_context, so io need not run yet). Throws epmd_exception when
// the port cannot be bound and still no EPMD answers.
std::unique_ptr<server> start_epmd_unless_running(boost::asio::io_context& io, server_options opts,
                                                  std::chrono::milliseconds probe_timeout = std::chrono::seconds(1));

// "an address is local": loopback, or equal to the local address of the connection (epmd_srv.c conn_local_peer).
bool is_local_peer(const boost::asio::ip::address& peer, const boost::asio::ip::address& local);

}  // namespace cnode::epmd
