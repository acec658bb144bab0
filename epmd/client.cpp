#include "epmd/client.hpp"

#include <cstdlib>
#include <charconv>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "epmd/log.hpp"

namespace cnode::epmd {

using boost::system::error_code;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
// A NAMES or DUMP answer larger than this is not from an EPMD worth waiting for.
constexpr std::size_t max_response_bytes = 16 * 1024 * 1024;

failure make_failure(error e, std::string message) { return failure{make_error_code(e), std::move(message)}; }

std::string describe(const tcp::endpoint& ep) {
  return ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                              : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

// One request/response exchange with an EPMD: connection, overall deadline, and the words for what went wrong.
class exchange {
 public:
  exchange(asio::any_io_executor ex, epmd_endpoint epmd, client_options opts)
      : socket_(ex), timer_(ex), epmd_(std::move(epmd)), opts_(opts) {
    timer_.expires_after(opts.timeout);
  }

  std::string where() const { return connected_.empty() ? fmt::format("{}:{}", epmd_.host, epmd_.port) : connected_; }

  failure timed_out(std::string_view doing) const {
    return make_failure(error::timeout,
                        fmt::format("timed out after {} ms {} EPMD at {}", opts_.timeout.count(), doing, where()));
  }

  asio::awaitable<std::optional<failure>> connect() {
    auto endpoints = co_await try_resolve(epmd_.host, epmd_.port, opts_);
    if (!endpoints) co_return endpoints.error();
    error_code last = asio::error::host_not_found;
    for (const auto& ep : *endpoints) {
      error_code ignored;
      socket_.close(ignored);
      auto r = co_await (socket_.async_connect(ep, tuple_awaitable) || timer_.async_wait(tuple_awaitable));
      if (r.index() == 1) co_return timed_out("connecting to");
      last = std::get<0>(std::get<0>(r));
      if (!last) {
        connected_ = describe(ep);
        co_return std::nullopt;
      }
      log(log_level::debug, "connect to EPMD at {} failed: {}", describe(ep), last.message());
    }
    co_return make_failure(error::no_epmd,
                           fmt::format("no EPMD answering at {}:{} ({})", epmd_.host, epmd_.port, last.message()));
  }

  asio::awaitable<std::optional<failure>> send(const bytes& packet) {
    auto r = co_await (asio::async_write(socket_, asio::buffer(packet), tuple_awaitable) ||
                       timer_.async_wait(tuple_awaitable));
    if (r.index() == 1) co_return timed_out("sending to");
    if (auto ec = std::get<0>(std::get<0>(r)))
      co_return make_failure(error::no_epmd, fmt::format("cannot send to EPMD at {}: {}", where(), ec.message()));
    co_return std::nullopt;
  }

  // Appends what arrives to buf. Returns eof as an error_code; a failure only for timeouts and socket errors.
  asio::awaitable<result<error_code>> read_more(bytes& buf) {
    std::size_t old = buf.size();
    buf.resize(old + 4096);
    auto r = co_await (socket_.async_read_some(asio::buffer(buf.data() + old, 4096), tuple_awaitable) ||
                       timer_.async_wait(tuple_awaitable));
    if (r.index() == 1) {
      buf.resize(old);
      co_return timed_out("waiting for an answer from");
    }
    auto [ec, n] = std::get<0>(r);
    buf.resize(old + n);
    if (ec && ec != asio::error::eof)
      co_return make_failure(error::no_epmd, fmt::format("reading from EPMD at {}: {}", where(), ec.message()));
    co_return ec;
  }

  failure truncated(std::string_view what) const {
    return make_failure(error::truncated_response,
                        fmt::format("EPMD at {} closed the connection in the middle of a {}", where(), what));
  }

  tcp::socket& socket() { return socket_; }

 private:
  tcp::socket socket_;
  asio::steady_timer timer_;
  epmd_endpoint epmd_;
  client_options opts_;
  std::string connected_;
};

// Note: packets are built in named variables before a co_await, never as temporaries inside one: GCC 12 destroys
// such temporaries wrongly (a double free was seen with a std::variant temporary).

// Reads until the peer closes, at most max_response_bytes.
asio::awaitable<result<bytes>> read_to_end(exchange& x, std::string_view what) {
  bytes buf;
  for (;;) {
    auto r = co_await x.read_more(buf);
    if (!r) co_return r.error();
    if (*r == asio::error::eof) co_return buf;
    if (buf.size() > max_response_bytes)
      co_return make_failure(error::malformed_response,
                             fmt::format("EPMD at {} sent more than {} bytes of {}", x.where(), max_response_bytes, what));
  }
}

}  // namespace

std::optional<std::uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

std::uint16_t epmd_port_from_env() {
  if (const char* env = std::getenv("ERL_EPMD_PORT")) {
    if (auto p = parse_port(env)) return *p;
    log(log_level::warning, "ignoring ERL_EPMD_PORT={:?}: not a port number; using {}", env, default_port);
  }
  return default_port;
}

result<node_name> parse_node_name(std::string_view full) {
  auto at = full.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == full.size())
    return make_failure(error::invalid_argument,
                        fmt::format("node name {:?} is not of the form name@host", std::string(full)));
  return node_name{std::string(full.substr(0, at)), std::string(full.substr(at + 1))};
}

