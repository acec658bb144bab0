#include "cnode/distribution.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>

#include "cnode/oneshot.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "cnode/log.hpp"
#include "etf/format.hpp"

namespace cnode {

namespace {

// A message up to this size is decoded straight from the read buffer (distribution::on_message): copying it into a
// shared buffer would cost a malloc and a free per message, more than copying the few small binaries it can hold.
constexpr std::size_t small_packet_bytes = 256;

struct atoms {
  atom noconnection{"noconnection"}, nodeup{"nodeup"}, nodedown{"nodedown"}, notsup{"notsup"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

std::vector<std::byte> as_bytes(const std::vector<std::uint8_t>& v) {
  std::vector<std::byte> out(v.size());
  if (!v.empty()) std::memcpy(out.data(), v.data(), v.size());
  return out;
}

// Binaries this long are not copied into packets: the connection writes them from the terms (out_packet).
constexpr std::size_t external_binary_min = 64 * 1024;

// Encodes into this thread's scratch buffer (no allocation once it has grown), then one exact-size packet; big
// binaries stay out of it (sent from where they are).
// With atom_refs (the peer, or our own offer before the connection exists, has DIST_HDR_ATOM_CACHE): the atoms as
// atom cache references, the header left to the connection (out_packet::deferred_header).
// With small_to (a connection that is up, and atom_refs false): a small message with no binary left out is copied from
// the scratch buffer into that connection's run of small packets (connection::try_send_small, key its order key) and
// nothing is returned; otherwise, or when the connection does not take it now, the packet.
std::optional<dist::out_packet> encode_packet(const dist::control_message& m, dist::packet_form form,
                                              bool atom_refs = false, dist::connection* small_to = nullptr,
                                              std::uint64_t key = 0) {
  thread_local std::vector<std::uint8_t> scratch;
  thread_local etf::atom_ref_table refs;
  scratch.clear();
  dist::out_packet out;
  dist::encode_control(m, scratch, form, &out.externals, external_binary_min, atom_refs ? &refs : nullptr);
  if (small_to && !atom_refs && out.externals.empty() && scratch.size() <= dist::connection::run_packet_max &&
      small_to->try_send_small(std::as_bytes(std::span(scratch)), form == dist::packet_form::header, key))
    return std::nullopt;
  if (atom_refs) {
    out.refs = refs.take();
    out.deferred_header = true;
  }
  out.bytes = as_bytes(scratch);
  if (scratch.capacity() > 256 * 1024) std::vector<std::uint8_t>().swap(scratch);  // a big message's buffer goes
  return out;
}

std::uint64_t next_distribution_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// The order key of a sender: packets with the same key keep their order on a connection.
std::uint64_t order_key(const term* sender) {
  if (!sender || !sender->is_pid()) return 0;
  const auto& p = sender->as_pid();
  return ((std::uint64_t{p.serial} << 32 | p.id) << 1) | 1;
}

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

}  // namespace

class distribution::handler : public dist::connection_handler {
 public:
  handler(distribution& d, atom node, std::shared_ptr<bool> alive) : d_(d), node_(node), alive_(std::move(alive)) {}
  void on_packet(dist::connection& c, std::span<const std::byte> p) override {
    if (*alive_) d_.on_packet(node_, c, p);
  }
  void on_message(dist::connection& c, dist::inbound_message& m) override {
    if (*alive_) d_.on_message(node_, c, m);
  }
  void on_down(dist::connection& c, std::error_code r) override {
    if (*alive_) d_.on_down(node_, c, r);
  }
  void on_batch_end(dist::connection&) override { process::end_batch(); }

