#pragma once
// The distribution handshake as a pure state machine (dist_util.erl), in both roles. Sans-I/O: feed it the bytes
// read from the socket, write what take_output() returns, answer its questions about the node's other
// connections. It never blocks, never throws on peer bytes, and knows nothing of sockets or time: the driver
// (dist/handshake_driver.hpp) bounds each step by net_setuptime.
//
// Wire format (OTP 23+, "version 6"), every message behind a 2-byte big-endian length until 'a' (4-byte over TLS):
//   initiator -> 'N' Flags:64 Creation:32 NLen:16 Name        (also accepted: 'n' Version:16 Flags:32 Name)
//   acceptor  -> 's' Status                                   ("named:" NLen:16 Name Creation:32 for NAME_ME)
//   acceptor  -> 'N' Flags:64 Challenge:32 Creation:32 NLen:16 Name
//   initiator -> 'c' FlagsHigh:32 Creation:32                 (only after 'n')
//   initiator -> 'r' Challenge:32 Digest:16
//   acceptor  -> 'a' Digest:16

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "dist/cookie.hpp"
#include "dist/error.hpp"
#include "dist/flags.hpp"

namespace cnode::dist {

struct handshake_config {
  std::string this_node;                 // "name@host"; a NAME_ME initiator gives just the host
  std::uint32_t creation = 0;            // ours (from EPMD's ALIVE2_X_RESP); 0 when asking for a name
  dflags flags = default_flags(false);   // what we advertise; PUBLISHED here decides visible or hidden
  dflags required = 0;                   // refused unless the peer also has these (beyond mandatory_25)
  bool request_name = false;             // initiator: ask the peer to name us (DFLAG_NAME_ME)
  cookie_jar cookies;
  // Length header of each handshake message: 2 over TCP; 4 inside TLS, where inet_tls_dist keeps {packet, 4} from
  // the start (inet_tls_dist.erl:272 accept_one, :585 do_setup_connect).
  unsigned header_bytes = 2;
  // Randomness comes in from outside so that tests are deterministic: the driver fills these from RAND_bytes.
  std::uint32_t challenge = 0;           // the challenge we send
  std::uint64_t name_seed = 0;           // acceptor, NAME_ME peer: the random part of the name we assign
  std::uint32_t named_creation = 0;      // acceptor, NAME_ME peer: the creation we assign (>= 4)
};

// Fills challenge, name_seed and named_creation from the OpenSSL CSPRNG.
void randomize(handshake_config& config);

// What net_kernel knows about another connection to the same node name (net_kernel.erl: connection_state()).
enum class connection_state { none, pending, up, up_pending };

// The acceptor's question to the node layer: may this node connect? (net_kernel.erl:1055 accept_pending)
enum class accept_answer {
  ok,               // go on ("ok", or "named:" for a NAME_ME peer)
  ok_simultaneous,  // we had a pending attempt to this node and drop it in favour of this one
  nok,              // we had a pending attempt and keep it: this one ends with "nok"
  alive,            // we think a connection is up: ask the peer, and if it insists, replace the old one
  already_pending,  // the connection is already being replaced: close without a word
  not_allowed,      // refused by policy (allow list)
};

// net_kernel's rule (net_kernel.erl:1055). Node names compare as atoms: by their UTF-8 bytes.
accept_answer decide_accept(std::string_view this_node, std::string_view peer_node,
                            connection_state existing) noexcept;

// net_kernel:allow/1's rule (dist_util.erl:826 is_allowed): `node` matches an entry that is the same node name, a
// host ("host.example.org": any node there) or a name before '@' ("node@": that name on any host). An empty list
// allows no one; callers skip the check when no allow list is set.
bool is_allowed(std::string_view node, const std::vector<std::string>& allowed) noexcept;

// True for "name@host" with both parts non-empty and exactly one '@' (dist_util.erl:761), at most 255 bytes.
bool is_node_name(std::string_view name) noexcept;

// The name net_kernel gives a NAME_ME node: the seed in base 36, uppercase, "@", host (net_kernel.erl:1244).
std::string dynamic_node_name(std::uint64_t seed, std::string_view host);

// md5(Cookie ++ integer_to_list(Challenge)) (dist_util.erl:528).
std::array<std::byte, 16> gen_digest(std::uint32_t challenge, std::string_view cookie);

struct peer_info {
  std::string node;            // the peer's name (assigned by us for a NAME_ME peer)
  std::uint32_t creation = 0;
  dflags flags = 0;            // as the peer advertised them, MANDATORY_25_DIGEST expanded
  dflags effective = 0;        // ours & theirs: what both directions use (dist_util.erl:144)
  int version = 6;             // 5 when the peer started with the old 'n' send_name
  bool named_by_us = false;    // the peer asked for a name and we gave it one
  bool published() const noexcept { return is_published(effective); }
};

class handshake {
 public:
  enum class role { initiator, acceptor };
  enum class state {
    running,  // needs bytes from the peer (after writing take_output())
    asking,   // needs an answer: see question()
    done,     // write take_output(), then the connection is up; leftover() are its first bytes
    failed,   // write take_output() (a status may be pending, e.g. "not_allowed"), then close
  };
  enum class question {
    none,
    accept_pending,  // acceptor: answer_accept(decide_accept(...)) for question_node()
    is_pending,      // initiator, peer said "alive": answer_is_pending(is our attempt still wanted?)
    wait_pending,    // acceptor after "alive"/true: take the old connection down, then answer_wait_pending()
  };

