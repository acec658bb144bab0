#include "dist/handshake_driver.hpp"

#include <array>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

namespace cnode::dist {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;

namespace {

handshake_result failed(std::error_code ec, std::string detail) {
  handshake_result r;
  r.ec = ec;
  r.detail = std::move(detail);
  return r;
}

// Write everything or fail; the timer bounds the step. `detail` gets a TLS error in words.
asio::awaitable<std::error_code> timed_write(transport& stream, asio::steady_timer& timer,
                                             std::vector<std::byte> bytes, std::string& detail) {
  auto r = co_await (asio::async_write(stream, asio::buffer(bytes), as_tuple(use_awaitable)) ||
                     timer.async_wait(as_tuple(use_awaitable)));
  if (r.index() == 1) co_return error::setup_timeout;
  auto [ec, n] = std::get<0>(r);
  if (ec) detail = stream.describe(ec);
  co_return ec ? io_reason(ec) : std::error_code{};
}

// The TLS handshake of a TLS transport (nothing for TCP), bounded by the setup time: a peer that connects and says
// nothing, or stops half-way, loses its connection like one that stalls the distribution handshake.
asio::awaitable<handshake_result> tls_handshake(transport& stream, bool server, std::chrono::milliseconds setup_time,
                                                const std::string& peer) {
  if (!stream.is_tls()) co_return handshake_result{};
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(setup_time);
  const auto type = server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client;
  auto r = co_await (stream.tls().async_handshake(type, as_tuple(use_awaitable)) ||
                     timer.async_wait(as_tuple(use_awaitable)));
  if (r.index() == 1)
    co_return failed(error::setup_timeout,
                     fmt::format("TLS handshake with {} timed out after {} ms", peer, setup_time.count()));
  auto [ec] = std::get<0>(r);
  if (ec) co_return failed(error::tls_failed, fmt::format("TLS handshake with {}: {}", peer, stream.describe(ec)));
  co_return handshake_result{};
}

std::string endpoint_label(transport& stream) {
  boost::system::error_code ec;
  auto ep = stream.socket().remote_endpoint(ec);
  return ec ? std::string("an unknown address") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

}  // namespace

asio::awaitable<handshake_result> run_handshake(transport& stream, handshake& hs, handshake_policy& policy,
                                                std::chrono::milliseconds setup_time) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::array<std::byte, 4096> buf;
  auto deadline = clock::now() + setup_time;
  // Whatever the machine learnt about the peer before failing goes into the result, for the log line.
  const auto with_peer = [&](handshake_result r) {
    r.peer = hs.peer();
    r.this_node = hs.this_node();
    return r;
  };
  const auto peer_label = [&] { return hs.peer().node.empty() ? std::string("unknown node") : hs.peer().node; };

