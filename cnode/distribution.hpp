// The node's side of the distribution: the listener, outgoing connections (auto-connect on first send, explicit
// connect/disconnect), the translation between signals and control messages, nodeup/nodedown, and EPMD
// registration. net_kernel's decisions during handshakes (simultaneous connects, `alive`) are made here, as the
// handshake_policy of every handshake.
#pragma once

#include <chrono>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "cnode/log.hpp"
#include "cnode/node.hpp"
#include "cnode/oneshot.hpp"
#include "dist/connection.hpp"
#include "dist/control.hpp"
#include "dist/handshake_driver.hpp"
#include "dist/tls.hpp"
#include "epmd/client.hpp"

namespace cnode {

// Bounds on handshakes from other nodes (see distribution::take_handshake_slot).
inline constexpr std::size_t max_handshakes = 512;
inline constexpr std::size_t per_address_handshakes = 256;

struct distribution_config {
  bool hidden = false;
  dist::cookie_jar cookies;  // the cookies at start; from then on distribution::cookie() / set_cookie()
  std::string listen_address = "0.0.0.0";
  std::uint16_t listen_port = 0;        // 0: any free port
  bool use_epmd = true;                 // register with EPMD; off: EPMD-less on a fixed port
  std::string epmd_host = "localhost";  // where our own EPMD runs
  std::uint16_t epmd_port = 4369;       // also used to look other nodes up on their hosts
  std::chrono::milliseconds net_ticktime{60'000};
  std::chrono::milliseconds setup_time{7'000};
  std::size_t outbound_limit = 1024 * 1024;
  std::size_t max_message = 128 * 1024 * 1024;  // a longer packet or reassembled message closes its connection
  // Bytes held for messages still missing fragments, all peers together; crossing it closes the connection
  // whose fragment would cross it.
  std::size_t max_partial = 512 * 1024 * 1024;
  // Offer DIST_HDR_ATOM_CACHE (--dist-atom-cache): peers then refer to atoms they sent before by cache index
  // (the receiving side, dist/fragment.hpp). We still send every header without references (N = 0).
  bool atom_cache = false;
  // Peers reached without EPMD: node name -> host:port.
  std::unordered_map<std::string, epmd::node_address> static_peers;
  // TLS distribution (inet_tls_dist): every connection, both ways, runs inside TLS. Contexts are built at start().
  std::optional<dist::tls_options> tls;
  // net_kernel:allow/1: when not empty, only these nodes (dist::is_allowed's forms) may connect, and only these are
  // dialled; every other node is refused at the handshake with not_allowed.
  std::vector<std::string> allow;
};

struct connection_info {
  atom node;
  bool visible;
  dist::connection_stats stats;
  dist::dflags flags = 0;  // what both directions use (ours & theirs)
  std::uint32_t creation = 0;
};

// What the distribution has seen since start, for /metrics and /status.
struct distribution_stats {
  std::atomic<std::uint64_t> accepted{0};        // handshakes from other nodes that ended in a connection
  std::atomic<std::uint64_t> connected{0};       // our own connects that ended in a connection
  std::atomic<std::uint64_t> connect_failed{0};  // our own connects that failed
  std::atomic<std::uint64_t> busy_waits{0};      // sends that found their connection over the busy limit
  std::atomic<std::uint64_t> connections_lost{0};
  // Handshakes from other nodes refused, by reason (the handshake's error message).
  std::map<std::string, std::uint64_t> refused() const {
    std::lock_guard lk(mu);
    return refused_;
  }
  void count_refused(const std::string& why) {
    std::lock_guard lk(mu);
    ++refused_[why];
  }

 private:
  mutable std::mutex mu;
  std::map<std::string, std::uint64_t> refused_;
};

class distribution final : public remote_router, public dist::handshake_policy {
 public:
  // Called for SPAWN_REQUEST (erpc and spawn_request/5 from other nodes); the default refuses with notsup.
  using spawn_handler = std::function<void(atom from_node, dist::spawn_request_msg req, term args)>;

  distribution(node& n, distribution_config cfg);
  ~distribution() override;

  // Listens and registers with EPMD (taking the creation EPMD gives). Throws std::runtime_error with a sentence.
  asio::awaitable<void> start();
  // Closes every connection and unregisters from EPMD.
  void stop();
  std::uint16_t port() const noexcept { return port_; }
  const distribution_config& config() const noexcept { return cfg_; }

  // net_kernel:connect_node/1: true once a connection is up.
  asio::awaitable<bool> connect(atom node);
  // Closes the connection to node (false when none is up) without waiting for it to be down.
  bool disconnect(atom node);
  // erlang:disconnect_node/1: as disconnect, and returns once the node is down here, as net_kernel's
  // do_disconnect waits for the controller's exit: nodedown sent, links and monitors broken with noconnection.
  asio::awaitable<bool> disconnect_node(atom node);

  // erlang:set_cookie/1,2, get_cookie/0,1 (auth.erl): the cookie of the next handshake with a node, connecting and
  // accepting alike (dist_util.erl:225 and :455 both take auth:get_cookie(Node)); connections that are up stay.
  // This node's own name stands for our cookie, as in auth.erl. Never logged.
  void set_cookie(std::string cookie);
  void set_cookie(atom node, std::string cookie);
  std::string cookie() const;
  std::string cookie(atom node) const;
  std::vector<atom> nodes(bool visible, bool hidden) const;
  bool is_connected(atom node) const;  // a connection to node is up
  std::vector<connection_info> connections() const;
  const distribution_stats& stats() const noexcept { return stats_; }
  // Listening, and (with EPMD) registered there.
  bool healthy() const;
  // net_kernel:monitor_nodes/1,2: {nodeup, Node} and {nodedown, Node} messages to pid.
  void monitor_nodes(const term& pid, bool on, bool include_hidden = false);
  // erlang:monitor_node/2: {nodedown, Node} once, when the connection to node goes down (at once if there is none).
  void monitor_node(const term& pid, atom node, bool on);

  void set_spawn_handler(spawn_handler h) { spawn_handler_ = std::move(h); }
  // Sends a raw control message to a node (connecting if needed).
  void send_control(atom node, dist::control_message m);

  // remote_router
  void route_remote(atom node, const term& to, signal s) override;
  // handshake_policy
  dist::accept_answer accept_pending(std::string_view node, bool dynamic, bool published) override;
  bool is_pending(std::string_view node) override;
  asio::awaitable<void> wait_pending(std::string_view node) override;

 private:
  class handler;
  struct peer {
    std::shared_ptr<dist::connection> conn;  // set once up
    bool connecting = false;                 // our own attempt is running
    bool attempt_superseded = false;         // the peer's attempt won (ok_simultaneous / replaced)
    // Our attempt got "nok": the peer's own attempt wins and is on its way; until this deadline we wait for it
    // (as net_kernel does) instead of reporting a failed connect or dialling again.
    std::chrono::steady_clock::time_point awaiting_peer_until{};
    bool awaiting_peer() const noexcept { return std::chrono::steady_clock::now() < awaiting_peer_until; }
    std::vector<dist::out_packet> queue;         // packets waiting for the connection
    std::vector<signal> queued_signals;          // the signals behind them, answered if the connect fails
    std::vector<term> queued_targets;
  };

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> handle_accept(asio::ip::tcp::socket socket);
  bool allowed(std::string_view node) const { return cfg_.allow.empty() || dist::is_allowed(node, cfg_.allow); }
  asio::awaitable<void> run_connect(atom node);
  void start_connect(atom node);
  void connection_up(atom node, dist::transport stream, dist::handshake_result res, bool initiated);
  void connect_failed(atom node, const std::string& why);
  void on_packet(atom node, dist::connection& c, std::span<const std::byte> packet);
  void on_message(atom node, dist::connection& c, dist::inbound_message& m);
  void on_down(atom node, dist::connection& c, std::error_code reason);
  void dispatch(atom node, dist::control_message& m);
  std::optional<dist::control_message> to_control(const term& to, signal& s, dist::dflags flags) const;
  // conn: the node's connection as the caller found it (null: look it up); an up one takes the packet at once.
  void send_packet(atom node, dist::out_packet packet, const term* to, signal* s, const term* sender,
                   bool noconnect = false, std::shared_ptr<dist::connection> conn = nullptr);
  // Onto an up connection; a busy one suspends the sender (mu_ not held).
  void send_on(dist::connection& conn, dist::out_packet& packet, const term* sender, bool noconnect);
  dist::handshake_config handshake_config() const;
  // Until old is no longer node's connection (its on_down has run); 4 s at most.
  asio::awaitable<void> wait_replaced(atom node, const std::shared_ptr<dist::connection>& old);
  void notify(atom node, bool up, bool visible);
  void notify_locked(atom node, bool up, bool visible);  // mu_ held

  // Connection arbitration is woken, not polled: a coroutine waiting for a node's connection state to change (an
  // attempt's outcome, an old connection's on_down) registers a watcher under mu_ and sleeps until the state changes
  // or its own deadline (the end of the wait, or the moment a "nok" grace ends) passes.
  struct watcher {
    std::uint64_t id;
    oneshot<bool> shot;
  };
  // Under mu_: a watcher for node; the caller waits on it with mu_ released.
  watcher watch_locked(atom node, const asio::any_io_executor& ex);
  void unwatch(atom node, std::uint64_t id);  // after a wait that timed out (takes mu_)
  void wake_locked(atom node);                // mu_ held: every watcher of node

  node& node_;
  distribution_config cfg_;
  std::uint16_t port_ = 0;
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::shared_ptr<const dist::tls_contexts> tls_;  // set by start() when cfg_.tls
  std::optional<epmd::registration> registration_;
  spawn_handler spawn_handler_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool stopping_ = false;
  distribution_stats stats_;

  // Handshakes from other nodes past their send_name, by the name they gave. Kept as strings, not atoms, and
  // forgotten when the handshake ends: nothing a peer says before it has proven the cookie creates an atom or a
  // lasting entry (peers_ gets the node only once its handshake is through).
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  bool accepting_locked(atom node) const { return accepting_.contains(node.text()); }
  friend class accept_guard;

  // Handshakes from other nodes under way, oldest first. Past max_handshakes in all (or per_address_handshakes
  // from one address) the oldest is dropped to make room: a real peer finishes in milliseconds, so a flood of
  // half-open connections cannot keep it out.
  struct handshake_slot {
    std::uint64_t id;
    std::string address;
    std::function<void()> evict;
  };
  std::uint64_t take_handshake_slot(const std::string& address, std::function<void()> evict);
  void free_handshake_slot(std::uint64_t id);
  // Failed cookie checks (and TLS handshakes) by address: after a few, that address's next handshakes start later.
  std::chrono::milliseconds failure_delay(const std::string& address);
  void count_failure(const std::string& address, bool failed);
  std::mutex hs_mu_;
  std::deque<handshake_slot> hs_slots_;
  std::uint64_t next_slot_id_ = 1;
  struct failures {
    unsigned count = 0;
    std::chrono::steady_clock::time_point last;
  };
  std::unordered_map<std::string, failures> failures_;
  // After a failed connect, sends to that node do not dial it again until `until` (100 ms, doubling to 4 s; an
  // explicit connect ignores it): messages queued for a dead peer cannot make a storm of connects and lookups.
  struct backoff {
    std::chrono::steady_clock::time_point until;
    std::chrono::milliseconds delay{0};
  };
  std::unordered_map<atom, backoff> backoff_;  // under mu_
  void answer_unreachable(const term& to, const signal& s);
  log::limiter refused_log_, connect_log_, accept_log_{1};

  mutable std::mutex cookie_mu_;
  dist::cookie_jar cookies_;  // under cookie_mu_

  mutable std::mutex mu_;
  std::shared_ptr<dist::partial_budget> partial_budget_;  // shared by every connection
  std::unordered_map<atom, peer> peers_;
  // Changed (under mu_) whenever a peer's connection is set or cleared: a thread's cached look-up (route_remote)
  // is good while it reads the same value, so a send to a connected node takes no lock.
  std::atomic<std::uint64_t> conn_epoch_{0};
  const std::uint64_t id_;  // this distribution among all of the process's (keys those caches)
  std::unordered_set<std::string, string_hash, std::equal_to<>> accepting_;
  std::vector<std::pair<term, bool>> node_monitors_;           // monitor_nodes subscribers (pid, hidden too)
  std::vector<std::pair<term, atom>> single_node_monitors_;    // monitor_node/2 subscribers
  std::unordered_map<atom, std::vector<watcher>> watchers_;
  std::uint64_t next_watcher_ = 1;
};

}  // namespace cnode
