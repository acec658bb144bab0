#include "epmd/server.hpp"

#include <array>
#include <atomic>
#include <ctime>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "epmd/client.hpp"
#include "epmd/log.hpp"

namespace cnode::epmd {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
// epmd reads up to INBUF_SIZE - 1 bytes before it knows a packet's length (epmd_srv.c do_read).
constexpr std::size_t first_read_size = 3 * 255 * 4 - 1;

std::string describe(const tcp::endpoint& ep) {
  return ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                              : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}
}  // namespace

bool is_local_peer(const asio::ip::address& peer, const asio::ip::address& local) {
  if (peer.is_loopback()) return true;
  if (peer.is_v6() && peer.to_v6().is_v4_mapped() &&
      asio::ip::make_address_v4(asio::ip::v4_mapped, peer.to_v6()).is_loopback())
    return true;
  return peer == local;
}

struct server::impl : std::enable_shared_from_this<server::impl> {
  using strand_type = asio::strand<asio::io_context::executor_type>;

  strand_type strand;
  server_options opts;
  std::vector<tcp::acceptor> acceptors;
  cnode::log::limiter accept_log{1};  // accept failures: one line per 10 s, with a count
  registry names;
  std::unordered_map<connection_id, tcp::socket*> connections;
  connection_id next_id = 0;
  bool stopped = false;
  std::function<void()> kill_handler;
  std::atomic<std::uint16_t> bound_port{0};
  std::atomic<std::uint64_t> accepted{0}, requests{0}, bad_requests{0}, timeouts{0};
  std::atomic<std::size_t> open{0}, registered{0};

  impl(asio::io_context& io, server_options o)
      : strand(asio::make_strand(io)), opts(std::move(o)), names(opts.max_unused_names) {}

  bool open_listeners(failure& f);
  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor);
  asio::awaitable<void> session(tcp::socket socket);
  void shutdown();

  // What handling one request decided.
  struct outcome {
    bytes reply;
    bool keep = false;  // the connection registered (or tried to): hold it open
    bool kill = false;  // run the kill handler after the reply
    bool close_without_reply = false;
  };
  outcome handle(const request& req, connection_id id, int fd, const std::function<bool()>& is_local,
                 const std::function<std::string()>& peer);
};

bool server::impl::open_listeners(failure& f) {
  struct spec {
    tcp::endpoint ep;
    bool optional;  // failure to bind is not fatal (IPv6 missing, loopback added on top of -address)
  };
  std::vector<spec> specs;
  if (opts.addresses.empty()) {
    specs.push_back({tcp::endpoint(asio::ip::address_v4::any(), opts.port), false});
    specs.push_back({tcp::endpoint(asio::ip::address_v6::any(), opts.port), true});
  } else {
    specs.push_back({tcp::endpoint(asio::ip::address_v4::loopback(), opts.port), true});
    specs.push_back({tcp::endpoint(asio::ip::address_v6::loopback(), opts.port), true});
    for (const auto& a : opts.addresses)
      if (!a.is_loopback()) specs.push_back({tcp::endpoint(a, opts.port), false});
  }
  std::uint16_t port = opts.port;
  for (auto& s : specs) {
    s.ep.port(port);
    tcp::acceptor acceptor(strand);
    error_code ec;
    acceptor.open(s.ep.protocol(), ec);
    if (!ec && s.ep.address().is_v6()) acceptor.set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(s.ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      if (s.optional && ec != asio::error::address_in_use) {
        log(log_level::debug, "not listening on {}: {}", describe(s.ep), ec.message());
        continue;
      }
      f = failure{ec, ec == asio::error::address_in_use
                          ? fmt::format("cannot listen on {}: the port is in use (is an EPMD already running?)",
                                        describe(s.ep))
                          : fmt::format("cannot listen on {}: {}", describe(s.ep), ec.message())};
      acceptors.clear();
      return false;
    }
    if (port == 0) port = acceptor.local_endpoint().port();  // the same free port on every address
    log(log_level::info, "listening on {}", describe(acceptor.local_endpoint()));
    acceptors.push_back(std::move(acceptor));
  }
  if (acceptors.empty()) {
    f = failure{make_error_code(error::invalid_argument), "no address to listen on"};
    return false;
  }
  bound_port = port;
  return true;
}

asio::awaitable<void> server::impl::accept_loop(tcp::acceptor& acceptor) {
  auto self = shared_from_this();
  asio::steady_timer backoff(strand);
  auto pause = std::chrono::milliseconds(10);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
    if (stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors and the like: wait, longer each time, instead of spinning; one line per 10 s at most.
      if (log_enabled(log_level::warning))
        if (auto suffix = accept_log.admit(ec.message())) log(log_level::warning, "accept failed: {}{}", ec.message(), *suffix);
      backoff.expires_after(pause);
      co_await backoff.async_wait(tuple_awaitable);
      pause = std::min(pause * 2, std::chrono::milliseconds(1000));
      continue;
    }
    pause = std::chrono::milliseconds(10);
    ++accepted;
    if (open.load() >= opts.max_connections) {
      log(log_level::warning, "closing a new connection: {} connections open", open.load());
      continue;  // the socket closes as it goes out of scope
    }
    asio::co_spawn(strand, session(std::move(socket)), asio::detached);
  }
}

