// dist-probe: the smallest node that uses the dist layer, for live tests against erl/elixir. It listens, connects
// on command, keeps a net_kernel-like table of connections, answers ticks and logs one line per event:
//   listening <port>
//   up <node> published=<bool> flags=0x<hex> creation=<n> version=<5|6> this=<our name> leftover=<bytes>
//   down <node> reason=<nodedown reason>
//   refused <node|?> reason=<reason> detail=<log line>
//   packet <node> len=<n>
//   alive <node> answer=<bool>      (we dialled, the peer still had a connection from us)
//   replacing <node>                (a node came back while we held its old connection)
//   stats <node> bytes_in=.. bytes_out=.. packets_in=.. packets_out=.. ticks_in=.. ticks_out=..
// Commands on stdin, one a line: connect <node> <host> <port> | close <node> | stats <node> | quit
// Options: --name N --cookie C --hidden --listen PORT --ticktime S --setuptime S --creation N --name-me HOST
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "dist/connection.hpp"
#include "dist/cookie.hpp"
#include "dist/handshake_driver.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace cnode::dist;
using namespace std::chrono_literals;

namespace {

template <typename... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  std::fputs((fmt::format(f, std::forward<Args>(args)...) + "\n").c_str(), stdout);
  std::fflush(stdout);
}

struct settings {
  std::string name = "probe@localhost";
  std::optional<std::string> cookie;
  bool hidden = false;
  bool name_me = false;
  int listen_port = 0;
  std::chrono::milliseconds ticktime = 60s;
  std::chrono::milliseconds setuptime = default_setup_time;
  std::uint32_t creation = 0x0badf00d;
};

// The bookkeeping net_kernel does for connections (net_kernel.erl #connection{}): who owns the pending
// attempt, which connection is up.
struct node_entry {
  connection_state state = connection_state::none;
  std::uint64_t owner = 0;          // the handshake attempt that owns the pending entry
  std::shared_ptr<tcp::socket> owner_socket;  // to kill a superseded outgoing attempt
  std::shared_ptr<connection> conn;
};

class probe;

class probe_handler : public connection_handler {
 public:
  explicit probe_handler(probe& p) : probe_(p) {}
  void on_packet(connection& c, std::span<const std::byte> packet) override;
  void on_down(connection& c, std::error_code reason) override;

 private:
  probe& probe_;
};

class probe {
 public:
  probe(asio::io_context& io, settings s, cookie_jar cookies) : io_(io), s_(std::move(s)), cookies_(std::move(cookies)) {}

  std::map<std::string, node_entry, std::less<>> nodes;

  handshake_config config() const {
    handshake_config c;
    c.this_node = s_.name;
    c.creation = s_.creation;
    c.flags = default_flags(s_.hidden);
    c.cookies = cookies_;
    c.request_name = s_.name_me;
    return c;
  }

  connection_options options() const {
    connection_options o;
    o.net_ticktime = s_.ticktime;
    return o;
  }

  // One handshake attempt's view of the table.
  class attempt_policy : public handshake_policy {
   public:
    attempt_policy(probe& p, std::uint64_t id, std::shared_ptr<tcp::socket> sock) : p_(p), id_(id), sock_(std::move(sock)) {}
    accept_answer accept_pending(std::string_view node, bool, bool) override {
      auto& e = p_.nodes[std::string(node)];
      const auto answer = decide_accept(p_.s_.name, node, e.state);
      switch (answer) {
        case accept_answer::ok:
          e.state = connection_state::pending;
          e.owner = id_;
          e.owner_socket = sock_;
          break;
        case accept_answer::ok_simultaneous: {
          // Our own outgoing attempt loses: kill it, this one takes the entry over (net_kernel.erl:1072).
          if (e.owner_socket) {
            boost::system::error_code ignored;
            e.owner_socket->close(ignored);
          }
          e.owner = id_;
          e.owner_socket = sock_;
          break;
        }
        case accept_answer::alive: e.state = connection_state::up_pending; e.owner = id_; break;
        default: break;
      }
      return answer;
    }
    bool is_pending(std::string_view node) override {
      auto it = p_.nodes.find(node);
      const bool mine = it != p_.nodes.end() && it->second.owner == id_ && it->second.state == connection_state::pending;
      say("alive {} answer={}", node, mine);
      return mine;
    }
    asio::awaitable<void> wait_pending(std::string_view node) override {
      auto it = p_.nodes.find(node);
      if (it == p_.nodes.end() || !it->second.conn) co_return;
      auto old = it->second.conn;
      say("replacing {}", node);
      old->close(error::disconnected);
      asio::steady_timer t(co_await asio::this_coro::executor);
      while (old->is_up() || p_.nodes[std::string(node)].conn == old) {  // bounded by the driver's setup time
        t.expires_after(5ms);
        co_await t.async_wait(asio::use_awaitable);
      }
    }

