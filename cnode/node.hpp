// The node runtime: the process table, registered names, aliases, references, and the routing of signals to local
// processes or, through the distribution layer, to other nodes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "cnode/process.hpp"
#include "cnode/signal.hpp"

namespace cnode {

// What the node needs from the distribution layer to reach other nodes.
class remote_router {
 public:
  virtual ~remote_router() = default;
  // A signal for a process on another node. `to` is a pid, or for signal_kind::message / monitor a name atom
  // (REG_SEND / MONITOR_P by name) with `node` naming its node; an alias reference for a message (ALIAS_SEND).
  virtual void route_remote(atom node, const term& to, signal s) = 0;
};

struct spawn_options {
  std::optional<term> link;  // link the new process with this pid at once
  bool link_silent = false;  // record the link on the new process only (the other end links itself, as after
                             // a SPAWN_REPLY with the link flag)
  std::optional<std::pair<term, term>> monitored_by;  // {Watcher, Ref}: a monitor held on the new process
  bool trap_exit = false;
  // Runs after the process exists and before its body starts: a SPAWN_REPLY sent here reaches the requester
  // before anything the new process does.
  std::function<void(const term& pid)> before_start;
};

class service_directory;

// Requests the probe (cnode:spawn_probe/1) learns from the layers above the runtime: a request that is a tuple whose
// first element is `tag` (or the atom `tag` itself) goes to the handler, which runs in the probe process and returns
// the reply. Per node, behind a lock: services add theirs while the node already takes calls.
using probe_call = std::function<boost::asio::awaitable<term>(process& self, const term& request)>;
class probe_registry {
 public:
  void add(atom tag, probe_call handler);
  void remove(atom tag);
  std::optional<probe_call> find(const term& request) const;

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<atom, probe_call> calls_;
};

// {via, Module, Name} and {global, Name} (= {via, global, Name}), as gen.erl resolves them: a service that keeps
// names (:global) adds its whereis_name here.
class name_resolver {
 public:
  using whereis_fn = std::function<std::optional<term>(const term& name)>;
  void add(atom module, whereis_fn f);
  void remove(atom module);
  // nullopt: dest is not a {global, _} / {via, _, _} form. Otherwise the pid, or nullopt inside when the name is
  // not registered or the module is unknown here (gen:call exits noproc).
  std::optional<std::optional<term>> resolve(const term& dest) const;

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<atom, whereis_fn> modules_;
};

// Counters for cnode:info/0 and metrics.
struct node_counters {
  std::atomic<std::uint64_t> messages_in{0}, messages_out{0}, local_messages{0};
  std::atomic<std::uint64_t> processes_spawned{0};
};

class node {
 public:
  node(asio::any_io_executor ex, std::string name, std::uint32_t creation);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  const std::string& name() const noexcept { return name_; }
  atom name_atom() const noexcept { return name_atom_; }
  std::uint32_t creation() const noexcept { return creation_; }
  // The name and creation may change once, before any process exists (EPMD registration, NAME_ME).
  void set_identity(std::string name, std::uint32_t creation);
  asio::any_io_executor get_executor() const noexcept { return ex_; }
  void set_router(remote_router* r) noexcept { router_ = r; }
  node_counters& counters() noexcept { return counters_; }
  std::chrono::steady_clock::time_point started() const noexcept { return started_; }

  // ---- processes ----
  term spawn(process::body_type body, spawn_options opts = {});
  std::shared_ptr<process> find(const term& pid) const;  // a live local process, or null
  std::vector<term> processes() const;
  std::size_t process_count() const;
  bool is_local(const term& pid_port_or_ref) const noexcept;

  // ---- names ----
  bool register_name(atom name, const term& pid);  // false if the name or the pid is taken, or pid not alive
  bool unregister_name(atom name);
  std::optional<term> whereis(atom name) const;
  std::vector<atom> registered() const;

  // Spawns body registered as `name`: the name is taken before the body runs, so nobody finds the process
  // unnamed. nullopt (and no process) when the name is taken.
  std::optional<term> spawn_registered(atom name, process::body_type body, spawn_options opts = {});

