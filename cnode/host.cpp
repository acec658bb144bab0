#include "cnode/host.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <ctime>
#include <stdexcept>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "cnode/builtins.hpp"
#include "cnode/log.hpp"
#include "cnode/oneshot.hpp"
#include "dist/cookie.hpp"
#include "epmd/client.hpp"
#include "epmd/server.hpp"

namespace cnode {

namespace {

std::string short_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  std::string h(buf);
  return h.substr(0, h.find('.'));
}

bool valid_name_head(const std::string& head) {  // net_kernel.erl:1929: ^[0-9A-Za-z_\-]+$
  return !head.empty() && std::all_of(head.begin(), head.end(), [](unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '-';
  });
}

bool valid_host(const std::string& host) {  // net_kernel.erl:1920 validate_hostname: ^[!-ÿ]*$
  return std::all_of(host.begin(), host.end(), [](unsigned char c) { return c >= '!'; });
}

asio::awaitable<void> keep_connected(distribution& d, atom peer) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  auto backoff = std::chrono::milliseconds(250);
  for (;;) {
    auto up = d.nodes(true, true);
    if (std::find(up.begin(), up.end(), peer) == up.end()) {
      if (co_await d.connect(peer)) {
        backoff = std::chrono::milliseconds(250);
      } else {
        log::info("connect to {} failed; retrying in {} ms", peer.text(), backoff.count());
        t.expires_after(backoff);
        co_await t.async_wait(asio::use_awaitable);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(30'000));
        continue;
      }
    }
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(asio::use_awaitable);
  }
}

// Freed memory goes back to the system: glibc keeps what a burst (a huge term, a flooded mailbox) freed in its
// arenas unless asked. Every 5 s, once, cheap when there is nothing to give back. malloc_trim releases the free pages
// inside every arena and the top of the main one, not the top of a thread's arena: that one is shortened on free()
// once it exceeds M_TRIM_THRESHOLD, which glibc raises (up to 64 MB) each time it frees a large mmapped block, so
// after one 32 MB buffer a thread's arena kept up to 64 MB of free top for good (measured: 34 MB stayed after a
// 10 000 000-deep echo, in one run of two). Fixed thresholds keep that bound small: buffers of 4 MiB and more are
// mmapped (and unmapped when freed), and an arena's free top is given back past 2 MiB. The price: a large buffer's
// pages are faulted in afresh each time (a 10 MiB echo measured 64 ms a call with them, 50-64 ms without).
void fix_malloc_thresholds() {
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 2 << 20);
}

asio::awaitable<void> trim_memory() {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (;;) {
    t.expires_after(std::chrono::seconds(5));
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    malloc_trim(0);
  }
}

}  // namespace

node_name_check check_node_name(const std::string& name, bool long_name) {
  auto at = name.find('@');
  std::string head = name.substr(0, at);
  std::string host = at == std::string::npos ? std::string() : name.substr(at + 1);
  if (!valid_name_head(head)) return {{}, "Invalid node name! (" + name + "): a name is letters, digits, _ and -"};
  if (at == std::string::npos) {
    if (long_name) return {{}, "Can't set long node name! (" + name + "): --name wants NAME@HOST"};
    host = short_host();
  } else if (host.empty()) {
    return {{}, "Invalid node name! (" + name + "): no host after @"};
  }
  if (!valid_host(host)) return {{}, "Invalid node name! (" + name + "): the host has a space or a control character"};
  if (!long_name && host.find('.') != std::string::npos)
    return {{}, "Can't set short node name! (" + name + "): a short name's host has no dots (use --name)"};
  return {head + "@" + host, {}};
}