 private:
  distribution& d_;
  atom node_;
  std::shared_ptr<bool> alive_;
};

distribution::distribution(node& n, distribution_config cfg)
    : node_(n), cfg_(std::move(cfg)), cookies_(std::move(cfg_.cookies)), id_(next_distribution_id()) {
  cfg_.cookies = {};
  partial_budget_ = std::make_shared<dist::partial_budget>(cfg_.max_partial);
  node_.set_router(this);
}

distribution::~distribution() {
  *alive_ = false;
  node_.set_router(nullptr);
}

dist::handshake_config distribution::handshake_config() const {
  dist::handshake_config c;
  c.this_node = node_.name();
  c.creation = node_.creation();
  c.flags = dist::default_flags(cfg_.hidden) | (cfg_.atom_cache ? dist::dflag::dist_hdr_atom_cache : 0);
  {
    std::lock_guard lk(cookie_mu_);
    c.cookies = cookies_;
  }
  dist::randomize(c);
  return c;
}

void distribution::set_cookie(std::string cookie) {
  std::lock_guard lk(cookie_mu_);
  cookies_.cookie = std::move(cookie);
}

void distribution::set_cookie(atom node, std::string cookie) {
  if (node == node_.name_atom()) return set_cookie(std::move(cookie));
  std::lock_guard lk(cookie_mu_);
  cookies_.per_node[std::string(node.text())] = std::move(cookie);
}

std::string distribution::cookie() const {
  std::lock_guard lk(cookie_mu_);
  return cookies_.cookie;
}

std::string distribution::cookie(atom node) const {
  std::lock_guard lk(cookie_mu_);
  return node == node_.name_atom() ? cookies_.cookie : cookies_.for_node(node.text());
}

asio::awaitable<void> distribution::start() {
  auto ex = co_await asio::this_coro::executor;
  if (cfg_.tls) tls_ = dist::make_tls_contexts(*cfg_.tls);  // throws with a sentence: a file that cannot be had
  boost::system::error_code ec;
  auto address = asio::ip::make_address(cfg_.listen_address, ec);
  if (ec) throw std::runtime_error(fmt::format("bad listen address {}: {}", cfg_.listen_address, ec.message()));
  asio::ip::tcp::endpoint ep(address, cfg_.listen_port);
  acceptor_.emplace(ex);
  acceptor_->open(ep.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(ep, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot listen on {}:{}: {}", cfg_.listen_address, cfg_.listen_port, ec.message()));
  }
  port_ = acceptor_->local_endpoint().port();
  if (cfg_.use_epmd) {
    const std::string& full = node_.name();
    const std::string alive = full.substr(0, full.find('@'));
    epmd::node_registration reg;
    reg.name = alive;
    reg.port = port_;
    reg.type = cfg_.hidden ? epmd::node_type::hidden : epmd::node_type::normal;
    // A named endpoint: GCC 12 can destroy a braced temporary inside a co_await expression twice.
    const epmd::epmd_endpoint where(cfg_.epmd_host, cfg_.epmd_port);
    auto r = co_await epmd::try_register_node(where, reg);
    if (!r) throw std::runtime_error(r.error().message);
    node_.set_identity(full, r->creation());
    log::info("registered {} with EPMD at {} (port {}, creation {}{})", full, r->epmd(), port_, r->creation(),
              tls_ ? ", TLS" : "");
    registration_.emplace(std::move(r.value()));
  } else {
    log::info("listening on {}:{} without EPMD{}", cfg_.listen_address, port_, tls_ ? " (TLS)" : "");
  }
  asio::co_spawn(ex, accept_loop(), asio::detached);
}

void distribution::stop() {
  std::vector<std::shared_ptr<dist::connection>> conns;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [n, p] : peers_)
      if (p.conn) conns.push_back(p.conn);
  }
  if (acceptor_) {
    boost::system::error_code ec;
    acceptor_->close(ec);
  }
  for (auto& c : conns) c->close();
  if (registration_) registration_->close();
}

namespace {

// A descriptor held back for the moment the process runs out: closed to accept (and at once close) the connection
// waiting in the backlog, so a peer is refused cleanly instead of waiting on a listener that cannot take it.
struct reserve_fd {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ~reserve_fd() {
    if (fd >= 0) ::close(fd);
  }
  void use(int listener) {
    if (fd >= 0) ::close(fd);
    int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) ::close(c);
    fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
};

}  // namespace

asio::awaitable<void> distribution::accept_loop() {
  auto ex = co_await asio::this_coro::executor;
  reserve_fd reserve;
  asio::steady_timer pause(ex);
  auto backoff = std::chrono::milliseconds(10);
  for (;;) {
    // Each handshake on a strand of its own, so a flood's oldest can be dropped from another thread.
    auto strand = asio::make_strand(ex);
    auto [ec, socket] = co_await acceptor_->async_accept(strand, asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping_ || !acceptor_->is_open()) co_return;
      const bool out_of_fds = ec == asio::error::no_descriptors || ec.value() == ENFILE;
      if (auto suffix = accept_log_.admit(ec.message()))
        log::warning("accept failed: {}{}", ec.message(), *suffix);
      if (out_of_fds) reserve.use(acceptor_->native_handle());
      // Never spin on a listener that keeps failing: wait, longer each time, up to a second.
      pause.expires_after(backoff);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      continue;
    }
    backoff = std::chrono::milliseconds(10);
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    asio::co_spawn(strand, handle_accept(std::move(socket)), asio::detached);
  }
}

std::uint64_t distribution::take_handshake_slot(const std::string& address, std::function<void()> evict) {
  std::vector<std::function<void()>> dropped;
  std::uint64_t id;
  {
    std::lock_guard lk(hs_mu_);
    std::size_t same = 0;
    for (const auto& s : hs_slots_) same += s.address == address;
    if (same >= per_address_handshakes) {
      for (auto it = hs_slots_.begin(); it != hs_slots_.end(); ++it)
        if (it->address == address) {
          dropped.push_back(std::move(it->evict));
          hs_slots_.erase(it);
          break;
        }
    }
    while (hs_slots_.size() >= max_handshakes) {
      dropped.push_back(std::move(hs_slots_.front().evict));
      hs_slots_.pop_front();
    }
    id = next_slot_id_++;
    hs_slots_.push_back({id, address, std::move(evict)});
  }
  if (!dropped.empty()) {
    if (auto suffix = refused_log_.admit("handshake slots"))
      log::warning("too many handshakes under way ({} at most, {} from one address): dropped the oldest{}",
                   max_handshakes, per_address_handshakes, *suffix);
    stats_.count_refused("too many handshakes");
  }
  for (auto& f : dropped) f();
  return id;
}

void distribution::free_handshake_slot(std::uint64_t id) {
  std::lock_guard lk(hs_mu_);
  for (auto it = hs_slots_.begin(); it != hs_slots_.end(); ++it)
    if (it->id == id) {
      hs_slots_.erase(it);
      return;
    }
}

std::chrono::milliseconds distribution::failure_delay(const std::string& address) {
  std::lock_guard lk(hs_mu_);
  auto it = failures_.find(address);
  if (it == failures_.end()) return std::chrono::milliseconds(0);
  if (std::chrono::steady_clock::now() - it->second.last > std::chrono::seconds(60)) {
    failures_.erase(it);
    return std::chrono::milliseconds(0);
  }
  // The BEAM answers cookie guesses as fast as they come; we slow an address down after 5 failures in a minute:
  // 50 ms more for each further one, a second at most.
  const unsigned n = it->second.count;
  if (n <= 5) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(std::min<unsigned>(50 * (n - 5), 1000));
}

void distribution::count_failure(const std::string& address, bool failed) {
  std::lock_guard lk(hs_mu_);
  if (!failed) return;
  if (failures_.size() >= 4096) failures_.clear();  // bounded: a wide flood forgets its history, never grows it
  auto& f = failures_[address];
  ++f.count;
  f.last = std::chrono::steady_clock::now();
}

// The policy of one accepted handshake: the distribution's, remembering whether this handshake was recorded as the
// pending one for its node name, so that its end (whatever it is) forgets exactly that record.
class accept_guard final : public dist::handshake_policy {
 public:
  accept_guard(distribution& d, std::shared_ptr<bool> alive, dist::transport& stream)
      : d_(d), alive_(std::move(alive)), stream_(stream) {}
  ~accept_guard() override { release(); }
  dist::accept_answer accept_pending(std::string_view node, bool dynamic, bool published) override {
    // dist_util.erl:804 check_allowed, before anything else is decided: the handshake answers "not_allowed".
    if (!d_.allowed(node)) return dist::accept_answer::not_allowed;
    if (!d_.cfg_.allow.empty() && !certificate_vouches(node)) return dist::accept_answer::not_allowed;
    auto ans = d_.accept_pending(node, dynamic, published);
    if (ans == dist::accept_answer::ok || ans == dist::accept_answer::alive ||
        ans == dist::accept_answer::ok_simultaneous)
      name_ = std::string(node);
    return ans;
  }
  bool is_pending(std::string_view node) override { return d_.is_pending(node); }
  asio::awaitable<void> wait_pending(std::string_view node) override { return d_.wait_pending(node); }
  // With an allow list, a TLS peer's certificate must be issued to the host of the node name it gives, or to its
  // address (as inet_tls_dist.erl:476 allowed_nodes narrows the list to the hosts the certificate names). A peer
  // without a certificate (verification off) is judged by its name alone, as there.
  bool certificate_vouches(std::string_view node) {
    const auto at = node.find('@');
    const std::string host(at == std::string_view::npos ? node : node.substr(at + 1));
    auto by_name = stream_.peer_certificate_names(host);
    if (!by_name || *by_name) return true;
    boost::system::error_code ec;
    const std::string address = stream_.socket().remote_endpoint(ec).address().to_string();
    if (!ec && stream_.peer_certificate_names(address).value_or(false)) return true;
    log::warning("connection from {} ({}): its certificate is issued neither to {} nor to {}", node, address, host,
                 address);
    return false;
  }
  // The handshake is over: its name is no longer pending (call under no lock).
  void release() {
    if (name_.empty() || !*alive_) return;  // a frame destroyed after the distribution (shutdown)
    std::lock_guard lock(d_.mu_);
    d_.accepting_.erase(name_);
    if (auto a = atom::existing(name_)) d_.wake_locked(*a);
    name_.clear();
  }

