#pragma once
// The byte stream under a distribution connection: a plain TCP socket (inet_tcp_dist) or TLS over one
// (inet_tls_dist, OpenSSL through asio::ssl::stream). The handshake and the 4-byte framing run over either unchanged.
//
// It is an AsyncReadStream/AsyncWriteStream: async_read_some and async_write_some hand the completion handler
// straight to the socket or to the TLS stream, so the plain path costs one predictable branch and nothing else.
// Like the socket it wraps, it is not thread-safe: use it from one strand.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/system/error_code.hpp>

namespace cnode::dist {

// The first certificate check that failed during a TLS handshake (OpenSSL's verify callback), for the log line.
struct tls_verify_note {
  int error = 0;         // X509_V_ERR_*; 0: no certificate failed
  int depth = -1;        // 0: the peer's own certificate, 1: its issuer, ...
  std::string subject;   // the failing certificate's subject, one line
};

class transport {
 public:
  using executor_type = boost::asio::any_io_executor;
  using tcp = boost::asio::ip::tcp;
  using tls_stream = boost::asio::ssl::stream<tcp::socket>;

  // Plain TCP. Implicit: a socket is a transport.
  transport(tcp::socket socket) : plain_(std::move(socket)) {}  // NOLINT(google-explicit-constructor)
  // TLS over `socket` (connected or not yet); tls_handshake() must run before anything else is read or written.
  transport(tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> context);
  transport(transport&&) noexcept = default;
  transport& operator=(transport&&) noexcept = default;
  ~transport();

  bool is_tls() const noexcept { return tls_ != nullptr; }
  // The TCP socket underneath (for endpoints, options, close).
  tcp::socket& socket() noexcept { return tls_ ? tls_->stream.next_layer() : plain_; }
  // Only when is_tls().
  tls_stream& tls() noexcept { return tls_->stream; }
  const tls_verify_note& verify_note() const noexcept;
  executor_type get_executor() noexcept { return socket().get_executor(); }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_)
            tls_->stream.async_read_some(b, std::move(handler));
          else
            plain_.async_read_some(b, std::move(handler));
        },
        token, buffers);
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_)
            tls_->stream.async_write_some(b, std::move(handler));
          else
            plain_.async_write_some(b, std::move(handler));
        },
        token, buffers);
  }

  // Plain TCP only: writes what the socket takes now without waiting (a non-blocking write_some); 0 with
  // would_block when it takes nothing, and always 0 for TLS (whose records only the TLS stream may write). A write
  // that completes here costs no completion handler, so no post to the scheduler and no thread woken for it.
  template <typename ConstBuffers>
  std::size_t try_write_some(const ConstBuffers& buffers, boost::system::error_code& ec) {
    if (tls_) {
      ec = boost::asio::error::would_block;
      return 0;
    }
    if (!plain_.non_blocking()) {
      plain_.non_blocking(true, ec);
      if (ec) return 0;
    }
    return plain_.write_some(buffers, ec);
  }

  // TLS client, before the handshake: send `name` as SNI and require the server's certificate to be issued to it
  // (a DNS name, or an IP address which is checked but not sent). Empty: neither.
  void set_server_name(const std::string& name);

  // After a TLS handshake: is the peer's certificate issued to `host` (a DNS name or an IP address)? nullopt when
  // the peer sent no certificate (or the stream is plain TCP).
  std::optional<bool> peer_certificate_names(const std::string& host);

  // The negotiated protocol ("TLSv1.3"), or "" for plain TCP.
  std::string tls_version() const;

  // Shuts the TCP socket down and closes it: pending operations end at once (no TLS close_notify is waited for).
  void close() noexcept;

  // What an I/O error means, for a log line: the TLS reason in plain words (a certificate the check refused and
  // why, an alert the peer sent, a peer that does not speak TLS), else the error's message.
  std::string describe(const boost::system::error_code& ec) const;

 private:
  struct tls_state {
    tls_state(tcp::socket s, std::shared_ptr<boost::asio::ssl::context> c);
    std::shared_ptr<boost::asio::ssl::context> context;  // outlives the stream's SSL object
    tls_stream stream;
    tls_verify_note note;
  };
  tcp::socket plain_;  // for TLS: moved into tls_state (what is left keeps the executor)
  std::unique_ptr<tls_state> tls_;
};

// The distribution's reason for an I/O error: a peer that went away is connection_closed, whatever the stream.
std::error_code io_reason(const boost::system::error_code& ec);

}  // namespace cnode::dist
