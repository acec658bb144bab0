#include "dist/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509err.h>

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "etf/format.hpp"
#include "etf/parse.hpp"
#include "etf/utf8.hpp"

namespace cnode::dist {

namespace asio = boost::asio;
using etf::term;

void tls_options::override_both(const tls_role_options& cli) {
  for (tls_role_options* r : {&server, &client}) {
    if (cli.certfile) {  // a certificate from the command line comes with its own key (or none: in the file)
      r->certfile = cli.certfile;
      r->keyfile = cli.keyfile;
    } else if (cli.keyfile) {
      r->keyfile = cli.keyfile;
    }
    if (cli.cacertfile) r->cacertfile = cli.cacertfile;
    if (cli.verify_peer) r->verify_peer = cli.verify_peer;
    if (cli.versions) r->versions = cli.versions;
    if (cli.depth) r->depth = cli.depth;
  }
  if (cli.fail_if_no_peer_cert) server.fail_if_no_peer_cert = cli.fail_if_no_peer_cert;
  if (cli.server_name_indication || cli.sni_disabled) {
    client.server_name_indication = cli.server_name_indication;
    client.sni_disabled = cli.sni_disabled;
  }
}

std::optional<std::vector<int>> parse_tls_versions(std::string_view text, std::string& error) {
  std::vector<int> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view v = text.substr(start, end - start);
    if (v.starts_with("tlsv")) v.remove_prefix(4);
    if (v == "1.2") {
      out.push_back(12);
    } else if (v == "1.3") {
      out.push_back(13);
    } else {
      error = fmt::format("unknown TLS version '{}' (1.2 and 1.3 are supported)", text.substr(start, end - start));
      return std::nullopt;
    }
    start = end + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

// An Erlang string: a list of code points (charlist) or a binary, as file names and passwords are given.
std::optional<std::string> as_string(const term& t) {
  if (t.is_binary()) {
    auto b = t.bytes();
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  std::vector<term> chars;
  if (!t.is_list() || !t.list_to_vector(chars)) return std::nullopt;
  std::string s;
  for (const auto& c : chars) {
    if (!c.is_small() || c.small() < 0 || c.small() > 0x10FFFF) return std::nullopt;
    etf::append_utf8(s, static_cast<std::uint32_t>(c.small()));
  }
  return s;
}

std::optional<bool> as_bool(const term& t) {
  if (t.is_atom() && t.atom_value().text() == "true") return true;
  if (t.is_atom() && t.atom_value().text() == "false") return false;
  return std::nullopt;
}

// Options that tune or log but do not change who is trusted: accepted, not mapped, one note each.
bool tuning_only(std::string_view k) {
  static constexpr std::string_view keys[] = {
      "hibernate_after", "log_level", "log_alert", "keep_secrets", "padding_check", "beast_mitigation",
      "max_handshake_size", "middlebox_comp_mode", "handshake", "session_tickets", "anti_replay",
      "use_ticket", "early_data", "alpn_advertised_protocols", "alpn_preferred_protocols",
      "next_protocols_advertised", "client_preferred_next_protocols", "receiver_spawn_opts",
      "sender_spawn_opts", "recv_timeout", "max_fragment_length", "signature_algs", "signature_algs_cert",
      "eccs", "supported_groups", "customize_hostname_check", "dhfile", "secure_renegotiate",
      "client_renegotiation", "user_lookup_fun", "psk_identity", "srp_identity", "sni_hosts", "sni_fun",
      "reuse_session", "session_id", "erl_dist", "crl_cache", "cert_policy_opts", "fallback",
      "ocsp_stapling", "ocsp_responder_certs", "ocsp_nonce", "stateless_tickets_seed"};
  return std::find(std::begin(keys), std::end(keys), k) != std::end(keys);
}

const char* why_not_mapped(std::string_view k) {
  if (k == "secure_renegotiate") return "OpenSSL only renegotiates securely";
  if (k == "dhfile") return "OpenSSL picks its own Diffie-Hellman parameters";
  if (k == "crl_cache") return "crl_check is not supported (only crl_check false)";
  if (k == "signature_algs" || k == "signature_algs_cert" || k == "eccs" || k == "supported_groups")
    return "OpenSSL's default algorithms are used";
  if (k == "customize_hostname_check") return "OpenSSL's host name rules apply (wildcards in the leftmost label)";
  return "it does not change who is trusted";
}

// One {Key, Value} of a role's list into `r`; false with `error` set for what cannot be honoured.
bool apply_option(const term& opt, bool server, tls_role_options& r, std::vector<std::string>& ignored,
                  std::string& error) {
  const std::string role = server ? "server" : "client";
  if (!opt.is_tuple(2) || !opt.element(0).is_atom()) {
    error = fmt::format("{} option {} is not {{Key, Value}}", role, etf::to_string(opt));
    return false;
  }
  const std::string key(opt.element(0).atom_value().text());
  const term& v = opt.element(1);
  auto bad = [&](std::string_view want) {
    error = fmt::format("{} option {}: {} wanted, not {}", role, key, want, etf::to_string(v));
    return false;
  };
  auto note = [&](std::string why) {
    ignored.push_back(fmt::format("{} option {} is not mapped onto OpenSSL: {}", role, key, why));
    return true;
  };
  if (key == "certfile" || key == "keyfile" || key == "cacertfile" || key == "password") {
    auto s = as_string(v);
    if (!s) return bad("a string");
    (key == "certfile" ? r.certfile : key == "keyfile" ? r.keyfile : key == "cacertfile" ? r.cacertfile
                                                                                           : r.password) = *s;
    return true;
  }
  if (key == "verify") {
    if (v.is_atom() && v.atom_value().text() == "verify_peer") r.verify_peer = true;
    else if (v.is_atom() && v.atom_value().text() == "verify_none") r.verify_peer = false;
    else return bad("verify_peer or verify_none");
    return true;
  }
  if (key == "fail_if_no_peer_cert" || key == "honor_cipher_order" || key == "reuse_sessions") {
    auto b = as_bool(v);
    if (!b) return bad("true or false");
    if (key == "reuse_sessions") {
      r.reuse_sessions = *b;
      return true;
    }
    if (!server) return note("a server option, in the client list");
    (key == "fail_if_no_peer_cert" ? r.fail_if_no_peer_cert : r.honor_cipher_order) = *b;
    return true;
  }
  if (key == "server_name_indication") {
    if (server) return note("a client option, in the server list");
    if (v.is_atom() && v.atom_value().text() == "disable") {
      r.sni_disabled = true;
      r.server_name_indication.reset();
      return true;
    }
    auto s = as_string(v);
    if (!s || s->empty()) return bad("a host name or disable");
    r.server_name_indication = *s;
    r.sni_disabled = false;
    return true;
  }
  if (key == "versions") {
    std::vector<term> vs;
    if (!v.is_list() || !v.list_to_vector(vs) || vs.empty()) return bad("a list of versions");
    std::vector<int> out;
    for (const auto& x : vs) {
      const std::string_view name = x.is_atom() ? x.atom_value().text() : std::string_view();
      if (name == "tlsv1.2") out.push_back(12);
      else if (name == "tlsv1.3") out.push_back(13);
      else if (name == "tlsv1.1" || name == "tlsv1" || name == "sslv3")
        ignored.push_back(fmt::format("{} option versions: {} left out (only TLS 1.2 and 1.3 are offered)", role,
                                      name));
      else return bad("tlsv1.2 and/or tlsv1.3");
    }
    if (out.empty()) return bad("tlsv1.2 and/or tlsv1.3 among the versions");
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    r.versions = out;
    return true;
  }
  if (key == "ciphers") {
    // OpenSSL names, as one "A:B" string or a list of strings; TLS 1.3 suites (TLS_...) go to their own list.
    std::vector<std::string> names;
    if (auto s = as_string(v); s && !s->empty()) {
      std::size_t start = 0;
      while (start <= s->size()) {
        auto end = s->find(':', start);
        if (end == std::string::npos) end = s->size();
        if (end > start) names.push_back(s->substr(start, end - start));
        start = end + 1;
      }
    } else {
      std::vector<term> vs;
      if (!v.is_list() || !v.list_to_vector(vs)) return bad("a cipher string or a list of cipher strings");
      for (const auto& x : vs) {
        auto n = as_string(x);
        if (!n) return note("cipher suites given as maps or tuples are not mapped; give OpenSSL names as strings");
        names.push_back(*n);
      }
    }
    std::string tls12, tls13;
    for (const auto& n : names) {
      std::string& to = n.starts_with("TLS_") ? tls13 : tls12;
      if (!to.empty()) to += ':';
      to += n;
    }
    if (!tls12.empty()) r.ciphers = tls12;
    if (!tls13.empty()) r.ciphersuites = tls13;
    return true;
  }
  if (key == "depth") {
    if (!v.is_small() || v.small() < 0 || v.small() > 100) return bad("an integer 0..100");
    r.depth = static_cast<int>(v.small());
    return true;
  }
  if (key == "crl_check") {
    if (as_bool(v) == false) return true;
    error = fmt::format("{} option crl_check: revocation lists are not supported; refusing to start rather than "
                        "accept certificates the file means to refuse", role);
    return false;
  }
  if (key == "verify_fun" || key == "partial_chain") {
    error = fmt::format("{} option {}: an Erlang fun cnode cannot run; refusing to start rather than verify "
                        "differently from what the file asks", role, key);
    return false;
  }
  if (key == "cacerts" || key == "cert" || key == "key" || key == "certs_keys") {
    error = fmt::format("{} option {}: certificates and keys as DER terms are not supported; give them as PEM "
                        "files (certfile, keyfile, cacertfile)", role, key);
    return false;
  }
  if (tuning_only(key)) return note(why_not_mapped(key));
  error = fmt::format("{} option {} is unknown", role, key);
  return false;
}

}  // namespace

tls_optfile_result parse_tls_optfile(std::string_view text, std::string_view name) {
  tls_optfile_result out;
  auto parsed = etf::parse(text);
  if (!parsed) {
    out.error = fmt::format("{}: {}", name, etf::describe(parsed));
    return out;
  }
  const term& top = parsed.value;
  std::vector<term> roles;
  if (!top.is_list() || !top.list_to_vector(roles)) {
    out.error = fmt::format("{}: [{{server, Opts}}, {{client, Opts}}] wanted", name);
    return out;
  }
  for (const auto& r : roles) {
    const bool is_role = r.is_tuple(2) && r.element(0).is_atom() &&
                         (r.element(0).atom_value().text() == "server" || r.element(0).atom_value().text() == "client");
    std::vector<term> opts;
    if (!is_role || !r.element(1).is_list() || !r.element(1).list_to_vector(opts)) {
      out.error = fmt::format("{}: {} is not {{server, Opts}} or {{client, Opts}}", name, etf::to_string(r));
      return out;
    }
    const bool server = r.element(0).atom_value().text() == "server";
    auto& role = server ? out.options.server : out.options.client;
    for (const auto& o : opts) {
      std::string error;
      if (!apply_option(o, server, role, out.ignored, error)) {
        out.error = fmt::format("{}: {}", name, error);
        return out;
      }
    }
  }
  return out;
}

std::string tls_server_name(const tls_role_options& client, std::string_view peer_node) {
  if (client.sni_disabled) return {};
  if (client.server_name_indication) return *client.server_name_indication;
  const auto at = peer_node.find('@');
  return at == std::string_view::npos ? std::string() : std::string(peer_node.substr(at + 1));
}

namespace {

std::string openssl_reason() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

std::shared_ptr<asio::ssl::context> make_context(const tls_role_options& o, bool server) {
  const std::string role = server ? "server" : "client";
  auto fail = [&](const std::string& what) -> std::runtime_error {
    return std::runtime_error(fmt::format("TLS {}: {}: {}", role, what, openssl_reason()));
  };
  ERR_clear_error();
  auto ctx = std::make_shared<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                         : asio::ssl::context::tls_client);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION);
  const std::vector<int> versions = o.versions.value_or(std::vector<int>{12, 13});
  const int lo = versions.front() == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
  const int hi = versions.back() == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
  if (!SSL_CTX_set_min_proto_version(c, lo) || !SSL_CTX_set_max_proto_version(c, hi))
    throw fail("cannot set the TLS versions");
  if (o.password) ctx->set_password_callback([pw = *o.password](std::size_t, asio::ssl::context::password_purpose) {
    return pw;
  });
  if (o.certfile) {
    if (SSL_CTX_use_certificate_chain_file(c, o.certfile->c_str()) != 1)
      throw fail(fmt::format("cannot load the certificate {}", *o.certfile));
    const std::string& key = o.keyfile ? *o.keyfile : *o.certfile;
    if (SSL_CTX_use_PrivateKey_file(c, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
        throw fail(fmt::format("the key {} does not belong to the certificate {}", key, *o.certfile));
      throw fail(fmt::format("cannot load the private key {}", key));
    }
    if (SSL_CTX_check_private_key(c) != 1)
      throw fail(fmt::format("the key {} does not belong to the certificate {}", key, *o.certfile));
  } else if (server) {
    throw std::runtime_error("TLS distribution needs a certificate to accept connections: --tls-cert FILE (and "
                             "--tls-key FILE unless the key is in it), or certfile in the optfile's server list");
  } else if (o.keyfile) {
    throw std::runtime_error("TLS client: a keyfile without a certfile");
  }
  const bool verify = o.verify_peer.value_or(true);
  if (o.cacertfile) {
    if (SSL_CTX_load_verify_locations(c, o.cacertfile->c_str(), nullptr) != 1)
      throw fail(fmt::format("cannot load the CA certificates {}", *o.cacertfile));
    if (server) {
      // The CertificateRequest names the CAs we trust, so a client with several certificates picks the right one.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.cacertfile->c_str()))
        SSL_CTX_set_client_CA_list(c, names);
    }
  } else if (verify) {
    throw std::runtime_error(fmt::format(
        "TLS {}: verifying peers (--tls-verify peer, the default) needs the CAs that vouch for them: --tls-cacerts "
        "FILE, or cacertfile in the optfile's {} list (or --tls-verify none, which trusts anyone)",
        role, role));
  }
  int mode = asio::ssl::verify_none;
  if (verify) {
    mode = asio::ssl::verify_peer;
    if (server && o.fail_if_no_peer_cert.value_or(true)) mode |= asio::ssl::verify_fail_if_no_peer_cert;
  }
  ctx->set_verify_mode(mode);
  if (o.depth) SSL_CTX_set_verify_depth(c, *o.depth);
  if (o.ciphers && SSL_CTX_set_cipher_list(c, o.ciphers->c_str()) != 1)
    throw fail(fmt::format("no usable cipher in '{}'", *o.ciphers));
  if (o.ciphersuites && SSL_CTX_set_ciphersuites(c, o.ciphersuites->c_str()) != 1)
    throw fail(fmt::format("no usable TLS 1.3 suite in '{}'", *o.ciphersuites));
  if (server && o.honor_cipher_order.value_or(false)) SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (!o.reuse_sessions.value_or(true)) {
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  }
  return ctx;
}

}  // namespace

std::shared_ptr<const tls_contexts> make_tls_contexts(const tls_options& options) {
  auto out = std::make_shared<tls_contexts>();
  out->server = make_context(options.server, true);
  out->client = make_context(options.client, false);
  out->server_options = options.server;
  out->client_options = options.client;
  return out;
}

}  // namespace cnode::dist