host::host(host_config cfg, std::vector<std::unique_ptr<service>> services)
    : cfg_(std::move(cfg)),
      io_(std::make_unique<asio::io_context>()),
      services_(std::move(services)),
      started_all_(io_->get_executor()) {
  auto checked = check_node_name(cfg_.name, cfg_.long_name);
  if (!checked.error.empty()) throw std::invalid_argument(checked.error);
  option_list options;
  for (auto& s : services_) {
    options.owner = std::string(s->name());
    s->add_options(options);
  }
  options.apply(cfg_.service_args);
  if (cfg_.data_dir) {
    std::error_code ec;
    std::filesystem::create_directories(*cfg_.data_dir, ec);
    if (ec || !std::filesystem::is_directory(*cfg_.data_dir))
      throw std::runtime_error("--data-dir " + cfg_.data_dir->string() + ": cannot create it: " +
                               (ec ? ec.message() : std::string("not a directory")));
  }
  const bool has_global = std::any_of(services_.begin(), services_.end(), [](auto& s) { return s->name() == "global"; });
  if (!cfg_.dist.hidden && !has_global) {
    // A visible node without :global would stall global:sync() on every node it meets: such a node is hidden.
    log::warning("no :global service in this node: it connects as a hidden node");
    cfg_.dist.hidden = true;
  }
  auto cookie = cfg_.cookie || !cfg_.cookie_file ? dist::load_cookie(cfg_.cookie)
                                                 : dist::read_cookie_file(*cfg_.cookie_file);
  if (cookie.ec) throw std::runtime_error(cookie.message.empty() ? cookie.ec.message() : cookie.message);
  if (cookie.created) log::info("created cookie file {}", cookie.path.string());
  cfg_.dist.cookies.cookie = cookie.cookie;
  cookie_path_ = cookie.path.string();
  node_ = std::make_unique<node>(io_->get_executor(), checked.full,
                                 cfg_.dist.use_epmd ? 0 : static_cast<std::uint32_t>(std::time(nullptr)) | 1u);
  node_->set_mailbox_limit(cfg_.mailbox);
  dist_ = std::make_unique<distribution>(*node_, cfg_.dist);
}

// Members go in reverse order: the I/O objects (EPMD server, distribution, services' sockets) while the io_context
// still exists, the io_context (and the coroutine frames still suspended in it) last.
host::~host() = default;