  // The initiator's send_name is ready in take_output() at once.
  static handshake initiator(handshake_config config, std::string peer_node);
  static handshake acceptor(handshake_config config);

  void feed(std::span<const std::byte> bytes);
  void answer_accept(accept_answer a);
  void answer_is_pending(bool still_pending);
  void answer_wait_pending();

  // Bytes to write, already framed; empties the buffer.
  std::vector<std::byte> take_output();
  bool has_output() const noexcept { return !out_.empty(); }

  state current() const noexcept { return state_; }
  role which() const noexcept { return role_; }
  question asked() const noexcept { return question_; }
  const std::string& question_node() const noexcept { return peer_.node; }
  bool question_dynamic() const noexcept { return peer_.named_by_us; }
  bool question_published() const noexcept;  // the connection would be visible

  std::error_code error() const noexcept { return error_; }
  // A log line in the BEAM's words when it failed, e.g.
  // "Connection attempt from node a@h rejected since it cannot handle [\"BIG_CREATION\"]."
  const std::string& detail() const noexcept { return detail_; }

  // Which message the machine waits for ("recv_name", "recv_status", ..., "recv_ack"): for log lines.
  const char* step_name() const noexcept;
  const peer_info& peer() const noexcept { return peer_; }
  // Our node name and creation: as configured, or as assigned by the peer ("named:").
  const std::string& this_node() const noexcept { return this_node_; }
  std::uint32_t this_creation() const noexcept { return this_creation_; }
  dflags this_flags() const noexcept { return this_flags_; }
  // Bytes received after the last handshake message: the start of the 4-byte framed stream.
  std::span<const std::byte> leftover() const noexcept;

 private:
  enum class step {
    recv_name, recv_status, recv_alive_reply, recv_challenge, recv_complement, recv_reply, recv_ack, finished
  };

  handshake(role r, handshake_config config);
  void process();
  bool handle(std::span<const std::byte> msg);  // false: failed
  bool on_name(std::span<const std::byte> msg);
  bool on_status(std::span<const std::byte> msg);
  bool on_alive_reply(std::span<const std::byte> msg);
  bool on_challenge(std::span<const std::byte> msg);
  bool on_complement(std::span<const std::byte> msg);
  bool on_reply(std::span<const std::byte> msg);
  bool on_ack(std::span<const std::byte> msg);
  bool check_flags(dflags flags);
  void send_challenge();
  void send_ack();
  void send(std::span<const std::byte> msg);
  void send(std::string_view msg);
  bool fail(std::error_code ec, std::string detail);
  const std::string& cookie() const;

  role role_;
  handshake_config config_;
  state state_ = state::running;
  step step_;
  question question_ = question::none;
  bool replacing_ = false;      // acceptor answered "alive": replace the old connection before 'a'
  std::string this_node_;
  std::uint32_t this_creation_ = 0;
  dflags this_flags_ = 0;
  std::uint32_t peer_challenge_ = 0;
  peer_info peer_;
  std::vector<std::byte> in_;
  std::size_t consumed_ = 0;
  std::vector<std::byte> out_;
  std::error_code error_;
  std::string detail_;
};

}  // namespace cnode::dist
