// How a layer above the runtime (pg, :global, Raft, CRDT, ops) joins a node: a `service` has a name, command-line
// options, start(context), an awaitable stop() with a deadline, metrics(sink) and status(). The host
// (cnode/host.hpp) starts the built services in order and stops them in reverse; nothing in cnode/ knows any
// service by name. A service's state lives in its service object.
//
//   class my_service final : public cnode::service {
//     std::string_view name() const override { return "kv"; }
//     void add_options(option_list& o) override { o.add("--kv-size", "N", "entries kept", [&](auto& v) {...}); }
//     asio::awaitable<void> start(service_context& ctx) override { ctx.spawn_registered(atom("kv"), body); co_return; }
//     void metrics(metrics_sink& m) const override { m.gauge("cnode_kv_entries", "Entries held.", size_); }
//   };
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "cnode/node.hpp"

namespace cnode {

class distribution;
class function_table;

// ---- command-line options ----------------------------------------------------------------------------------------

class option_list {
 public:
  // set: takes the value ("" for a flag without a value) and returns an error sentence, or "" when it is taken.
  using setter = std::function<std::string(const std::string& value)>;
  struct option {
    std::string flag;     // "--pg-scope"
    std::string metavar;  // "NAME"; empty: a flag that takes no value
    std::string help;     // one line, may end with "(default: ...)"
    std::string owner;    // the service that added it
    setter set;
  };
  void add(std::string flag, std::string metavar, std::string help, setter set);
  const option* find(std::string_view flag) const;
  const std::vector<option>& all() const noexcept { return options_; }
  // "  --flag METAVAR   help" lines, aligned, grouped by owner.
  std::string usage() const;
  // Applies args ("--flag", "value", "--other", ...); throws std::invalid_argument with a sentence on an unknown
  // flag, a missing value or a value its setter refuses.
  void apply(const std::vector<std::string>& args);
  std::string owner;  // set by the host while a service adds its options

 private:
  std::vector<option> options_;
};

// ---- metrics -----------------------------------------------------------------------------------------------------

// Where metrics go: the exporter (ops) writes them in Prometheus' text format. Names follow Prometheus' rules
// (cnode_<layer>_<what>[_total|_seconds|_bytes]); samples of one name may come in several calls, each with its labels.
class metrics_sink {
 public:
  using labels = std::vector<std::pair<std::string, std::string>>;
  virtual ~metrics_sink() = default;
  virtual void counter(std::string_view name, std::string_view help, double value, const labels& l = {}) = 0;
  virtual void gauge(std::string_view name, std::string_view help, double value, const labels& l = {}) = 0;
  // buckets: (upper bound, cumulative count) in increasing order, without +Inf (count is that).
  virtual void histogram(std::string_view name, std::string_view help,
                         const std::vector<std::pair<double, std::uint64_t>>& buckets, double sum, std::uint64_t count,
                         const labels& l = {}) = 0;
};

// ---- the service --------------------------------------------------------------------------------------------------

class service;

// The services running on a node, by name (for a layer's free functions, e.g. pg::get_members(node, ...), and for
// the exporter, which enumerates them).
class service_directory {
 public:
  void add(service& s);
  void remove(std::string_view name);
  service* find(std::string_view name) const;
  template <typename T>
  T* find_as(std::string_view name) const {
    return dynamic_cast<T*>(find(name));
  }
  std::vector<service*> all() const;  // in start order

 private:
  mutable std::shared_mutex mu_;
  std::vector<service*> services_;
};

struct service_context {
  node& n;
  distribution& d;
  function_table& functions;
  probe_registry& probes;    // = n.probe_calls()
  name_resolver& resolver;   // = n.resolver()
  service_directory& services;
  bool hidden = false;
  // The node's --data-dir (it exists): a service keeps its files in its own subdirectory, DIR/<service name>/.
  // None: the node keeps nothing on disk.
  std::optional<std::filesystem::path> data_dir;

  // Spawns body registered as `name` (the name is taken before the body runs); nullopt when the name is taken.
  std::optional<term> spawn_registered(atom name, process::body_type body, spawn_options opts = {}) const {
    return n.spawn_registered(name, std::move(body), std::move(opts));
  }
};

class service {
 public:
  using clock = std::chrono::steady_clock;
  virtual ~service() = default;
  virtual std::string_view name() const = 0;
  // Options this service takes; called before the command line is read.
  virtual void add_options(option_list&) {}
  // Runs once the distribution listens; spawn processes, register functions, probe calls and resolvers here.
  // Throw std::runtime_error with a sentence to refuse to start (the node then exits 1).
  virtual asio::awaitable<void> start(service_context& ctx) = 0;
  // Leaves the cluster cleanly (pg leaves its groups, :global releases this node's names, ...) before the
  // connections close. The host waits until the deadline at most, then goes on.
  virtual asio::awaitable<void> stop(clock::time_point deadline) {
    (void)deadline;
    co_return;
  }
  virtual void metrics(metrics_sink&) const {}
  // For GET /status: a map (atoms, numbers, binaries, lists, maps), written as JSON.
  virtual term status() const { return term::map({}); }
};

// Runs fn in a fresh process on n and returns its result (the atom error if fn threw), or nullopt when the
// deadline passes first (the process is then killed). For code outside any process (a service's stop, the HTTP server) that needs a process's calls.
asio::awaitable<std::optional<term>> run_in_process(node& n, std::function<asio::awaitable<term>(process&)> fn,
                                                    service::clock::time_point deadline);

}  // namespace cnode