   private:
    probe& p_;
    std::uint64_t id_;
    std::shared_ptr<tcp::socket> sock_;
  };

  void finish(std::uint64_t id, std::shared_ptr<tcp::socket> sock, const handshake_result& r, std::string_view label) {
    if (r.ec) {
      say("refused {} reason={} detail={}", r.peer.node.empty() ? std::string(label) : r.peer.node,
          reason_name(r.ec), r.detail);
      // Only the owner of a pending entry removes it: a superseded attempt has lost it already.
      for (auto it = nodes.begin(); it != nodes.end(); ++it) {
        if (it->second.owner == id && !it->second.conn) {
          nodes.erase(it);
          break;
        }
        if (it->second.owner == id && it->second.state == connection_state::up_pending)
          it->second.state = connection_state::up;
      }
      boost::system::error_code ignored;
      sock->close(ignored);
      return;
    }
    auto& e = nodes[r.peer.node];
    e.state = connection_state::up;
    e.owner = id;
    e.owner_socket.reset();
    e.conn = connection::create(std::move(*sock), r.peer, r.this_node, options(),
                                std::make_shared<probe_handler>(*this), r.leftover);
    say("up {} published={} flags=0x{:x} creation={} version={} this={} leftover={}", r.peer.node,
        r.peer.published(), r.peer.effective, r.peer.creation, r.peer.version, r.this_node, r.leftover.size());
    e.conn->start();
  }

  asio::awaitable<void> accept_one(std::shared_ptr<tcp::socket> sock) {
    const auto id = ++next_id_;
    attempt_policy policy(*this, id, sock);
    auto r = co_await accept_handshake(*sock, config(), policy, s_.setuptime);
    finish(id, sock, r, "?");
  }

  asio::awaitable<void> connect(std::string node, std::string host, std::uint16_t port) {
    auto& e = nodes[node];
    if (e.state != connection_state::none) {
      say("already {} state={}", node, static_cast<int>(e.state));
      co_return;
    }
    const auto id = ++next_id_;
    auto sock = std::make_shared<tcp::socket>(io_);
    e.state = connection_state::pending;
    e.owner = id;
    e.owner_socket = sock;
    attempt_policy policy(*this, id, sock);
    auto r = co_await connect_handshake(*sock, host, port, node, config(), policy, s_.setuptime);
    auto it = nodes.find(node);
    if (!r.ec && (it == nodes.end() || it->second.owner != id)) {
      // Superseded while finishing: the other connection is the one.
      say("refused {} reason=superseded detail=simultaneous connect resolved for the other connection", node);
      co_return;
    }
    finish(id, sock, r, node);
  }