 private:
  distribution& d_;
  std::shared_ptr<bool> alive_;
  dist::transport& stream_;
  std::string name_;
};

asio::awaitable<void> distribution::handle_accept(asio::ip::tcp::socket socket) {
  using namespace asio::experimental::awaitable_operators;
  boost::system::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  const std::string address = remote.address().to_string();
  auto ex = co_await asio::this_coro::executor;  // this handshake's strand
  oneshot<bool> evicted(ex);
  const std::uint64_t slot = take_handshake_slot(address, [evicted] { evicted.set(true); });
  struct slot_release {
    distribution& d;
    std::shared_ptr<bool> alive;
    std::uint64_t id;
    ~slot_release() {
      if (*alive) d.free_handshake_slot(id);
    }
  } release{*this, alive_, slot};
  if (auto delay = failure_delay(address); delay.count() > 0) {
    auto waited = co_await evicted.wait(std::chrono::steady_clock::now() + delay);
    if (waited) co_return;
  }
  // Over TLS the TLS handshake runs inside this same slot and setup time: a peer that connects and says nothing
  // holds a slot no longer than one that stalls the distribution handshake.
  dist::transport stream = tls_ ? dist::transport(std::move(socket), tls_->server) : dist::transport(std::move(socket));
  accept_guard guard(*this, alive_, stream);
  std::function<asio::awaitable<void>()> drop = [&]() -> asio::awaitable<void> {
    co_await evicted.wait(std::chrono::steady_clock::time_point::max());
    stream.close();  // the handshake's pending read ends at once
  };
  auto both = co_await (dist::accept_handshake(stream, handshake_config(), guard, cfg_.setup_time) || drop());
  if (both.index() == 1) {
    guard.release();
    co_return;
  }
  auto res = std::move(std::get<0>(both));
  count_failure(address, res.ec == dist::error::bad_cookie || res.ec == dist::error::tls_failed);
  if (res.ec) {
    const std::string who = res.peer.node.empty() ? fmt::format("{}:{}", remote.address().to_string(), remote.port())
                                                  : res.peer.node;
    if (res.ec == dist::error::nok || res.ec == dist::error::already_pending) {
      log::debug("connection from {} not taken: {}", who, res.ec.message());
    } else {
      if (auto suffix = refused_log_.admit(res.ec.message()))
        log::warning("refused connection from {}: {}{}", who, res.detail.empty() ? res.ec.message() : res.detail,
                     *suffix);
      stats_.count_refused(res.ec.message());
    }
    guard.release();
    co_return;
  }
  // The cookie is proven: only now does the peer's name become an atom.
  const atom peer_node(res.peer.node);  // before res is moved from
  connection_up(peer_node, std::move(stream), std::move(res), false);
  guard.release();
}

void distribution::start_connect(atom node) {
  asio::co_spawn(node_.get_executor(), run_connect(node), asio::detached);
}

asio::awaitable<void> distribution::run_connect(atom node) {
  const std::string name(node.text());
  if (!allowed(name)) {  // net_kernel.erl:1806 setup_check: a node not allowed is not dialled
    connect_failed(node, fmt::format("Connection attempt with disallowed node {} (not in --allow)", name));
    co_return;
  }
  epmd::node_address addr;
  if (auto it = cfg_.static_peers.find(name); it != cfg_.static_peers.end()) {
    addr = it->second;
  } else {
    auto r = co_await epmd::try_lookup_node(name, cfg_.epmd_port);
    if (!r) {
      connect_failed(node, r.error().message);
      co_return;
    }
    addr = r.value();
  }
  auto ex = co_await asio::this_coro::executor;
  dist::transport stream = tls_ ? dist::transport(asio::ip::tcp::socket(ex), tls_->client)
                               : dist::transport(asio::ip::tcp::socket(ex));
  stream.set_server_name(tls_ ? dist::tls_server_name(tls_->client_options, name) : std::string());
  auto res = co_await dist::connect_handshake(stream, addr.host, addr.port, name, handshake_config(), *this,
                                              cfg_.setup_time);
  if (res.ec) {
    if (res.ec == dist::error::nok || res.ec == dist::error::already_pending) {
      // The peer's own attempt wins (simultaneous connect): its connection will carry our queue.
      std::lock_guard lock(mu_);
      peer& e = peers_[node];
      e.connecting = false;
      e.attempt_superseded = false;
      if (!e.conn) e.awaiting_peer_until = std::chrono::steady_clock::now() + cfg_.setup_time;
      wake_locked(node);
      log::debug("connect to {}: the peer's connection wins ({})", name, res.ec.message());
      co_return;
    }
    connect_failed(node, res.detail.empty() ? res.ec.message() : res.detail);
    co_return;
  }
  boost::system::error_code ec;
  stream.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  connection_up(node, std::move(stream), std::move(res), true);
}

void distribution::connect_failed(atom node, const std::string& why) {
  std::vector<signal> sigs;
  std::vector<term> targets;
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(node);
    if (it == peers_.end()) return;
    peer& e = it->second;
    e.connecting = false;
    e.attempt_superseded = false;
    wake_locked(node);
    if (e.conn || accepting_locked(node)) return;  // another connection will carry the queue
    sigs = std::move(e.queued_signals);
    targets = std::move(e.queued_targets);
    peers_.erase(it);
  }
  stats_.connect_failed.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    if (backoff_.size() > 4096) {
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(backoff_, [&](const auto& kv) { return kv.second.until < now; });
    }
    auto& b = backoff_[node];
    b.delay = b.delay.count() == 0 ? std::chrono::milliseconds(100)
                                   : std::min(b.delay * 2, std::chrono::milliseconds(4000));
    b.until = std::chrono::steady_clock::now() + b.delay;
  }
  if (auto suffix = connect_log_.admit(node.text())) log::warning("cannot connect to {}: {}{}", node.text(), why, *suffix);
  // What was waiting for the connection is answered as for a lost connection.
  for (std::size_t i = 0; i < sigs.size(); ++i) answer_unreachable(targets[i], sigs[i]);
  notify(node, false, false);
}