int host::run(std::function<void(host&)> on_ready) {
  // A closed log pipe must not kill the node: writes to it fail instead (log/log.cpp ignores them).
  std::signal(SIGPIPE, SIG_IGN);
  fix_malloc_thresholds();
  // As many descriptors as the hard limit allows (cnode-epmd does the same): a node with many peers and
  // handshakes under way must not run out at the soft default of 1024.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (cfg_.embedded_epmd && cfg_.dist.use_epmd) {
    epmd::server_options so;
    so.port = cfg_.dist.epmd_port;
    std::unique_ptr<epmd::server> server;
    try {
      server = epmd::start_epmd_unless_running(*io_, so, std::chrono::milliseconds(500));
    } catch (const std::exception& e) {
      log::error("cannot start the embedded EPMD: {}", e.what());
      return 1;
    }
    if (server) {
      log::info("started the embedded EPMD on port {}", cfg_.dist.epmd_port);
      embedded_epmd_ = std::shared_ptr<epmd::server>(std::move(server));
    }
  }

  std::optional<asio::signal_set> signals;
  if (cfg_.handle_signals) {
    signals.emplace(*io_, SIGINT, SIGTERM);
    signals->async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log::info("signal {}: stopping", sig);
      stop();
    });
  }
  asio::co_spawn(*io_, start_all(std::move(on_ready)), asio::detached);

  const unsigned threads = cfg_.threads ? cfg_.threads : default_threads();
  auto run_loop = [this] {
    for (;;) {
      try {
        if (cfg_.busy_wait.count() == 0) {
          io_->run();
          return;
        }
        // The BEAM's scheduler busy wait: out of work, poll (handlers ready, and the reactor without blocking)
        // until busy_wait has passed without any, then block for the next one. A reply that comes within the
        // window is handled without a sleep and a wake-up.
        while (io_->run_one() != 0) {
          auto until = std::chrono::steady_clock::now() + cfg_.busy_wait;
          while (!io_->stopped()) {
            if (io_->poll() != 0) {
              until = std::chrono::steady_clock::now() + cfg_.busy_wait;
            } else if (std::chrono::steady_clock::now() >= until) {
              break;
            }
          }
          if (io_->stopped()) break;
        }
        return;
      } catch (const std::exception& e) {
        // A bug escaped a handler: say so and end the node with an error status.
        log::error("stopping on an unexpected error: {}", e.what());
        exit_code_ = 1;
        io_->stop();
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(run_loop);
  run_loop();
  for (auto& t : pool) t.join();
  if (exit_code_ != 0) log::error("exiting with status {}", exit_code_);
  return exit_code_;
}

asio::awaitable<void> host::start_all(std::function<void(host&)> on_ready) {
  // Whatever happens here, a stop waits for it to end first: the two never walk the services at once.
  struct done {
    oneshot<bool>& o;
    ~done() { o.set(true); }
  } signal_done{started_all_};
  try {
    co_await dist_->start();
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    exit_code_ = 1;
    io_->stop();
    co_return;
  }
  start_builtins(*node_, *dist_, functions_);
  service_context ctx{*node_, *dist_, functions_, node_->probe_calls(), node_->resolver(), node_->services(),
                      cfg_.dist.hidden, cfg_.data_dir};
  for (auto& s : services_) {
    if (stopping_) co_return;
    try {
      node_->services().add(*s);
      co_await s->start(ctx);
      started_.push_back(s.get());
    } catch (const std::exception& e) {
      log::error("{}: cannot start: {}", s->name(), e.what());
      exit_code_ = 1;
      stop();
      co_return;
    }
  }
  if (stopping_) co_return;
  log::info("ready {} (distribution port {}, {})", node_->name(), dist_->port(),
            cfg_.dist.hidden ? "hidden" : "visible");
  for (const auto& peer : cfg_.connect) asio::co_spawn(*io_, keep_connected(*dist_, atom(peer)), asio::detached);
  asio::co_spawn(*io_, trim_memory(), asio::detached);
  if (on_ready) on_ready(*this);
}

unsigned default_threads() {
  // One on two cores or fewer: there a second thread mostly wakes the first (bench/runtime: the lone call, 64
  // callers, one-way and streams as fast or faster with one, and less CPU per operation on every row); the
  // number of cores above that, as the BEAM's schedulers.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  return cores <= 2 ? 1 : cores;
}

void host::stop() {
  if (stopping_.exchange(true)) return;
  asio::co_spawn(*io_, stop_all(), asio::detached);
}

asio::awaitable<void> host::stop_all() {
  co_await started_all_.wait(service::clock::time_point::max());
  // Services in reverse start order, each within its deadline: a stop that hangs is left behind, not waited for.
  for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
    service* s = *it;
    const auto t0 = service::clock::now();
    const auto deadline = t0 + cfg_.stop_timeout;
    oneshot<bool> done(co_await asio::this_coro::executor);
    asio::co_spawn(
        *io_,
        [s, deadline, done]() -> asio::awaitable<void> {
          try {
            co_await s->stop(deadline);
          } catch (const std::exception& e) {
            log::warning("{}: stop failed: {}", s->name(), e.what());
          }
          done.set(true);
        },
        asio::detached);
    if (co_await done.wait(deadline)) {
      log::info("{}: stopped in {} ms", s->name(),
                std::chrono::duration_cast<std::chrono::milliseconds>(service::clock::now() - t0).count());
    } else {
      log::warning("{}: did not stop within {} ms; going on", s->name(), cfg_.stop_timeout.count());
    }
  }
  log::info("closing connections and leaving EPMD");
  dist_->stop();
  if (embedded_epmd_) std::static_pointer_cast<epmd::server>(embedded_epmd_)->stop();
  // Let the connections' writers see the close before the loop ends.
  asio::steady_timer grace(co_await asio::this_coro::executor, std::chrono::milliseconds(200));
  co_await grace.async_wait(asio::use_awaitable);
  io_->stop();
}

}  // namespace cnode