result<node_address> parse_node_address(std::string_view s) {
  auto bad = [&] {
    return make_failure(error::invalid_argument,
                        fmt::format("node address {:?} is not of the form host:port", std::string(s)));
  };
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad();
  auto port = parse_port(s.substr(colon + 1));
  std::string_view host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!port || host.empty()) return bad();
  return node_address{std::string(host), *port};
}

// ---- registration ------------------------------------------------------------------------------------------------

registration::registration(tcp::socket socket, std::string name, std::uint32_t creation, bool extended,
                           std::string epmd_description)
    : socket_(std::move(socket)),
      name_(std::move(name)),
      creation_(creation),
      extended_(extended),
      epmd_(std::move(epmd_description)) {}

registration::~registration() { close(); }

void registration::close() noexcept {
  error_code ignored;
  if (socket_.is_open()) socket_.close(ignored);
}

asio::awaitable<error_code> registration::wait_lost() {
  std::uint8_t byte;
  for (;;) {
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(&byte, 1), tuple_awaitable);
    if (ec) co_return ec;
    // EPMD never writes on a registration connection; a byte means it is not the EPMD we know, and epmd itself
    // would drop us for the same. Treat it as lost.
    close();
    co_return make_error_code(error::unexpected_response);
  }
}

// ---- operations --------------------------------------------------------------------------------------------------

asio::awaitable<result<std::vector<tcp::endpoint>>> try_resolve(std::string host, std::uint16_t port,
                                                                client_options opts) {
  auto ex = co_await asio::this_coro::executor;
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) co_return std::vector<tcp::endpoint>{tcp::endpoint(addr, port)};

  // getaddrinfo cannot be interrupted, so the resolution runs detached and reports through a channel; a timeout
  // abandons it (the shared state lives until it returns).
  using channel = asio::experimental::concurrent_channel<void(error_code, tcp::resolver::results_type)>;
  struct state {
    tcp::resolver resolver;
    channel done;
    explicit state(asio::any_io_executor ex) : resolver(ex), done(ex, 1) {}
  };
  auto st = std::make_shared<state>(ex);
  st->resolver.async_resolve(host, std::to_string(port), [st](error_code ec, tcp::resolver::results_type rs) {
    st->done.try_send(ec, std::move(rs));
  });
  asio::steady_timer timer(ex, opts.timeout);
  auto r = co_await (st->done.async_receive(tuple_awaitable) || timer.async_wait(tuple_awaitable));
  if (r.index() == 1) {
    st->resolver.cancel();
    co_return make_failure(error::timeout,
                           fmt::format("timed out after {} ms resolving host {:?}", opts.timeout.count(), host));
  }
  auto [rec, results] = std::get<0>(std::move(r));
  if (rec || results.empty())
    co_return make_failure(error::resolve_failed,
                           fmt::format("cannot resolve host {:?}: {}", host,
                                       rec ? rec.message() : std::string("no addresses")));
  std::vector<tcp::endpoint> out;
  for (const auto& e : results) out.push_back(e.endpoint());
  co_return out;
}

asio::awaitable<result<registration>> try_register_node(epmd_endpoint epmd, node_registration node,
                                                        client_options opts) {
  node_info info{node.name, node.port, static_cast<std::uint8_t>(node.type), node.protocol,
                 node.highest_version, node.lowest_version, node.extra};
  if (node.name.empty())
    co_return make_failure(error::invalid_argument, "cannot register an empty node name");
  if (auto bad = validate_registration(info))
    co_return make_failure(*bad, fmt::format("cannot register node name {:?}: {}", node.name,
                                             make_error_code(*bad).message()));

  exchange x(co_await asio::this_coro::executor, epmd, opts);
  if (auto f = co_await x.connect()) co_return *f;
  const bytes packet = encode_request(alive2_request{info});
  if (auto f = co_await x.send(packet)) co_return *f;
  bytes buf;
  for (;;) {
    auto p = parse_alive2_response(buf);
    if (p.state == parse_state::failed)
      co_return make_failure(error::unexpected_response,
                             fmt::format("EPMD at {} answered ALIVE2_REQ with tag {}", x.where(), buf[0]));
    if (p.state == parse_state::done) {
      if (p.value.result != 0)
        co_return make_failure(error::name_in_use,
                               fmt::format("name {} already registered at {}", node.name, x.where()));
      log(log_level::debug, "registered {} (port {}) at EPMD {}, creation {}", node.name, node.port, x.where(),
          p.value.creation);
      co_return registration(std::move(x.socket()), node.name, p.value.creation, p.value.extended, x.where());
    }
    auto r = co_await x.read_more(buf);
    if (!r) co_return r.error();
    if (*r == asio::error::eof) {
      if (buf.empty())
        co_return make_failure(error::registration_refused,
                               fmt::format("EPMD at {} closed the connection without answering the registration "
                                           "of {} (it accepts registrations from the local host only)",
                                           x.where(), node.name));
      co_return x.truncated("ALIVE2 response");
    }
  }
}