void distribution::answer_unreachable(const term& to, const signal& s) {
  if (s.kind == signal_kind::link) {
    node_.route(s.from, signal{signal_kind::link_exit, to, term(at().noconnection), {}, {}, 0});
  } else if (s.kind == signal_kind::monitor) {
    node_.route(s.from, signal{signal_kind::down, to, term(at().noconnection), s.ref, to, 0});
  }
}

void distribution::connection_up(atom node, dist::transport stream, dist::handshake_result res, bool initiated) {
  std::shared_ptr<dist::connection> conn;
  bool visible = res.peer.published();
  const std::string tls = stream.is_tls() ? ", " + stream.tls_version() : std::string();
  {
    std::lock_guard lock(mu_);
    peer& e = peers_[node];
    if (initiated) e.connecting = false;
    e.awaiting_peer_until = {};
    const bool superseded = initiated && e.attempt_superseded;
    if (initiated) e.attempt_superseded = false;  // our attempt has ended, whatever happens to it now
    wake_locked(node);
    if ((e.conn && e.conn->is_up()) || stopping_ || superseded) {
      stream.close();
      log::debug("dropping a second connection to {}", node.text());
      return;
    }
    dist::connection_options o;
    o.net_ticktime = cfg_.net_ticktime;
    o.outbound_limit = cfg_.outbound_limit;
    o.max_packet = cfg_.max_message;
    o.partial_budget = partial_budget_;
    conn = dist::connection::create(std::move(stream), res.peer, res.this_node, o,
                                    std::make_shared<handler>(*this, node, alive_), res.leftover);
    e.conn = conn;
    conn_epoch_.fetch_add(1, std::memory_order_release);
    conn->start();
    // Queued packets go first, under the lock, so nothing routed later overtakes them.
    for (auto& p : e.queue) {
      if (!conn->try_send(p)) conn->async_send(std::move(p), 0, asio::detached);
    }
    e.queue.clear();
    e.queued_signals.clear();
    e.queued_targets.clear();
    // nodeup under the lock that makes the node part of nodes(): a close of this connection (on_down takes the
    // same lock) can only be announced after it, never before.
    notify_locked(node, true, visible);
  }
  {
    std::lock_guard lock(mu_);
    backoff_.erase(node);
  }
  (initiated ? stats_.connected : stats_.accepted).fetch_add(1, std::memory_order_relaxed);
  log::info("up {} ({}, {}{})", node.text(), visible ? "visible" : "hidden", initiated ? "we connected" : "it connected",
            tls);
}

void distribution::on_down(atom node, dist::connection& c, std::error_code reason) {
  bool current = false;
  const bool visible = c.peer().published();
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(node);
    if (it != peers_.end() && it->second.conn.get() == &c) {
      current = true;
      it->second.conn.reset();
      conn_epoch_.fetch_add(1, std::memory_order_release);
      wake_locked(node);
      if (!it->second.connecting && !accepting_locked(node) && it->second.queue.empty()) peers_.erase(it);
      // Everything the node's going down means is queued before the lock is let go: whoever sees the node gone
      // from nodes() and then asks a subscriber (global's server, pg) is answered after it has handled the
      // nodedown, and a new connection from the node (accepted under this lock) cannot get a message in before
      // the noconnection exits and 'DOWN's of the old one (global.erl:1950 relies on that order). As in the
      // BEAM, the nodedown messages come first. Only local deliveries: none calls back into the distribution.
      notify_locked(node, false, visible);
      node_.for_each_process([&](process& p) {
        p.deliver(signal{signal_kind::node_down, {}, term(at().noconnection), {}, term(node), 0});
      });
    }
  }
  if (!current) return;
  stats_.connections_lost.fetch_add(1, std::memory_order_relaxed);
  if (reason.category() != dist::dist_category())
    log::error("connection to {} closed: {}", node.text(), reason.message());  // a fragment or header fault
  log::info("down {} reason={}", node.text(), dist::reason_name(reason));
}