server::impl::outcome server::impl::handle(const request& req, connection_id id, int fd,
                                           const std::function<bool()>& is_local,
                                           const std::function<std::string()>& peer) {
  outcome out;
  const bool needs_local = !std::holds_alternative<port_please2_request>(req) &&
                           !std::holds_alternative<names_request>(req);
  const bool local = needs_local && is_local();
  const std::string who = needs_local ? peer() : std::string();
  auto refuse_remote = [&](const char* what) {
    log(log_level::warning, "{} from non-local address {}", what, who);
    out.close_without_reply = true;
  };
  if (auto* a = std::get_if<alive2_request>(&req)) {
    if (!local) return refuse_remote("ALIVE2_REQ"), out;
    auto r = names.register_node(id, fd, a->node, static_cast<std::uint64_t>(std::time(nullptr)));
    if (r.ok) {
      ++registered;
      log(log_level::info, "registered {} at port {} (creation {}) from {}", a->node.name, a->node.port, r.creation,
          who);
    } else {
      log(log_level::warning, "refused registration of {:?} from {}: {}", a->node.name, who,
          make_error_code(*r.refusal).message());
    }
    out.reply = encode_alive2_response(r.ok, r.creation, a->node.highest_version >= 6);
    out.keep = true;  // epmd keeps even a refused registration's connection until the client closes it
  } else if (auto* p = std::get_if<port_please2_request>(&req)) {
    const registered_node* n = names.find(p->name);
    out.reply = n ? encode_port2_response(n->info) : encode_port2_not_found();
  } else if (std::holds_alternative<names_request>(req)) {
    out.reply = names.names_response(bound_port);
  } else if (std::holds_alternative<dump_request>(req)) {
    if (!local) return refuse_remote("DUMP_REQ"), out;
    out.reply = names.dump_response(bound_port);
  } else if (std::holds_alternative<kill_request>(req)) {
    if (!local) return refuse_remote("KILL_REQ"), out;
    if (!opts.relaxed_command_check && names.active_count() > 0) {
      log(log_level::warning, "disallowed KILL_REQ from {}: live nodes", who);
      out.reply = {'N', 'O'};
    } else {
      log(log_level::info, "KILL_REQ from {}: stopping", who);
      out.reply = {'O', 'K'};
      out.kill = true;
    }
  } else if (auto* s = std::get_if<stop_request>(&req)) {
    if (!local) return refuse_remote("STOP_REQ"), out;
    if (!opts.relaxed_command_check) {
      log(log_level::warning, "disallowed STOP_REQ from {}: no relaxed command check", who);
      out.close_without_reply = true;
    } else if (s->name.empty()) {
      log(log_level::warning, "STOP_REQ without a name from {}", who);
      out.close_without_reply = true;
    } else if (auto conn = names.unregister_name(s->name)) {
      --registered;
      if (auto it = connections.find(*conn); it != connections.end()) {
        error_code ignored;
        it->second->close(ignored);
      }
      log(log_level::info, "STOP_REQ from {}: unregistered {}", who, s->name);
      out.reply = {'S', 'T', 'O', 'P', 'P', 'E', 'D'};
    } else {
      // epmd answers NOEXIST and then, falling through, STOPPED as well (epmd_srv.c EPMD_STOP_REQ).
      out.reply = {'N', 'O', 'E', 'X', 'I', 'S', 'T', 'S', 'T', 'O', 'P', 'P', 'E', 'D'};
    }
  }
  return out;
}

