#pragma once
// TLS distribution as inet_tls_dist does it: the options of `erl -ssl_dist_optfile FILE` (one term,
// [{server, Opts}, {client, Opts}], ssl_dist_sup.erl:90 consult), mapped onto OpenSSL contexts. The handshake and
// the framing then run inside TLS exactly as over TCP (inet_tls_dist.erl:270 accept_one, :580 do_setup_connect).
//
// Reading the file is sans-I/O (parse_tls_optfile takes the text); make_tls_contexts loads certificates and keys
// and throws std::runtime_error with a sentence when one cannot be had.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ssl/context.hpp>

namespace cnode::dist {

// What one role (the server accepting, the client connecting) uses. Unset fields take cnode's defaults.
struct tls_role_options {
  std::optional<std::string> certfile;    // PEM: the certificate, then its chain
  std::optional<std::string> keyfile;     // PEM; default: the key is in certfile too (as OTP reads it)
  std::optional<std::string> password;    // of an encrypted keyfile
  std::optional<std::string> cacertfile;  // PEM: the CAs that vouch for peers
  std::optional<bool> verify_peer;        // {verify, verify_peer | verify_none}; default: peer
  std::optional<bool> fail_if_no_peer_cert;  // server; default: true when verifying peers
  // client: the name to send (SNI) and to check the server's certificate against; default: the host part of
  // the node name dialled (inet_tls_dist.erl:585). `disable`: neither.
  std::optional<std::string> server_name_indication;
  bool sni_disabled = false;
  std::optional<std::vector<int>> versions;  // 12 = TLS 1.2, 13 = TLS 1.3; default: both
  std::optional<std::string> ciphers;        // OpenSSL's list for TLS 1.2 (SSL_CTX_set_cipher_list)
  std::optional<std::string> ciphersuites;   // TLS 1.3 suites (SSL_CTX_set_ciphersuites)
  std::optional<int> depth;                  // longest chain of intermediates
  std::optional<bool> honor_cipher_order;    // server
  std::optional<bool> reuse_sessions;        // client: resume sessions (default on)
};

struct tls_options {
  tls_role_options server, client;
  // An option set on the command line applies to both roles and wins over the optfile.
  void override_both(const tls_role_options& cli);
};

struct tls_optfile_result {
  tls_options options;
  std::vector<std::string> ignored;  // one line each: an option accepted but not mapped, and why
  std::string error;                 // empty on success
};

// `text` is the optfile's content; `name` names it in messages.
tls_optfile_result parse_tls_optfile(std::string_view text, std::string_view name);

// "1.2,1.3", "tlsv1.2", ... -> {12, 13}; nullopt and `error` set for anything else.
std::optional<std::vector<int>> parse_tls_versions(std::string_view text, std::string& error);

// The two OpenSSL contexts of the distribution: built once at start and shared by every connection.
struct tls_contexts {
  std::shared_ptr<boost::asio::ssl::context> server;
  std::shared_ptr<boost::asio::ssl::context> client;
  tls_role_options server_options, client_options;  // as given, for the client's name check
};

// Loads files and applies every option; throws std::runtime_error naming the option and OpenSSL's reason.
std::shared_ptr<const tls_contexts> make_tls_contexts(const tls_options& options);

// The server name a client sends and checks for `peer_node` (name@host): "" for none.
std::string tls_server_name(const tls_role_options& client, std::string_view peer_node);

}  // namespace cnode::dist
