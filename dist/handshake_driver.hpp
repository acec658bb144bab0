#pragma once
// Runs a dist::handshake over a transport (TCP, or TLS over TCP): the thin Asio shell around the sans-I/O state
// machine. Each step is bounded by net_setuptime (default 7 s, net_kernel:connecttime/0), so a stalled peer is
// dropped; over TLS the TLS handshake comes first, bounded the same way (ssl:handshake(.., connecttime())).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "dist/handshake.hpp"
#include "dist/transport.hpp"

namespace cnode::dist {

inline constexpr std::chrono::milliseconds default_setup_time{7000};

// What the handshake needs to know about the node's other connections: net_kernel's side of the conversation.
class handshake_policy {
 public:
  virtual ~handshake_policy() = default;
  // Acceptor: may `node` connect now? Usually decide_accept(this_node, node, state of our entry for node), after
  // recording this attempt as the pending one. `dynamic`: a NAME_ME peer, just named by us.
  virtual accept_answer accept_pending(std::string_view node, bool dynamic, bool published) = 0;
  // Initiator, the peer said "alive": is this attempt still the one we want (net_kernel is_pending)?
  virtual bool is_pending(std::string_view node) = 0;
  // Acceptor after "alive"/"true": take the old connection to `node` down and return once it is gone.
  // Bounded by the driver's setup time.
  virtual boost::asio::awaitable<void> wait_pending(std::string_view node) = 0;
};

struct handshake_result {
  std::error_code ec;               // empty: the connection is up
  std::string detail;               // for the log when ec is set (in the BEAM's words where it has some)
  peer_info peer;
  std::string this_node;            // ours; assigned by the peer with NAME_ME
  std::uint32_t this_creation = 0;
  std::vector<std::byte> leftover;  // pass to connection::create
};

// Drives `hs` on a connected stream (past its TLS handshake) until done or failed. On failure whatever the machine
// still had to say (e.g. "snot_allowed") is written before returning; the caller closes the stream.
boost::asio::awaitable<handshake_result> run_handshake(transport& stream, handshake& hs, handshake_policy& policy,
                                                       std::chrono::milliseconds setup_time = default_setup_time);

// An accepted connection: the TLS handshake (server) when the transport is TLS, then the acceptor role.
// config.challenge etc. are randomized here.
boost::asio::awaitable<handshake_result> accept_handshake(transport& stream, handshake_config config,
                                                          handshake_policy& policy,
                                                          std::chrono::milliseconds setup_time = default_setup_time);

// Connects stream.socket() to host:port (resolve and connect bounded by setup_time too), the TLS handshake (client;
// set_server_name first) when the transport is TLS, then the initiator role.
boost::asio::awaitable<handshake_result> connect_handshake(transport& stream, std::string host, std::uint16_t port,
                                                           std::string peer_node, handshake_config config,
                                                           handshake_policy& policy,
                                                           std::chrono::milliseconds setup_time = default_setup_time);

// The same over a plain socket, which stays the caller's.
boost::asio::awaitable<handshake_result> accept_handshake(boost::asio::ip::tcp::socket& socket,
                                                          handshake_config config, handshake_policy& policy,
                                                          std::chrono::milliseconds setup_time = default_setup_time);
boost::asio::awaitable<handshake_result> connect_handshake(boost::asio::ip::tcp::socket& socket, std::string host,
                                                           std::uint16_t port, std::string peer_node,
                                                           handshake_config config, handshake_policy& policy,
                                                           std::chrono::milliseconds setup_time = default_setup_time);

}  // namespace cnode::dist