  // ---- bounds ----
  // A mailbox longer than `max` messages (0: no bound, the BEAM's default) either kills its process (reason
  // killed, as max_heap_size's kill does) or is logged once as it crosses the bound.
  struct mailbox_limit {
    std::size_t max = 0;
    bool kill = true;
  };
  void set_mailbox_limit(mailbox_limit l) noexcept {
    mailbox_max_.store(l.max, std::memory_order_relaxed);
    mailbox_kill_.store(l.kill, std::memory_order_relaxed);
  }
  mailbox_limit get_mailbox_limit() const noexcept {
    return {mailbox_max_.load(std::memory_order_relaxed), mailbox_kill_.load(std::memory_order_relaxed)};
  }

  // ---- what services add to the node ----
  name_resolver& resolver() noexcept { return resolver_; }
  const name_resolver& resolver() const noexcept { return resolver_; }
  probe_registry& probe_calls() noexcept { return probe_calls_; }
  // The services running here, by name (cnode/service.hpp).
  service_directory& services() noexcept { return *services_; }

  // ---- aliases ----
  void add_alias(const term& ref, std::uint64_t process_number);
  void remove_alias(const term& ref);

  // ---- signals ----
  // Sends a message from `from` (a pid, or [] for the node itself) to a pid, name, {Name, Node} or alias.
  // noconnect: see signal::noconnect.
  void send(const term& from, const term& dest, term msg, bool noconnect = false);
  // Delivers a signal to a pid, local or remote. A signal for a local process that does not exist is answered as
  // the BEAM answers it: a link with an exit `noproc`, a monitor with 'DOWN' `noproc`, an unlink with its ack.
  void route(const term& to, signal s);
  // A signal that arrived from another node for a local pid, name or alias (used by the distribution layer).
  void deliver_local(const term& to, signal s);
  // A signal for the process registered as `name` here (REG_SEND, MONITOR_P by name, DEMONITOR_P by name).
  void deliver_to_name(atom name, signal s);
  // A signal for the process registered as `name` on node `where` (local or remote).
  void send_named_signal(atom name, atom where, signal s);

  term make_ref();
  term make_pid(std::uint64_t number) const;

  // Runs fn for every live process (snapshot).
  void for_each_process(const std::function<void(process&)>& fn) const;

  // Called by process on exit.
  void remove_process(std::uint64_t number, const std::vector<atom>& names);

 private:
  void answer_dead(const term& to, signal& s);
  // spawn, and with a name spawn_registered: nullopt (nothing spawned, no option applied) when the name is taken.
  std::optional<term> spawn_as(const atom* name, process::body_type body, spawn_options opts);

  std::atomic<std::size_t> mailbox_max_{0};
  std::atomic<bool> mailbox_kill_{true};
  name_resolver resolver_;
  probe_registry probe_calls_;
  std::unique_ptr<service_directory> services_;
  asio::any_io_executor ex_;
  std::string name_;
  atom name_atom_;
  std::uint32_t creation_;
  remote_router* router_ = nullptr;
  node_counters counters_;
  std::chrono::steady_clock::time_point started_;

  mutable std::shared_mutex mu_;
  // The process table: the processes, found by their number (process::number(), the pid's id and serial). A set
  // hashed by the number rather than a map from it: its nodes are 24 bytes (malloc's 32) where the map's were 32
  // (malloc's 48), and no hash is kept in them.
  struct number_hash {
    using is_transparent = void;
    std::size_t operator()(std::uint64_t n) const noexcept { return std::hash<std::uint64_t>{}(n); }
    std::size_t operator()(const std::shared_ptr<process>& p) const noexcept { return (*this)(p->number()); }
  };
  struct number_eq {
    using is_transparent = void;
    bool operator()(const std::shared_ptr<process>& a, const std::shared_ptr<process>& b) const noexcept {
      return a->number() == b->number();
    }
    bool operator()(std::uint64_t n, const std::shared_ptr<process>& p) const noexcept { return p->number() == n; }
    bool operator()(const std::shared_ptr<process>& p, std::uint64_t n) const noexcept { return p->number() == n; }
  };
  std::unordered_set<std::shared_ptr<process>, number_hash, number_eq> table_;
  std::unordered_map<atom, std::shared_ptr<process>> names_;
  std::unordered_map<term, std::uint64_t> aliases_;
  std::atomic<std::uint64_t> next_pid_{1};
  std::atomic<std::uint64_t> next_ref_{1};
  std::uint32_t ref_salt_;
};

// Helpers for building terms.
inline term tuple(std::initializer_list<term> elems) { return term::tuple(elems); }
inline term a(std::string_view name) { return term(atom(name)); }

}  // namespace cnode