void distribution::notify(atom node, bool up, bool visible) {
  std::lock_guard lock(mu_);
  notify_locked(node, up, visible);
}

// Only messages to local processes: delivering them never calls back into the distribution.
void distribution::notify_locked(atom node, bool up, bool visible) {
  std::vector<term> to;
  for (const auto& [pid, hidden_too] : node_monitors_)
    if (visible || hidden_too) to.push_back(pid);
  if (!up) {
    for (auto it = single_node_monitors_.begin(); it != single_node_monitors_.end();) {
      if (it->second == node) {
        to.push_back(it->first);
        it = single_node_monitors_.erase(it);
      } else {
        ++it;
      }
    }
  }
  term msg = term::tuple({term(up ? at().nodeup : at().nodedown), term(node)});
  for (const auto& pid : to) node_.send({}, pid, msg);
}

void distribution::on_message(atom node, dist::connection& c, dist::inbound_message& m) {
  if (!m.headered) {
    on_packet(node, c, m.bytes);
    return;
  }
  // A reassembled message comes in its own buffer, which the decoded binaries refer into; a small one is decoded
  // from the read buffer (its binaries, all small, copied); else a copy of the packet (the read buffer is reused).
  const std::span<const std::uint8_t> body{reinterpret_cast<const std::uint8_t*>(m.bytes.data()), m.bytes.size()};
  dist::decode_outcome out;
  if (m.shared.node()) {
    out = dist::decode_control_body(m.shared, static_cast<std::size_t>(body.data() - m.shared.data()), body.size(),
                                    m.refs);
  } else if (body.size() <= small_packet_bytes) {
    out = dist::decode_control_body(body, m.refs);
  } else {
    out = dist::decode_control_body(etf::shared_bytes::copy(body), 0, body.size(), m.refs);
  }
  if (!out) {
    log::error("bad control message from {} ({} at byte {} after the distribution header): closing the connection",
               node.text(), out.ec.message(), out.offset);
    c.close(dist::error::bad_message);
    return;
  }
  node_.counters().messages_in.fetch_add(1, std::memory_order_relaxed);
  dispatch(node, out.msg);
}

void distribution::on_packet(atom node, dist::connection& c, std::span<const std::byte> packet) {
  etf::shared_bytes buf =
      etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(packet.data()), packet.size()});
  auto out = dist::decode_control(buf, 0, buf.size());
  if (!out) {
    log::error("bad control message from {} ({} at byte {}): closing the connection", node.text(),
               out.ec.message(), out.offset);
    c.close(dist::error::bad_message);
    return;
  }
  node_.counters().messages_in.fetch_add(1, std::memory_order_relaxed);
  dispatch(node, out.msg);
}

void distribution::dispatch(atom node, dist::control_message& m) {
  term payload = m.payload ? std::move(*m.payload) : term();
  // A signal for a local process (a message, a monitor, a link, an exit): the process, if idle, handles it on this
  // (the connection reader's) thread now, and its reply to this connection goes out from here too
  // (dist::connection::wake_writer): one thread per signal. (A GenServer.call is three signals: MONITOR_P, the
  // request, DEMONITOR_P; posting the two monitor signals woke the other thread twice per call.) Spawn requests
  // start a process of their own and are not run here.
  std::optional<process::run_here> here;
  if (!std::holds_alternative<dist::spawn_request_msg>(m.body)) {
    here.emplace();
    process::begin_batch();  // ended by the handler's on_batch_end, after the read's last message
  }
  std::visit(
      overloaded{
          [&](dist::send_msg& x) {
            node_.deliver_local(x.to, signal{signal_kind::message, {}, std::move(payload), {}, {}, 0});
          },
          [&](dist::send_sender_msg& x) {
            node_.deliver_local(x.to, signal{signal_kind::message, std::move(x.from), std::move(payload), {}, {}, 0});
          },
          [&](dist::reg_send_msg& x) {
            node_.deliver_to_name(x.to_name,
                                  signal{signal_kind::message, std::move(x.from), std::move(payload), {}, {}, 0});
          },
          [&](dist::alias_send_msg& x) {
            node_.deliver_local(x.alias, signal{signal_kind::message, std::move(x.from), std::move(payload), {}, {}, 0});
          },
          [&](dist::link_msg& x) { node_.deliver_local(x.to, signal{signal_kind::link, x.from, {}, {}, {}, 0}); },
          [&](dist::unlink_msg& x) { node_.deliver_local(x.to, signal{signal_kind::unlink, x.from, {}, {}, {}, 0}); },
          [&](dist::unlink_id_msg& x) {
            node_.deliver_local(x.to, signal{signal_kind::unlink, x.from, {}, {}, {}, x.id});
          },
          [&](dist::unlink_id_ack_msg& x) {
            node_.deliver_local(x.to, signal{signal_kind::unlink_ack, x.from, {}, {}, {}, x.id});
          },
          [&](dist::exit_msg& x) {
            node_.deliver_local(x.to, signal{signal_kind::link_exit, x.from, x.reason, {}, {}, 0});
          },
          [&](dist::payload_exit_msg& x) {
            node_.deliver_local(x.to, signal{signal_kind::link_exit, x.from, payload, {}, {}, 0});
          },
          [&](dist::exit2_msg& x) { node_.deliver_local(x.to, signal{signal_kind::exit, x.from, x.reason, {}, {}, 0}); },
          [&](dist::payload_exit2_msg& x) {
            node_.deliver_local(x.to, signal{signal_kind::exit, x.from, payload, {}, {}, 0});
          },
          [&](dist::monitor_p_msg& x) {
            signal s{signal_kind::monitor, x.from, {}, x.ref, x.to_proc, 0};
            if (x.to_proc.is_atom()) node_.deliver_to_name(x.to_proc.atom_value(), std::move(s));
            else node_.deliver_local(x.to_proc, std::move(s));
          },
          [&](dist::demonitor_p_msg& x) {
            signal s{signal_kind::demonitor, x.from, {}, x.ref, x.to_proc, 0};
            if (x.to_proc.is_atom()) node_.deliver_to_name(x.to_proc.atom_value(), std::move(s));
            else node_.deliver_local(x.to_proc, std::move(s));
          },
          [&](dist::monitor_p_exit_msg& x) {
            node_.deliver_local(x.to_pid, signal{signal_kind::down, x.from_proc, x.reason, x.ref, x.from_proc, 0});
          },
          [&](dist::payload_monitor_p_exit_msg& x) {
            node_.deliver_local(x.to_pid, signal{signal_kind::down, x.from_proc, payload, x.ref, x.from_proc, 0});
          },
          [&](dist::spawn_request_msg& x) {
            if (spawn_handler_) {
              spawn_handler_(node, std::move(x), std::move(payload));
              return;
            }
            dist::control_message reply{dist::spawn_reply_msg{x.req_id, x.from, 0, term(at().notsup)}, {}, {}};
            send_control(node, std::move(reply));
          },
          [&](dist::spawn_reply_msg&) { log::debug("ignoring SPAWN_REPLY from {}", node.text()); },
          [&](dist::group_leader_msg&) {},
          [&](dist::node_link_msg&) {},
      },
      m.body);
}

