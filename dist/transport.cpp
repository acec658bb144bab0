#include "dist/transport.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <fmt/format.h>

#include "dist/error.hpp"

namespace cnode::dist {

namespace asio = boost::asio;

transport::tls_state::tls_state(tcp::socket s, std::shared_ptr<asio::ssl::context> c)
    : context(std::move(c)), stream(std::move(s), *context) {
  // Keep the first failed check, for the log line; the verdict stays OpenSSL's.
  stream.set_verify_callback([this](bool preverified, asio::ssl::verify_context& ctx) {
    if (!preverified && note.error == 0) {
      X509_STORE_CTX* store = ctx.native_handle();
      note.error = X509_STORE_CTX_get_error(store);
      note.depth = X509_STORE_CTX_get_error_depth(store);
      if (X509* cert = X509_STORE_CTX_get_current_cert(store)) {
        char buf[512];
        X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
        note.subject = buf;
      }
    }
    return preverified;
  });
}

transport::transport(tcp::socket socket, std::shared_ptr<asio::ssl::context> context)
    : plain_(std::move(socket)), tls_(std::make_unique<tls_state>(std::move(plain_), std::move(context))) {}

transport::~transport() = default;

const tls_verify_note& transport::verify_note() const noexcept {
  static const tls_verify_note none;
  return tls_ ? tls_->note : none;
}

void transport::set_server_name(const std::string& name) {
  if (!tls_ || name.empty()) return;
  SSL* ssl = tls_->stream.native_handle();
  boost::system::error_code ec;
  asio::ip::make_address(name, ec);
  if (!ec) {  // an address: checked against the certificate's IP entries; SNI carries host names only (RFC 6066)
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
    return;
  }
  SSL_set_tlsext_host_name(ssl, name.c_str());
  SSL_set1_host(ssl, name.c_str());
}

std::optional<bool> transport::peer_certificate_names(const std::string& host) {
  if (!tls_) return std::nullopt;
  X509* cert = SSL_get0_peer_certificate(tls_->stream.native_handle());
  if (!cert) return std::nullopt;
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  if (!ec) return X509_check_ip_asc(cert, host.c_str(), 0) == 1;
  return X509_check_host(cert, host.data(), host.size(), 0, nullptr) == 1;
}

std::string transport::tls_version() const {
  return tls_ ? SSL_get_version(const_cast<tls_stream&>(tls_->stream).native_handle()) : "";
}

void transport::close() noexcept {
  boost::system::error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

std::error_code io_reason(const boost::system::error_code& ec) {
  // A TLS peer that closes the TCP connection without close_notify (a node that halts) is just gone, as over TCP.
  if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
      ec == asio::ssl::error::stream_truncated)
    return error::connection_closed;
  return ec;
}

namespace {

// Our words for the certificate checks an operator meets: these are what the log line leads with.
const char* verify_words(int err) {
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED: return "unknown CA";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "certificate not yet valid";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH: return "wrong host name";
    case X509_V_ERR_CERT_REVOKED: return "certificate revoked";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return "certificate chain too long (depth)";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "bad certificate signature";
    case X509_V_ERR_INVALID_PURPOSE: return "certificate not for this purpose (extended key usage)";
    default: return "certificate refused";
  }
}

// A fatal alert from the peer: it refused the handshake, most often our certificate.
const char* alert_words(int reason) {
  switch (reason) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA: return "the peer refused our certificate: unknown CA";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED: return "the peer refused our certificate: certificate expired";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED: return "the peer refused our certificate: certificate revoked";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE: return "the peer refused our certificate: bad certificate";
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE: return "the peer refused our certificate: unsupported certificate";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN: return "the peer refused our certificate: certificate unknown";
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED: return "the peer refused our certificate: access denied";
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return "the peer requires a client certificate and we sent none (mutual authentication)";
    // OTP 25 answers a certificate issued to another host with handshake_failure ({bad_cert,hostname_check_failed}),
    // and so does its TLS 1.2 server for a missing client certificate.
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      return "the peer refused the handshake (our certificate is issued to another host name, or it requires a "
             "client certificate, or no cipher in common)";
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: return "the peer refused the TLS version (no common version)";
    case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY: return "the peer refused the ciphers as too weak";
    default: return nullptr;
  }
}

}  // namespace

std::string transport::describe(const boost::system::error_code& ec) const {
  if (!tls_) return io_reason(ec).message();
  const auto& n = tls_->note;
  if (n.error != 0) {
    return fmt::format("certificate check failed: {} ({}; {} certificate {})", verify_words(n.error),
                       X509_verify_cert_error_string(n.error), n.depth == 0 ? "the peer's" : "a CA", n.subject);
  }
  if (ec == asio::ssl::error::stream_truncated || ec == asio::error::eof)
    return "the peer closed the connection during the TLS handshake";
  if (ec.category() == asio::error::get_ssl_category()) {
    const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (const char* w = alert_words(reason)) return fmt::format("{} ({})", w, ec.message());
    switch (reason) {
      case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return fmt::format("the peer sent no certificate, and we require one (mutual authentication; "
                           "fail_if_no_peer_cert) ({})", ec.message());
      case SSL_R_WRONG_VERSION_NUMBER:
      case SSL_R_HTTP_REQUEST:
      case SSL_R_PACKET_LENGTH_TOO_LONG:
      case SSL_R_RECORD_LENGTH_MISMATCH:
      case SSL_R_UNSUPPORTED_PROTOCOL:
        return fmt::format("the peer does not speak TLS (a plain TCP distribution, inet_tcp_dist?) ({})",
                           ec.message());
      case SSL_R_NO_PROTOCOLS_AVAILABLE:
      case SSL_R_NO_SHARED_CIPHER: return fmt::format("no TLS version or cipher in common ({})", ec.message());
      case SSL_R_UNEXPECTED_EOF_WHILE_READING: return "the peer closed the connection during the TLS handshake";
      default: break;
    }
    return fmt::format("TLS error: {}", ec.message());
  }
  return io_reason(ec).message();
}

}  // namespace cnode::dist