  asio::awaitable<void> listen(tcp::acceptor& acceptor) {
    for (;;) {
      auto sock = std::make_shared<tcp::socket>(io_);
      auto [ec] = co_await acceptor.async_accept(*sock, asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(io_, accept_one(sock), asio::detached);
    }
  }

  void command(const std::string& line) {
    std::istringstream in(line);
    std::string cmd, node;
    in >> cmd >> node;
    if (cmd == "connect") {
      std::string host;
      int port = 0;
      in >> host >> port;
      asio::co_spawn(io_, connect(node, host, static_cast<std::uint16_t>(port)), asio::detached);
    } else if (cmd == "close") {
      if (auto it = nodes.find(node); it != nodes.end() && it->second.conn) it->second.conn->close();
    } else if (cmd == "stats") {
      if (auto it = nodes.find(node); it != nodes.end() && it->second.conn) {
        const auto st = it->second.conn->stats();
        say("stats {} bytes_in={} bytes_out={} packets_in={} packets_out={} ticks_in={} ticks_out={}", node,
            st.bytes_in, st.bytes_out, st.packets_in, st.packets_out, st.ticks_in, st.ticks_out);
      } else {
        say("stats {} none", node);
      }
    } else if (cmd == "quit") {
      io_.stop();
    } else if (!cmd.empty()) {
      say("error unknown command {}", cmd);
    }
  }

  asio::awaitable<void> read_commands() {
    asio::posix::stream_descriptor in(io_);
    boost::system::error_code ec;
    in.assign(::dup(STDIN_FILENO), ec);
    if (ec) co_return;  // not a pipe (e.g. /dev/null as a file): no commands
    asio::streambuf buf;
    for (;;) {
      auto [rec, n] = co_await asio::async_read_until(in, buf, '\n', asio::as_tuple(asio::use_awaitable));
      if (rec) co_return;  // EOF: keep running until a signal
      std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
      buf.consume(n);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      command(line);
    }
  }

  asio::io_context& io_;
  settings s_;
  cookie_jar cookies_;
  std::uint64_t next_id_ = 0;
};

void probe_handler::on_packet(connection& c, std::span<const std::byte> packet) {
  say("packet {} len={}", c.peer().node, packet.size());
}

void probe_handler::on_down(connection& c, std::error_code reason) {
  say("down {} reason={}", c.peer().node, reason_name(reason));
  auto it = probe_.nodes.find(c.peer().node);
  if (it != probe_.nodes.end() && it->second.conn.get() == &c) {
    if (it->second.state == connection_state::up_pending) {
      // A replacement is being accepted: it owns the entry now.
      it->second.conn.reset();
      it->second.state = connection_state::pending;
    } else {
      probe_.nodes.erase(it);
    }
  }
}

int usage() {
  std::fputs("usage: dist-probe [--name N] [--cookie C] [--hidden] [--listen PORT] [--ticktime S] [--setuptime S]"
             " [--creation N] [--name-me HOST]\n", stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage());
      return argv[++i];
    };
    if (a == "--name") s.name = value();
    else if (a == "--cookie") s.cookie = value();
    else if (a == "--hidden") s.hidden = true;
    else if (a == "--listen") s.listen_port = std::stoi(value());
    else if (a == "--ticktime") s.ticktime = std::chrono::milliseconds(static_cast<long>(std::stod(value()) * 1000));
    else if (a == "--setuptime") s.setuptime = std::chrono::milliseconds(static_cast<long>(std::stod(value()) * 1000));
    else if (a == "--creation") s.creation = static_cast<std::uint32_t>(std::stoul(value()));
    else if (a == "--name-me") { s.name = value(); s.name_me = true; s.creation = 0; }
    else return usage();
  }
  auto cookie = load_cookie(s.cookie);
  if (cookie.ec) {
    say("cookie-error {}", cookie.message);
    return 1;
  }
  cookie_jar jar;
  jar.cookie = cookie.cookie;

  asio::io_context io;
  probe p(io, s, jar);
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), static_cast<std::uint16_t>(s.listen_port)));
  say("listening {}", acceptor.local_endpoint().port());
  asio::co_spawn(io, p.listen(acceptor), asio::detached);
  asio::co_spawn(io, p.read_commands(), asio::detached);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { io.stop(); });
  io.run();
  return 0;
}