std::optional<dist::control_message> distribution::to_control(const term& to, signal& s, dist::dflags flags) const {
  using dist::control_message;
  const term from = s.from.is_pid() ? s.from : node_.make_pid(0);
  switch (s.kind) {
    case signal_kind::message:
      if (to.is_reference()) return control_message{dist::alias_send_msg{from, to}, {}, std::move(s.data)};
      if (to.is_atom()) return control_message{dist::reg_send_msg{from, to.atom_value()}, {}, std::move(s.data)};
      if (s.from.is_pid() && (flags & dist::dflag::send_sender))
        return control_message{dist::send_sender_msg{from, to}, {}, std::move(s.data)};
      return control_message{dist::send_msg{to}, {}, std::move(s.data)};
    case signal_kind::link: return control_message{dist::link_msg{from, to}, {}, {}};
    case signal_kind::unlink:
      if (s.id != 0 && (flags & dist::dflag::unlink_id))
        return control_message{dist::unlink_id_msg{s.id, from, to}, {}, {}};
      return control_message{dist::unlink_msg{from, to}, {}, {}};
    case signal_kind::unlink_ack: return control_message{dist::unlink_id_ack_msg{s.id, from, to}, {}, {}};
    case signal_kind::link_exit:
      if (flags & dist::dflag::exit_payload) return control_message{dist::payload_exit_msg{from, to}, {}, s.data};
      return control_message{dist::exit_msg{from, to, s.data}, {}, {}};
    case signal_kind::exit:
      if (flags & dist::dflag::exit_payload) return control_message{dist::payload_exit2_msg{from, to}, {}, s.data};
      return control_message{dist::exit2_msg{from, to, s.data}, {}, {}};
    case signal_kind::monitor: return control_message{dist::monitor_p_msg{from, to, s.ref}, {}, {}};
    case signal_kind::demonitor: return control_message{dist::demonitor_p_msg{from, to, s.ref}, {}, {}};
    case signal_kind::down: {
      term proc = s.extra.is_nil() ? from : s.extra;
      if (flags & dist::dflag::exit_payload)
        return control_message{dist::payload_monitor_p_exit_msg{proc, to, s.ref}, {}, s.data};
      return control_message{dist::monitor_p_exit_msg{proc, to, s.ref, s.data}, {}, {}};
    }
    case signal_kind::node_down:
    case signal_kind::run: return std::nullopt;
  }
  return std::nullopt;
}

void distribution::route_remote(atom node, const term& to, signal s) {
  // One look-up: the connection, and with it the flags to encode for. The thread's last one is taken without the
  // lock while no peer's connection has changed since (conn_epoch_) and it is up: the connection the locked look-up
  // would find.
  struct last_lookup {
    std::uint64_t owner = 0, epoch = 0;
    atom node;
    std::weak_ptr<dist::connection> conn;
  };
  thread_local last_lookup last;
  dist::dflags flags = dist::default_flags(cfg_.hidden);
  std::shared_ptr<dist::connection> conn;
  if (last.owner == id_ && last.node == node && last.epoch == conn_epoch_.load(std::memory_order_acquire))
    conn = last.conn.lock();
  if (conn && conn->is_up()) {
    flags = conn->peer().effective;
  } else {
    conn.reset();
    std::lock_guard lock(mu_);
    auto it = peers_.find(node);
    if (it != peers_.end() && it->second.conn) {
      conn = it->second.conn;
      flags = conn->peer().effective;
      if (conn->is_up()) last = {id_, conn_epoch_.load(std::memory_order_relaxed), node, conn};
    }
  }
  signal copy = (s.kind == signal_kind::link || s.kind == signal_kind::monitor) ? s : signal{};
  const term sender = s.from;
  if (log::enabled(log::level::debug) && !(conn && conn->is_up())) {
    std::string what = s.kind == signal_kind::message ? etf::to_string(s.data) : "";
    if (what.size() > 200) what.resize(200);
    log::debug("to {} while not connected: signal {} from {} to {} {}", node.text(), static_cast<int>(s.kind),
               etf::to_string(s.from), etf::to_string(to), what);
  }
  auto m = to_control(to, s, flags);
  if (!m) return;
  // The header form when the peer (or, not yet connected, our own offer) has FRAGMENTS or the atom cache; the
  // connection converts a packet whose form turns out wrong.
  const bool headered = (flags & (dist::dflag::fragments | dist::dflag::dist_hdr_atom_cache)) != 0;
  const bool atom_refs = (flags & dist::dflag::dist_hdr_atom_cache) != 0;
  dist::connection* small_to = conn && conn->is_up() && !atom_refs ? conn.get() : nullptr;
  auto packet = encode_packet(*m, headered ? dist::packet_form::header : dist::packet_form::pass_through, atom_refs,
                              small_to, order_key(&sender));
  if (packet) send_packet(node, std::move(*packet), &to, &copy, &sender, s.noconnect, std::move(conn));
}

