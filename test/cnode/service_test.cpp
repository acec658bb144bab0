// The service lifecycle of the host: start in order, stop in reverse, a stop that misses its deadline is left
// behind, option parsing, the hidden fallback without :global, and erl's node-name rules.
#include <doctest.h>

#include <mutex>
#include <stdexcept>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "cnode/host.hpp"
#include "log/log.hpp"

using namespace cnode;
using namespace std::chrono_literals;

namespace {

struct journal {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard lk(mu);
    events.push_back(std::move(e));
  }
};

class recorder final : public service {
 public:
  recorder(std::string name, journal& j, std::chrono::milliseconds stop_takes = 0ms)
      : name_(std::move(name)), j_(j), stop_takes_(stop_takes) {}
  std::string_view name() const override { return name_; }
  void add_options(option_list& o) override {
    o.add("--" + name_ + "-size", "N", "a number", [this](const std::string& v) -> std::string {
      if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return "a number, not '" + v + "'";
      size = std::stoi(v);
      return {};
    });
  }
  asio::awaitable<void> start(service_context& ctx) override {
    j_.add("start " + name_);
    // What the context gives: a registered process, a probe call, a resolver entry.
    if (!ctx.spawn_registered(atom(name_ + "_proc"), [](process& self) -> asio::awaitable<void> {
          for (;;) co_await self.receive();
        }))
      throw std::runtime_error("name taken");
    co_return;
  }
  asio::awaitable<void> stop(clock::time_point deadline) override {
    j_.add("stop " + name_);
    if (stop_takes_ > 0ms) {
      asio::steady_timer t(co_await asio::this_coro::executor, stop_takes_);
      co_await t.async_wait(asio::use_awaitable);
      j_.add("late " + name_);
    }
    (void)deadline;
  }
  void metrics(metrics_sink& m) const override { m.gauge("test_size", "size", size); }
  int size = 0;

 private:
  std::string name_;
  journal& j_;
  std::chrono::milliseconds stop_takes_;
};

host_config test_config() {
  host_config cfg;
  cfg.name = "svc@localhost";
  cfg.cookie = "test-cookie";
  cfg.dist.use_epmd = false;
  cfg.dist.listen_address = "127.0.0.1";
  cfg.dist.listen_port = 0;
  cfg.handle_signals = false;
  cfg.threads = 2;
  return cfg;
}

}  // namespace

TEST_CASE("services start in order and stop in reverse; a stop past its deadline is not waited for") {
  journal j;
  std::vector<std::unique_ptr<service>> v;
  v.push_back(std::make_unique<recorder>("global", j));
  v.push_back(std::make_unique<recorder>("slow", j, 10s));
  v.push_back(std::make_unique<recorder>("last", j));
  host_config cfg = test_config();
  cfg.stop_timeout = 300ms;
  cfg.service_args = {"--slow-size", "42"};
  host h(cfg, std::move(v));
  bool found_all = false;
  const auto t0 = std::chrono::steady_clock::now();
  int code = h.run([&](host& hh) {
    found_all = hh.services().find("global") && hh.services().find("slow") && hh.services().find("last") &&
                hh.n().whereis(atom("slow_proc")).has_value();
    CHECK(hh.services().find_as<recorder>("slow")->size == 42);
    hh.stop();
  });
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(code == 0);
  CHECK(found_all);
  std::vector<std::string> want{"start global", "start slow", "start last", "stop last", "stop slow", "stop global"};
  std::lock_guard lk(j.mu);
  CHECK(j.events == want);  // "late slow" never came: the host went on at the deadline
  CHECK(took < 5s);
}

TEST_CASE("a service that cannot start ends the node with status 1 and stops those already started") {
  journal j;
  std::vector<std::unique_ptr<service>> v;
  v.push_back(std::make_unique<recorder>("global", j));
  v.push_back(std::make_unique<recorder>("twin", j));
  v.push_back(std::make_unique<recorder>("twin", j));  // its process name is taken: start throws
  host h(test_config(), std::move(v));
  bool ready = false;
  int code = h.run([&](host&) { ready = true; });
  CHECK(code == 1);
  CHECK_FALSE(ready);
  std::lock_guard lk(j.mu);
  CHECK(j.events == std::vector<std::string>{"start global", "start twin", "start twin", "stop twin", "stop global"});
}

TEST_CASE("bad service options are usage errors") {
  journal j;
  auto make = [&] {
    std::vector<std::unique_ptr<service>> v;
    v.push_back(std::make_unique<recorder>("global", j));
    return v;
  };
  host_config cfg = test_config();
  cfg.service_args = {"--global-size", "x"};
  CHECK_THROWS_AS(host(cfg, make()), std::invalid_argument);
  cfg.service_args = {"--nope"};
  CHECK_THROWS_AS(host(cfg, make()), std::invalid_argument);
  cfg.service_args = {"--global-size"};
  CHECK_THROWS_AS(host(cfg, make()), std::invalid_argument);
}

TEST_CASE("a node without :global connects hidden") {
  journal j;
  std::vector<std::unique_ptr<service>> v;
  v.push_back(std::make_unique<recorder>("other", j));
  host h(test_config(), std::move(v));
  CHECK(h.dist().config().hidden);
}

TEST_CASE("node names follow erl's rules") {
  CHECK(check_node_name("a@host", false).full == "a@host");
  CHECK(check_node_name("a-b_9@h", false).error.empty());
  CHECK(check_node_name("bad name", false).error.find("Invalid node name") == 0);
  CHECK(check_node_name("a@b.c", false).error.find("Can't set short node name") == 0);
  CHECK(check_node_name("a@b.c", true).full == "a@b.c");
  CHECK(check_node_name("a", true).error.find("Can't set long node name") == 0);
  CHECK(check_node_name("a@", false).error.find("Invalid node name") == 0);
  CHECK(check_node_name("a@h st", true).error.find("Invalid node name") == 0);
  CHECK(check_node_name("", false).error.find("Invalid node name") == 0);
  CHECK(check_node_name("é@h", false).error.find("Invalid node name") == 0);
  auto plain = check_node_name("solo", false);
  CHECK(plain.error.empty());
  CHECK(plain.full.rfind("solo@", 0) == 0);
}

TEST_CASE("log::json_string keeps JSON valid for any bytes") {
  CHECK(log::json_string("a\"b\\c\n") == "\"a\\\"b\\\\c\\n\"");
  CHECK(log::json_string("h\xc3\xa9") == "\"h\xc3\xa9\"");           // UTF-8 passes through
  CHECK(log::json_string("\xff\xc3") == "\"\\u00ff\\u00c3\"");        // stray bytes become code points
  CHECK(log::json_string("\xed\xa0\x80") == "\"\\u00ed\\u00a0\\u0080\"");  // a surrogate is not UTF-8
  CHECK(log::json_string(std::string_view("\0x", 2)) == "\"\\u0000x\"");
}
