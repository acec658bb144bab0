// The ops service: an HTTP/1.1 server on --http-port (Boost.Beast, one coroutine a connection) answering
// GET /status, /metrics and /health from the node's own figures and every service's metrics(sink) and status().
#include <atomic>
#include <map>
#include <mutex>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "cnode/distribution.hpp"
#include "cnode/log.hpp"
#include "cnode/metrics.hpp"
#include "epmd/client.hpp"
#include "ops/ops.hpp"

namespace cnode::ops {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class ops_service final : public cnode::service {
 public:
  std::string_view name() const override { return "ops"; }

  void add_options(option_list& o) override {
    o.add("--http-port", "PORT", "serve GET /status, /metrics and /health on this port (default: off; 0: any)",
          [this](const std::string& v) -> std::string {
            auto p = v == "0" ? std::optional<std::uint16_t>(0) : epmd::parse_port(v);
            if (!p) return "a port number, 0 to 65535";
            port_ = *p;
            return {};
          });
    o.add("--http-address", "ADDR", "address the HTTP server listens on (default: 127.0.0.1)",
          [this](const std::string& v) -> std::string {
            boost::system::error_code ec;
            asio::ip::make_address(v, ec);
            if (ec) return "an IP address, not '" + v + "'";
            address_ = v;
            return {};
          });
  }

  asio::awaitable<void> start(service_context& ctx) override {
    n_ = &ctx.n;
    d_ = &ctx.d;
    services_ = &ctx.services;
    if (!port_) co_return;
    // The acceptor lives on a strand: accepting and the stop's close never touch it from two threads.
    strand_.emplace(asio::make_strand(ctx.n.get_executor()));
    acceptor_.emplace(*strand_);
    tcp::endpoint ep(asio::ip::make_address(address_), *port_);
    boost::system::error_code ec;
    acceptor_->open(ep.protocol(), ec);
    if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_->bind(ep, ec);
    if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot listen for HTTP on {}:{}: {}", address_, *port_, ec.message()));
    bound_port_ = acceptor_->local_endpoint().port();
    log::info("http: serving /status, /metrics and /health on {}:{}", address_, bound_port_);
    asio::co_spawn(*strand_, accept_loop(), asio::detached);
  }

  asio::awaitable<void> stop(clock::time_point) override {
    stopping_ = true;
    if (acceptor_) {
      asio::post(*strand_, [this] {
        boost::system::error_code ec;
        acceptor_->close(ec);
      });
    }
    co_return;
  }

  void metrics(metrics_sink& m) const override {
    std::lock_guard lk(mu_);
    for (const auto& [key, count] : requests_)
      m.counter("cnode_http_requests_total", "HTTP requests answered, by path and status code.",
                static_cast<double>(count), {{"path", key.first}, {"code", std::to_string(key.second)}});
  }

  term status() const override {
    if (!port_) return term::map({{term(atom("http")), term(atom("off"))}});
    return term::map({{term(atom("http_address")), term::binary(std::string_view(address_))},
                      {term(atom("http_port")), term(static_cast<std::uint64_t>(bound_port_))}});
  }