void distribution::send_control(atom node, dist::control_message m) {
  send_packet(node, *encode_packet(m, dist::packet_form::pass_through), nullptr, nullptr, nullptr);
}

void distribution::send_on(dist::connection& conn, dist::out_packet& packet, const term* sender,
                           bool noconnect) {
  // A sender's packets stay in order; those of different senders may pass a message sent in fragments.
  const std::uint64_t key = order_key(sender);
  if (conn.try_send(packet, key)) return;
  // Over the busy limit: the packet waits in the connection's sender queue, and the sending process is
  // suspended (at its next receive) until it is taken, so no sender can grow that queue without bound. A
  // noconnect send does not suspend its sender (global's volatile sends are [nosuspend, noconnect], handing
  // the message to a helper process when the connection is busy).
  std::shared_ptr<process> p = !noconnect && sender && sender->is_pid() ? node_.find(*sender) : nullptr;
  stats_.busy_waits.fetch_add(1, std::memory_order_relaxed);
  if (p) {
    p->busy_send_started();
    conn.async_send(std::move(packet), key, [p](std::error_code) { p->busy_send_finished(); });
  } else {
    conn.async_send(std::move(packet), key, asio::detached);
  }
}

void distribution::send_packet(atom node, dist::out_packet packet, const term* to, signal* s,
                               const term* sender, bool noconnect, std::shared_ptr<dist::connection> known) {
  if (node == node_.name_atom()) return;
  if (known && known->is_up()) {
    // Connected: no further look-up or lock. The connection was published after the packets queued for it had
    // gone in (connection_up), so this one goes after them.
    send_on(*known, packet, sender, noconnect);
    return;
  }
  std::shared_ptr<dist::connection> conn;
  bool connect = false;
  bool unreachable = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (auto b = backoff_.find(node); b != backoff_.end()) {
      auto it = peers_.find(node);
      const bool busy = it != peers_.end() && ((it->second.conn && it->second.conn->is_up()) ||
                                               it->second.connecting || it->second.awaiting_peer());
      if (!busy && !accepting_locked(node)) {
        if (std::chrono::steady_clock::now() < b->second.until) unreachable = true;
      }
    }
  }
  if (unreachable) {
    // As a failed connect answers it: the message is dropped, a link or monitor gets noconnection.
    if (s && to) answer_unreachable(*to, *s);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (noconnect) {
      // erlang:send/3 with noconnect: with no connection and none on its way, the message is dropped (and no
      // entry is made for the node).
      auto it = peers_.find(node);
      if (it == peers_.end()) return;
      const peer& p = it->second;
      if (!(p.conn && p.conn->is_up()) && !p.connecting && !accepting_locked(node) && !p.awaiting_peer()) return;
    }
    peer& e = peers_[node];
    if (e.conn && e.conn->is_up()) {
      conn = e.conn;
    } else {
      e.queue.push_back(std::move(packet));
      if (s && (s->kind == signal_kind::link || s->kind == signal_kind::monitor)) {
        e.queued_signals.push_back(*s);
        e.queued_targets.push_back(*to);
      }
      if (!e.connecting && !accepting_locked(node) && !e.awaiting_peer()) {
        e.connecting = true;
        connect = true;
      }
    }
  }
  if (conn) send_on(*conn, packet, sender, noconnect);
  if (connect) start_connect(node);
}

asio::awaitable<bool> distribution::connect(atom node) {
  if (node == node_.name_atom()) co_return true;
  bool start = false;
  {
    std::lock_guard lock(mu_);
    peer& e = peers_[node];
    if (e.conn && e.conn->is_up()) co_return true;
    if (!e.connecting && !accepting_locked(node) && !e.awaiting_peer()) {
      e.connecting = true;
      start = true;
    }
  }
  if (start) start_connect(node);
  // Wait for the outcome of whichever attempt is running, bounded by twice the setup time: woken by every change of
  // the node's state, and at the end of a "nok" grace (awaiting_peer_until), which is a deadline, not an event.
  const auto ex = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + 2 * cfg_.setup_time + std::chrono::seconds(1);
  for (;;) {
    std::optional<watcher> w;
    auto wake_at = deadline;
    {
      std::lock_guard lock(mu_);
      auto it = peers_.find(node);
      if (it == peers_.end()) co_return false;
      if (it->second.conn && it->second.conn->is_up()) co_return true;
      if (!it->second.connecting && !accepting_locked(node) && !it->second.conn && !it->second.awaiting_peer())
        co_return false;
      if (std::chrono::steady_clock::now() >= deadline) co_return false;
      if (it->second.awaiting_peer()) wake_at = std::min(wake_at, it->second.awaiting_peer_until);
      w = watch_locked(node, ex);
    }
    if (!co_await w->shot.wait(wake_at)) unwatch(node, w->id);
  }
}

distribution::watcher distribution::watch_locked(atom node, const asio::any_io_executor& ex) {
  watcher w{next_watcher_++, oneshot<bool>(ex)};
  watchers_[node].push_back(w);
  return w;
}