  for (;;) {
    if (hs.has_output()) {
      timer.expires_at(deadline);
      std::string why;
      if (auto ec = co_await timed_write(stream, timer, hs.take_output(), why); ec) {
        if (hs.current() == handshake::state::failed) break;  // report the handshake's own reason
        co_return with_peer(failed(ec, fmt::format("Handshake with {}: write failed: {}", peer_label(),
                                                   why.empty() ? ec.message() : why)));
      }
      deadline = clock::now() + setup_time;  // our step is done: the peer gets a fresh net_setuptime
    }
    switch (hs.current()) {
      case handshake::state::done: {
        handshake_result r;
        r.peer = hs.peer();
        r.this_node = hs.this_node();
        r.this_creation = hs.this_creation();
        r.leftover.assign(hs.leftover().begin(), hs.leftover().end());
        co_return r;
      }
      case handshake::state::failed: co_return with_peer(failed(hs.error(), hs.detail()));
      case handshake::state::asking:
        switch (hs.asked()) {
          case handshake::question::accept_pending:
            hs.answer_accept(policy.accept_pending(hs.question_node(), hs.question_dynamic(), hs.question_published()));
            break;
          case handshake::question::is_pending: hs.answer_is_pending(policy.is_pending(hs.question_node())); break;
          case handshake::question::wait_pending: {
            timer.expires_after(setup_time);
            auto r = co_await (policy.wait_pending(hs.question_node()) || timer.async_wait(as_tuple(use_awaitable)));
            if (r.index() == 1)
              co_return with_peer(failed(error::setup_timeout,
                               fmt::format("Connection attempt from node {}: the old connection did not go down",
                                           hs.question_node())));
            hs.answer_wait_pending();
            break;
          }
          case handshake::question::none: break;
        }
        deadline = clock::now() + setup_time;
        continue;
      case handshake::state::running: break;
    }
    timer.expires_at(deadline);
    auto r = co_await (stream.async_read_some(asio::buffer(buf), as_tuple(use_awaitable)) ||
                       timer.async_wait(as_tuple(use_awaitable)));
    if (r.index() == 1)
      co_return with_peer(failed(error::setup_timeout,
                       fmt::format("Handshake with {} timed out after {} ms", peer_label(), setup_time.count())));
    auto [ec, n] = std::get<0>(r);
    if (ec) {
      const auto reason = io_reason(ec);
      // A BEAM acceptor that dislikes our digest closes without a word (dist_util.erl:946): say what it means.
      if (reason == error::connection_closed && hs.which() == handshake::role::initiator &&
          std::string_view(hs.step_name()) == "recv_challenge_ack")
        co_return with_peer(failed(
            reason, fmt::format("Connection attempt to node {}: closed by the peer after our challenge reply "
                                "(wrong cookie?)",
                                peer_label())));
      // Over TLS 1.3 a server that refuses our certificate says so after our side of the TLS handshake is done:
      // its alert arrives here.
      co_return with_peer(failed(reason, fmt::format("Handshake with {} ({}): {}", peer_label(), hs.step_name(),
                                                     stream.describe(ec))));
    }
    hs.feed(std::span<const std::byte>(buf.data(), n));
  }
  co_return with_peer(failed(hs.error(), hs.detail()));
}

asio::awaitable<handshake_result> accept_handshake(transport& stream, handshake_config config,
                                                   handshake_policy& policy, std::chrono::milliseconds setup_time) {
  if (stream.is_tls()) {
    auto t = co_await tls_handshake(stream, true, setup_time, endpoint_label(stream));
    if (t.ec) co_return t;
    config.header_bytes = 4;
  }
  randomize(config);
  auto hs = handshake::acceptor(std::move(config));
  co_return co_await run_handshake(stream, hs, policy, setup_time);
}

asio::awaitable<handshake_result> connect_handshake(transport& stream, std::string host, std::uint16_t port,
                                                    std::string peer_node, handshake_config config,
                                                    handshake_policy& policy, std::chrono::milliseconds setup_time) {
  auto& socket = stream.socket();
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  asio::ip::tcp::resolver resolver(ex);
  timer.expires_after(setup_time);
  auto rr = co_await (resolver.async_resolve(host, std::to_string(port), as_tuple(use_awaitable)) ||
                      timer.async_wait(as_tuple(use_awaitable)));
  if (rr.index() == 1)
    co_return failed(error::setup_timeout, fmt::format("Resolving {} timed out", host));
  auto [rec, endpoints] = std::get<0>(rr);
  if (rec) co_return failed(rec, fmt::format("Cannot resolve {}: {}", host, rec.message()));
  timer.expires_after(setup_time);
  auto cr = co_await (asio::async_connect(socket, endpoints, as_tuple(use_awaitable)) ||
                      timer.async_wait(as_tuple(use_awaitable)));
  if (cr.index() == 1)
    co_return failed(error::setup_timeout, fmt::format("Connecting to {}:{} timed out", host, port));
  auto [cec, ep] = std::get<0>(cr);
  if (cec)
    co_return failed(cec, fmt::format("Cannot connect to {} at {}:{}: {}", peer_node, host, port, cec.message()));
  boost::system::error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  if (stream.is_tls()) {
    auto t = co_await tls_handshake(stream, false, setup_time, fmt::format("{} at {}:{}", peer_node, host, port));
    if (t.ec) co_return t;
    config.header_bytes = 4;
  }
  randomize(config);
  auto hs = handshake::initiator(std::move(config), std::move(peer_node));
  co_return co_await run_handshake(stream, hs, policy, setup_time);
}

asio::awaitable<handshake_result> accept_handshake(asio::ip::tcp::socket& socket, handshake_config config,
                                                   handshake_policy& policy, std::chrono::milliseconds setup_time) {
  transport stream(std::move(socket));
  auto r = co_await accept_handshake(stream, std::move(config), policy, setup_time);
  socket = std::move(stream.socket());
  co_return r;
}

asio::awaitable<handshake_result> connect_handshake(asio::ip::tcp::socket& socket, std::string host,
                                                    std::uint16_t port, std::string peer_node,
                                                    handshake_config config, handshake_policy& policy,
                                                    std::chrono::milliseconds setup_time) {
  transport stream(std::move(socket));
  auto r = co_await connect_handshake(stream, std::move(host), port, std::move(peer_node), std::move(config), policy,
                                      setup_time);
  socket = std::move(stream.socket());
  co_return r;
}

}  // namespace cnode::dist
