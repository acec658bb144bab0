#pragma once
// Errors of the distribution layer: handshake failures and connection-down reasons.
// Where the BEAM has a name for the same thing (nodedown reasons, dist_util shutdown reasons) we use it.

#include <string_view>
#include <system_error>

namespace cnode::dist {

enum class error {
  // handshake: what the peer sent
  bad_message = 1,          // malformed or unexpected handshake message
  bad_node_name,            // not name@host (or not a host for NAME_ME)
  name_mismatch,            // challenge from a node other than the one we dialled
  bad_cookie,               // digest did not match: the cookies differ
  missing_flags,            // peer lacks mandatory distribution flags
  unexpected_status,        // a status we do not know, or one not valid in this situation
  // handshake: statuses that end it
  not_allowed,              // refused: "not_allowed" status (sent or received)
  nok,                      // simultaneous connect lost: the other connection wins
  alive_refused,            // "alive" answered with false
  already_pending,          // a replacement for this node is already being set up
  // both
  setup_timeout,            // a handshake step did not finish within net_setuptime
  connection_closed,        // the peer closed the socket
  tls_failed,               // the TLS handshake failed (a certificate refused, a peer not speaking TLS, ...)
  // connection
  net_tick_timeout,         // nothing received during net_ticktime
  disconnected,             // closed on our side (explicit close)
  packet_too_large,         // a 4-byte framed packet over the configured maximum
  send_timeout,             // a write made no progress during net_ticktime
  handler_failed,           // the upper layer threw from on_packet: the connection is dropped, not the node
  // cookie (auth.erl's reasons for refusing to start)
  cookie_file_access,       // the cookie file is readable or writable by group/others, or not a regular file
  cookie_file_io,           // could not read or create the cookie file
  bad_cookie_characters,    // a character outside ' '..'~' before the trailing whitespace
  cookie_too_short,         // empty cookie
  no_home,                  // neither HOME nor XDG_CONFIG_HOME to find the cookie file
};

const std::error_category& dist_category() noexcept;

inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), dist_category()}; }

// The BEAM's atom for a reason (nodedown reason / shutdown reason), e.g. "net_tick_timeout".
std::string_view reason_name(std::error_code ec) noexcept;

}  // namespace cnode::dist

template <>
struct std::is_error_code_enum<cnode::dist::error> : std::true_type {};