void distribution::unwatch(atom node, std::uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = watchers_.find(node);
  if (it == watchers_.end()) return;
  std::erase_if(it->second, [id](const watcher& w) { return w.id == id; });
  if (it->second.empty()) watchers_.erase(it);
}

void distribution::wake_locked(atom node) {
  auto it = watchers_.find(node);
  if (it == watchers_.end()) return;
  for (auto& w : it->second) w.shot.set(true);
  watchers_.erase(it);
}

bool distribution::disconnect(atom node) {
  std::shared_ptr<dist::connection> conn;
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(node);
    if (it == peers_.end() || !it->second.conn) return false;
    conn = it->second.conn;
  }
  conn->close(dist::error::disconnected);
  return true;
}

asio::awaitable<bool> distribution::disconnect_node(atom node) {
  std::shared_ptr<dist::connection> conn;
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(node);
    if (it == peers_.end() || !it->second.conn || !it->second.conn->is_up()) co_return false;
    conn = it->second.conn;
  }
  conn->close(dist::error::disconnected);
  co_await wait_replaced(node, conn);
  co_return true;
}

std::vector<atom> distribution::nodes(bool visible, bool hidden) const {
  std::vector<atom> out;
  std::lock_guard lock(mu_);
  for (const auto& [n, p] : peers_) {
    if (!p.conn || !p.conn->is_up()) continue;
    const bool pub = p.conn->peer().published();
    if ((pub && visible) || (!pub && hidden)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool distribution::is_connected(atom node) const {
  std::lock_guard lock(mu_);
  auto it = peers_.find(node);
  return it != peers_.end() && it->second.conn && it->second.conn->is_up();
}

std::vector<connection_info> distribution::connections() const {
  std::vector<connection_info> out;
  std::lock_guard lock(mu_);
  for (const auto& [n, p] : peers_)
    if (p.conn && p.conn->is_up())
      out.push_back({n, p.conn->peer().published(), p.conn->stats(), p.conn->peer().effective, p.conn->peer().creation});
  return out;
}

bool distribution::healthy() const {
  std::lock_guard lock(mu_);
  if (stopping_ || !acceptor_ || !acceptor_->is_open()) return false;
  return !cfg_.use_epmd || (registration_ && registration_->active());
}

void distribution::monitor_nodes(const term& pid, bool on, bool include_hidden) {
  std::lock_guard lock(mu_);
  if (on) {
    node_monitors_.emplace_back(pid, include_hidden);
  } else {
    for (auto it = node_monitors_.begin(); it != node_monitors_.end(); ++it) {
      if (it->first == pid) {
        node_monitors_.erase(it);
        break;
      }
    }
  }
}

void distribution::monitor_node(const term& pid, atom node, bool on) {
  bool up = false;
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(node);
    up = it != peers_.end() && it->second.conn && it->second.conn->is_up();
    if (on && up) single_node_monitors_.emplace_back(pid, node);
    if (!on) {
      for (auto m = single_node_monitors_.begin(); m != single_node_monitors_.end(); ++m) {
        if (m->first == pid && m->second == node) {
          single_node_monitors_.erase(m);
          break;
        }
      }
    }
  }
  if (on && !up) node_.send({}, pid, term::tuple({term(at().nodedown), term(node)}));
}

dist::accept_answer distribution::accept_pending(std::string_view node, bool, bool) {
  std::lock_guard lock(mu_);
  if (stopping_) return dist::accept_answer::not_allowed;
  if (accepting_.contains(node)) return dist::accept_answer::already_pending;
  // A name we have never seen is no atom yet and has no entry: nothing is made for it here.
  peer* e = nullptr;
  if (auto a = atom::existing(node)) {
    auto it = peers_.find(*a);
    if (it != peers_.end()) e = &it->second;
  }
  dist::connection_state st = dist::connection_state::none;
  if (e && e->conn && e->conn->is_up()) st = dist::connection_state::up;
  else if (e && e->connecting) st = dist::connection_state::pending;
  const auto ans = dist::decide_accept(node_.name(), node, st);
  switch (ans) {
    case dist::accept_answer::ok:
    case dist::accept_answer::alive: accepting_.emplace(node); break;
    case dist::accept_answer::ok_simultaneous:
      accepting_.emplace(node);
      if (e) e->attempt_superseded = true;
      break;
    default: break;
  }
  return ans;
}

bool distribution::is_pending(std::string_view node) {
  // The peer said "alive" to our attempt: it is wanted only if nothing has replaced it meanwhile — in particular not
  // if the peer's own connection was accepted and is up (answering true would make the peer tear that one down).
  std::lock_guard lock(mu_);
  auto a = atom::existing(node);
  if (!a) return false;
  auto it = peers_.find(*a);
  if (it == peers_.end()) return false;
  const peer& e = it->second;
  return e.connecting && !e.attempt_superseded && !(e.conn && e.conn->is_up());
}

asio::awaitable<void> distribution::wait_pending(std::string_view node) {
  const auto existing = atom::existing(node);  // "alive": the node has a connection, so its atom exists
  if (!existing) co_return;
  const atom n = *existing;
  std::shared_ptr<dist::connection> old;
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(n);
    if (it != peers_.end()) old = it->second.conn;
  }
  if (!old) co_return;
  old->close(dist::error::disconnected);
  co_await wait_replaced(n, old);
}

asio::awaitable<void> distribution::wait_replaced(atom node, const std::shared_ptr<dist::connection>& old) {
  // on_down resets the node's connection and wakes us; 4 s at most.
  const auto ex = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  for (;;) {
    std::optional<watcher> w;
    {
      std::lock_guard lock(mu_);
      auto it = peers_.find(node);
      if (it == peers_.end() || it->second.conn != old) co_return;
      if (std::chrono::steady_clock::now() >= deadline) co_return;
      w = watch_locked(node, ex);
    }
    if (!co_await w->shot.wait(deadline)) unwatch(node, w->id);
  }
}

}  // namespace cnode