asio::awaitable<void> server::impl::session(tcp::socket socket) {
  auto self = shared_from_this();
  const connection_id id = ++next_id;
  connections.emplace(id, &socket);
  ++open;
  struct cleanup {
    impl* s;
    connection_id id;
    ~cleanup() {
      s->connections.erase(id);
      if (s->names.unregister_connection(id)) --s->registered;
      --s->open;
    }
  } guard{this, id};

  // Lookups are most of the traffic: the peer's address is only looked at when a request needs it (the local-host
  // check) or a log line names it.
  auto who = [&socket] {
    error_code ec;
    auto peer = socket.remote_endpoint(ec);
    return ec ? std::string("a closed connection") : describe(peer);
  };
  auto local = [&socket] {
    error_code ec1, ec2;
    auto peer = socket.remote_endpoint(ec1);
    auto me = socket.local_endpoint(ec2);
    return !ec1 && !ec2 && is_local_peer(peer.address(), me.address());
  };
  const int fd = static_cast<int>(socket.native_handle());

  // One timer a connection closes the socket when a phase overruns: cheaper than racing every read against a timer,
  // and safe because the timer, the socket and this coroutine all run on the server's strand.
  struct watchdog_state {
    bool done = false;
    bool fired = false;
    std::string peer;
  };
  auto wd = std::make_shared<watchdog_state>();
  asio::steady_timer deadline(strand);
  auto arm = [&] {
    deadline.expires_after(opts.packet_timeout);
    deadline.async_wait([wd, &socket](error_code ec) {
      if (ec || wd->done) return;
      wd->fired = true;
      error_code ignored;
      auto peer = socket.remote_endpoint(ignored);
      wd->peer = ignored ? std::string("?") : describe(peer);
      socket.close(ignored);
    });
  };
  struct disarm {
    watchdog_state& s;
    ~disarm() { s.done = true; }  // a firing already queued must not touch this frame's socket
  } disarm_guard{*wd};

  arm();  // the whole request must arrive within the packet timeout
  std::array<std::uint8_t, first_read_size> buf;
  std::size_t got = 0;
  frame_check frame;
  for (;;) {
    std::size_t want = frame.packet_size ? frame.packet_size : first_read_size;
    auto [rec, n] =
        co_await socket.async_read_some(asio::buffer(buf.data() + got, want - got), tuple_awaitable);
    if (wd->fired) {
      ++timeouts;
      log(log_level::info, "closed connection from {}: no complete request within {} ms ({} bytes)", wd->peer,
          opts.packet_timeout.count(), got);
      co_return;
    }
    if (rec) {
      if (got > 0 || rec != asio::error::eof)
        log(log_level::info, "connection from {} closed after a partial packet of {} bytes", who(), got);
      co_return;
    }
    got += n;
    frame = check_frame(byte_view(buf.data(), got));
    if (frame.status == frame_check::state::failed) {
      ++bad_requests;
      log(log_level::warning, "closing connection from {}: {} (length field {})", who(), frame.ec.message(),
          (buf[0] << 8) | buf[1]);
      co_return;
    }
    if (frame.status == frame_check::state::complete) break;
  }

  ++requests;
  auto parsed = parse_request(byte_view(buf.data() + 2, got - 2));
  if (!parsed.value) {
    ++bad_requests;
    log(log_level::warning, "closing connection from {}: {} ({}, at byte {})", who(), parsed.ec.message(),
        parsed.detail, parsed.offset);
    co_return;
  }
  outcome out = handle(*parsed.value, id, fd, local, who);
  if (out.close_without_reply) co_return;

  if (!out.reply.empty()) {
    arm();  // and the answer must be taken within it
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(out.reply), tuple_awaitable);
    if (wd->fired || wec) {
      if (wd->fired) ++timeouts;
      log(log_level::info, "closing connection from {}: could not write the answer ({})",
          wd->fired ? wd->peer : who(), wd->fired ? std::string("timed out") : wec.message());
      co_return;  // the guard unregisters a registration whose answer was lost, as epmd does
    }
  }
  deadline.cancel();
  if (out.kill) {
    error_code ignored;
    socket.close(ignored);
    if (kill_handler) kill_handler(); else shutdown();
    co_return;
  }
  if (!out.keep) co_return;

  // A registered node's connection: no deadline; EOF, an error or any byte at all unregisters.
  std::uint8_t byte;
  auto [kec, kn] = co_await socket.async_read_some(asio::buffer(&byte, 1), tuple_awaitable);
  if (!kec && kn > 0) log(log_level::info, "unregistering the node of {}: it sent data on its ALIVE connection", who());
  if (auto name = names.unregister_connection(id)) {
    --registered;
    log(log_level::info, "unregistered {} (connection from {} closed)", *name, who());
  }
}

void server::impl::shutdown() {
  if (stopped) return;
  stopped = true;
  error_code ignored;
  for (auto& a : acceptors) a.close(ignored);
  for (auto& [id, sock] : connections) sock->close(ignored);
}

server::server(asio::io_context& io, server_options opts) : impl_(std::make_shared<impl>(io, std::move(opts))) {}

server::~server() { stop(); }

bool server::start(failure& f) {
  if (!impl_->open_listeners(f)) return false;
  for (auto& a : impl_->acceptors) asio::co_spawn(impl_->strand, impl_->accept_loop(a), asio::detached);
  return true;
}

void server::start() {
  failure f;
  if (!start(f)) throw epmd_exception(std::move(f));
}

void server::stop() {
  asio::dispatch(impl_->strand, [s = impl_] { s->shutdown(); });
}

std::uint16_t server::port() const { return impl_->bound_port; }

server_stats server::stats() const {
  return server_stats{impl_->accepted, impl_->requests, impl_->bad_requests, impl_->timeouts, impl_->open,
                      impl_->registered};
}

void server::on_kill(std::function<void()> f) {
  asio::dispatch(impl_->strand, [s = impl_, f = std::move(f)]() mutable { s->kill_handler = std::move(f); });
}

std::unique_ptr<server> start_epmd_unless_running(asio::io_context& io, server_options opts,
                                                  std::chrono::milliseconds probe_timeout) {
  epmd_endpoint local("127.0.0.1", opts.port);
  if (epmd_answering_sync(local, probe_timeout)) return nullptr;
  auto srv = std::make_unique<server>(io, std::move(opts));
  failure f;
  if (srv->start(f)) return srv;
  if (f.code == asio::error::address_in_use && epmd_answering_sync(local, probe_timeout)) return nullptr;
  throw epmd_exception(std::move(f));
}

}  // namespace cnode::epmd