asio::awaitable<registration> register_node(epmd_endpoint epmd, node_registration node, client_options opts) {
  co_return (co_await try_register_node(std::move(epmd), std::move(node), opts)).value();
}

asio::awaitable<result<node_info>> try_port_please(epmd_endpoint epmd, std::string name, client_options opts) {
  if (name.empty()) co_return make_failure(error::invalid_argument, "cannot look up an empty node name");
  exchange x(co_await asio::this_coro::executor, epmd, opts);
  if (auto f = co_await x.connect()) co_return *f;
  const bytes packet = encode_request(port_please2_request{name});
  if (auto f = co_await x.send(packet)) co_return *f;
  bytes buf;
  for (;;) {
    auto p = parse_port2_response(buf);
    if (p.state == parse_state::failed)
      co_return make_failure(error::unexpected_response,
                             fmt::format("EPMD at {} answered PORT_PLEASE2_REQ with tag {}", x.where(), buf[0]));
    if (p.state == parse_state::done) {
      if (p.value.result != 0)
        co_return make_failure(error::node_not_found, fmt::format("node {} not registered at {}", name, x.where()));
      co_return std::move(p.value.node);
    }
    auto r = co_await x.read_more(buf);
    if (!r) co_return r.error();
    if (*r == asio::error::eof) {
      if (buf.empty())
        co_return make_failure(error::truncated_response,
                               fmt::format("EPMD at {} closed the connection without answering the lookup of {:?}",
                                           x.where(), name));
      co_return x.truncated("PORT2 response");
    }
  }
}

asio::awaitable<node_info> port_please(epmd_endpoint epmd, std::string name, client_options opts) {
  co_return (co_await try_port_please(std::move(epmd), std::move(name), opts)).value();
}

asio::awaitable<result<std::vector<name_entry>>> try_names(epmd_endpoint epmd, client_options opts) {
  exchange x(co_await asio::this_coro::executor, epmd, opts);
  if (auto f = co_await x.connect()) co_return *f;
  const bytes packet = encode_request(names_request{});
  if (auto f = co_await x.send(packet)) co_return *f;
  auto all = co_await read_to_end(x, "NAMES response");
  if (!all) co_return all.error();
  auto p = parse_names_response(*all);
  if (!p.value) {
    if (p.ec == make_error_code(error::truncated_response)) co_return x.truncated("NAMES response");
    co_return make_failure(error::malformed_response,
                           fmt::format("EPMD at {} sent a NAMES response that is not \"name N at port P\" lines",
                                       x.where()));
  }
  co_return std::move(p.value->nodes);
}

asio::awaitable<std::vector<name_entry>> names(epmd_endpoint epmd, client_options opts) {
  co_return (co_await try_names(std::move(epmd), opts)).value();
}

asio::awaitable<result<node_address>> try_lookup_node(std::string full_name, std::uint16_t epmd_port,
                                                      client_options opts) {
  auto n = parse_node_name(full_name);
  if (!n) co_return n.error();
  epmd_endpoint at(n->host, epmd_port);
  auto info = co_await try_port_please(std::move(at), n->alive, opts);
  if (!info) co_return info.error();
  co_return node_address{n->host, info->port};
}

asio::awaitable<node_address> lookup_node(std::string full_name, std::uint16_t epmd_port, client_options opts) {
  co_return (co_await try_lookup_node(std::move(full_name), epmd_port, opts)).value();
}

asio::awaitable<bool> epmd_answering(epmd_endpoint epmd, client_options opts) {
  exchange x(co_await asio::this_coro::executor, epmd, opts);
  if (co_await x.connect()) co_return false;
  const bytes packet = encode_request(names_request{});
  if (co_await x.send(packet)) co_return false;
  bytes buf;
  while (buf.size() < 4) {
    auto r = co_await x.read_more(buf);
    if (!r || *r == asio::error::eof) co_return false;
  }
  co_return true;
}

bool epmd_answering_sync(const epmd_endpoint& epmd, std::chrono::milliseconds timeout) {
  asio::io_context ctx;
  bool answer = false;
  asio::co_spawn(
      ctx, [&]() -> asio::awaitable<void> { answer = co_await epmd_answering(epmd, client_options{timeout}); },
      asio::detached);
  ctx.run();
  return answer;
}

asio::awaitable<result<bytes>> try_raw_request(epmd_endpoint epmd, request r, client_options opts) {
  exchange x(co_await asio::this_coro::executor, epmd, opts);
  if (auto f = co_await x.connect()) co_return *f;
  const bytes packet = encode_request(r);
  if (auto f = co_await x.send(packet)) co_return *f;
  co_return co_await read_to_end(x, "response");
}

}  // namespace cnode::epmd