 private:
  asio::awaitable<void> accept_loop() {
    auto backoff = std::chrono::milliseconds(10);
    for (;;) {
      auto [ec, socket] = co_await acceptor_->async_accept(n_->get_executor(), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (stopping_ || !acceptor_->is_open()) co_return;
        if (auto suffix = accept_log_.admit(ec.message())) log::warning("http: accept failed: {}{}", ec.message(), *suffix);
        // EMFILE and the like: wait, longer each time up to a second, instead of spinning.
        asio::steady_timer pause(co_await asio::this_coro::executor, backoff);
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        continue;
      }
      backoff = std::chrono::milliseconds(10);
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    try {
      co_await serve(std::move(socket));
    } catch (const std::exception& e) {
      // A bug in a status or metrics writer ends this connection, not the node.
      log::warning("http: dropped a connection: {}", e.what());
    }
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      stream.expires_after(std::chrono::seconds(10));
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(4096);  // nothing here takes a body; a small one is read (and refused with 405)
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;  // closed, timed out, or not HTTP: nothing to answer
      auto req = parser.release();
      auto res = co_await answer(req);
      res.keep_alive(req.keep_alive());
      if (req.method() != http::verb::head) res.prepare_payload();  // HEAD keeps GET's Content-Length
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (wec || !res.keep_alive()) {
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
    }
  }

  asio::awaitable<http::response<http::string_body>> answer(const http::request<http::string_body>& req) {
    std::string path(req.target());
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "cnode");
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.body() = "only GET\n";
    } else if (path == "/metrics") {
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = metrics_text();
    } else if (path == "/status") {
      res.set(http::field::content_type, "application/json");
      res.body() = status_json() + "\n";
    } else if (path == "/health") {
      auto why = co_await unhealthy();
      res.set(http::field::content_type, "application/json");
      if (why.empty()) {
        res.body() = "{\"status\":\"ok\"}\n";
      } else {
        res.result(http::status::service_unavailable);
        res.body() = "{\"status\":\"unavailable\",\"reason\":" + log::json_string(why) + "}\n";
      }
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain");
      res.body() = "not found: try /status, /metrics or /health\n";
    }
    count(path, res.result_int());
    if (req.method() == http::verb::head) {
      auto size = res.body().size();
      res.body().clear();
      res.content_length(size);
    }
    co_return res;
  }

  void count(const std::string& path, unsigned code) {
    const std::string known = path == "/metrics" || path == "/status" || path == "/health" ? path : "other";
    std::lock_guard lk(mu_);
    ++requests_[{known, code}];
  }

  std::string metrics_text() const {
    text_sink sink;
    runtime_metrics(*n_, *d_, sink);
    for (service* s : services_->all()) s->metrics(sink);
    return sink.text();
  }

  std::string status_json() const {
    term rt = runtime_status(*n_, *d_);
    std::vector<std::pair<term, term>> kv;
    for (std::size_t i = 0; i < rt.map_size(); ++i) kv.emplace_back(rt.map_keys()[i], rt.map_values()[i]);
    std::vector<std::pair<term, term>> svcs;
    for (service* s : services_->all())
      svcs.emplace_back(term::binary(std::string_view(s->name())), s->status());
    kv.emplace_back(term(atom("services")), term::map(std::move(svcs)));
    return to_json(term::map(std::move(kv)));
  }

  // "" when healthy: the distribution listens and EPMD (when used) gives our port for our name.
  asio::awaitable<std::string> unhealthy() const {
    if (stopping_) co_return "stopping";
    if (!d_->healthy()) co_return "the distribution is not listening or its EPMD registration is gone";
    const auto& cfg = d_->config();
    if (!cfg.use_epmd) co_return std::string();
    const std::string& full = n_->name();
    const std::string alive = full.substr(0, full.find('@'));
    epmd::client_options opts;
    opts.timeout = std::chrono::milliseconds(1000);
    const epmd::epmd_endpoint where(cfg.epmd_host, cfg.epmd_port);
    auto r = co_await epmd::try_port_please(where, alive, opts);
    if (!r) co_return "EPMD does not answer for " + alive;
    if (r.value().port != d_->port()) co_return fmt::format("EPMD gives port {} for {}, not ours", r.value().port, alive);
    co_return std::string();
  }

  std::optional<std::uint16_t> port_;
  std::uint16_t bound_port_ = 0;
  std::string address_ = "127.0.0.1";
  node* n_ = nullptr;
  distribution* d_ = nullptr;
  service_directory* services_ = nullptr;
  std::optional<asio::strand<asio::any_io_executor>> strand_;
  std::optional<tcp::acceptor> acceptor_;
  log::limiter accept_log_{1};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::map<std::pair<std::string, unsigned>, std::uint64_t> requests_;
};

}  // namespace

std::unique_ptr<cnode::service> make_service() { return std::make_unique<ops_service>(); }

}  // namespace cnode::ops
