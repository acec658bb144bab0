// A complete small service, as a team would add its own: `counter`, a registered C++ gen_server that Elixir calls
// like any GenServer, with a command-line option and its own metrics on /metrics.
//
//   cnode-example-counter --sname counter [--counter-start N] [--http-port 8080] [any cnode option the host takes]
//
//   iex> GenServer.call({:counter, :"counter@host"}, {:add, 5})   # {:ok, 5}
//   iex> GenServer.call({:counter, :"counter@host"}, :get)        # {:ok, 5}
//   iex> GenServer.cast({:counter, :"counter@host"}, :reset)      # :ok (the counter is 0 again)
//   $ curl -s localhost:8080/metrics | grep counter               # cnode_example_counter_value 0 ...
#include <atomic>
#include <iostream>
#include <string>

#include "cnode/gen_server.hpp"
#include "cnode/host.hpp"

namespace {

using namespace cnode;

// The process: requests in, replies out; its state is shared with the service through an atomic.
class counter_server final : public gen_server {
 public:
  counter_server(std::atomic<std::int64_t>& value, std::atomic<std::uint64_t>& calls) : value_(value), calls_(calls) {}

  asio::awaitable<std::optional<term>> handle_call(process&, const term& request, const term&) override {
    calls_.fetch_add(1, std::memory_order_relaxed);
    const term ok(atom("ok"));
    if (request.is_tuple(2) && request.element(0).is_atom(atom("add")) && request.element(1).is_small())
      co_return term::tuple({ok, term(value_ += request.element(1).small())});
    if (request.is_atom(atom("get"))) co_return term::tuple({ok, term(value_.load())});
    co_return term::tuple({term(atom("error")), term(atom("badarg"))});  // never a crash, never a silent drop
  }

  asio::awaitable<void> handle_cast(process&, const term& request) override {
    if (request.is_atom(atom("reset"))) value_ = 0;
    co_return;
  }

 private:
  std::atomic<std::int64_t>& value_;
  std::atomic<std::uint64_t>& calls_;
};

// The service: its option, its start (one registered process), its metrics and status.
class counter_service final : public service {
 public:
  std::string_view name() const override { return "counter"; }

  void add_options(option_list& o) override {
    o.add("--counter-start", "N", "the counter's first value (default: 0)", [this](const std::string& v) -> std::string {
      try {
        std::size_t used = 0;
        value_ = std::stoll(v, &used);
        return used == v.size() ? std::string() : "an integer, not '" + v + "'";
      } catch (const std::exception&) {
        return "an integer, not '" + v + "'";
      }
    });
  }

  asio::awaitable<void> start(service_context& ctx) override {
    start_gen_server(ctx.n, std::make_shared<counter_server>(value_, calls_), atom("counter"));
    co_return;
  }

  void metrics(metrics_sink& m) const override {
    m.gauge("cnode_example_counter_value", "The counter's value.", static_cast<double>(value_.load()));
    m.counter("cnode_example_counter_calls_total", "Calls the counter answered.", static_cast<double>(calls_.load()));
  }

  term status() const override { return term::map({{term(atom("value")), term(value_.load())}}); }

 private:
  std::atomic<std::int64_t> value_{0};
  std::atomic<std::uint64_t> calls_{0};
};

}  // namespace

int main(int argc, char** argv) {
  // The built-in services (:global, pg, ops) plus ours, started last and stopped first.
  auto services = built_services();
  services.push_back(std::make_unique<counter_service>());
  host_config cfg;
  cfg.name = "counter";
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--sname" || args[i] == "--cookie" || args[i] == "--epmd-port") && i + 1 < args.size()) {
      if (args[i] == "--sname") cfg.name = args[++i];
      else if (args[i] == "--cookie") cfg.cookie = args[++i];
      else cfg.dist.epmd_port = static_cast<std::uint16_t>(std::stoi(args[++i]));
    } else if (args[i] == "--embedded-epmd") {
      cfg.embedded_epmd = true;
    } else {
      cfg.service_args.push_back(args[i]);  // the services' options: --counter-start, --http-port, --pg-scope, ...
    }
  }
  try {
    host h(cfg, std::move(services));
    return h.run();
  } catch (const std::exception& e) {
    std::cerr << "cnode-example-counter: " << e.what() << "\n";
    return 2;
  }
}
