// The sans-I/O core of global_name_server (kernel global.erl, protocol vsn 8 as OTP 25–27 speak it): the name and
// lock tables, name conflict planning, and the connection state machine (init_connect … in_sync, lost_connection,
// remove_connection, cancel_connect). Messages in through handle_*; everything it does to the world goes through
// server_io, so tests drive it with a recording fake. Thread-safe: the process shell calls handle_* from one
// process, API readers (whereis, names, known) from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "etf/term.hpp"

namespace cnode::global {

using etf::atom;
using etf::term;

inline constexpr int protocol_vsn = 8;

struct name_entry {
  term name, pid, method, ref;
};

// What the core asks of the world.
class server_io {
 public:
  virtual ~server_io() = default;
  virtual atom self_node() const = 0;
  // A plain message to {global_name_server, node} (gns_volatile_send: no connect).
  virtual void send_server(atom node, term msg) = 0;
  // {'$gen_cast', req} to {global_name_server, node}.
  virtual void cast_server(atom node, term req) = 0;
  virtual void to_locker(term msg) = 0;
  virtual term locker_pid() const = 0;
  virtual term monitor(const term& pid) = 0;
  virtual void demonitor(const term& ref) = 0;
  virtual void disconnect(atom node) = 0;
  // Run exchange_names for node in a resolver (it may rpc resolve_it) and cast
  // {exchange_ops, Node, Tag, Ops, Resolved} back.
  virtual void start_resolver(atom node, const term& tag, const term& his_names, std::vector<name_entry> ours) = 0;
  virtual void stop_resolver(atom node) = 0;
  // sync_other/2 for each node: connect, then cast {in_sync, node(), true}, or send {extra_nodedown, Node} back.
  virtual void sync_others(const std::vector<atom>& nodes) = 0;
  virtual std::int64_t unique_integer() = 0;
  // A plain message to a local process (the syncers: {synced, [Node]}).
  virtual void send_local(const term& pid, term msg) = 0;
  virtual std::chrono::steady_clock::time_point now() const { return std::chrono::steady_clock::now(); }
};

// global_names + global_locks + the monitors behind them (global.erl:1800-1880, 1940-2010).
class tables {
 public:
  // ins_name: replaces any entry for name; monitors pid.
  void insert_name(const term& name, const term& pid, const term& method, server_io& io);
  // ins_name_ext: also recorded in global_names_ext as {Name, Pid, RegNode}, which exchanges carry along.
  void insert_name_ext(const term& name, const term& pid, const term& method, atom reg_node, server_io& io);
  void delete_name(const term& name, server_io& io);
  const name_entry* find_name(const term& name) const;
  std::vector<name_entry> names() const;
  // get_names_ext/0: [{Name, Pid, RegNode}].
  term names_ext() const;

  // can_set_lock/1: nullopt when another requester holds it, else the holders.
  bool can_set_lock(const term& id) const;
  bool set_lock(const term& id, const term& pid, server_io& io);  // handle_set_lock
  void del_lock(const term& id, const term& pid, server_io& io);  // handle_del_lock
  bool is_lock_set(const term& resource) const { return locks_.count(resource) != 0; }
  std::size_t lock_count() const { return locks_.size(); }
  // lock_still_set/3 (global.erl:1963): is the lock a name insert came under still held? from: the registering
  // pid (a {register, ...} call), or a node (ops from an exchange) with lock_id {global, LockRequesterId}.
  bool lock_still_set(const term& from, const term& lock_id) const;

  // A 'DOWN' for ref: the locks and the name behind it go.
  void down(const term& ref, server_io& io);

 private:
  struct lock_entry {
    term requester;
    std::vector<std::pair<term, term>> holders;  // {Pid, MonitorRef}
  };
  void remove_ext(const term& name);
  void lock_gone(const term& resource, bool down);

  std::map<term, name_entry> names_;
  std::unordered_map<term, term> ref_name_;
  std::map<term, lock_entry> locks_;
  std::map<term, std::pair<term, atom>> ext_;  // name -> {Pid, RegNode}
  bool global_lock_down_ = false;  // the last `global` lock went with its holder's DOWN, not a del_lock
};

// exchange_names/4 (global.erl:2554): ops for the names another partition sent. Conflicts that this side resolves
// (node() < Node) are listed for the resolver; finish_conflict adds the outcome as global.erl does.
struct conflict {
  term name, pid, method;  // his
  term pid2, method2;      // ours
};
struct exchange_plan {
  std::vector<term> ops, resolved;
  std::vector<conflict> conflicts;
};
exchange_plan plan_exchange(const std::vector<name_entry>& ours, const term& his_names, atom self, atom his_node);
// result: the pid resolve_it chose, `none`, {badrpc, _} or anything else (global.erl:2565-2584).
void finish_conflict(exchange_plan& p, const conflict& c, const term& result);

// The lock id two lockers share: {global, lists:sort([A, B])} (global.erl:2392).
term locker_lock_id(const term& a, const term& b);
atom the_boss(std::vector<atom> nodes);

class server_core {
 public:
  explicit server_core(server_io& io, bool hidden = false);

  // Thread-safe readers.
  std::optional<term> where(const term& name, const std::function<bool(const term&)>& local_alive) const;
  std::vector<term> registered_names() const;
  std::vector<atom> known() const;
  std::vector<atom> synced() const;
  bool is_global_lock_set() const;
  bool has_pid(const term& pid) const;  // check_dupname/2: the pid has a name already
  bool can_set_lock(const term& id) const;

  // Messages to global_name_server. Each returns false for a message it does not understand.
  bool handle_cast(const term& req);
  // A call; the reply, or nullopt for an unknown request.
  std::optional<term> handle_call(const term& req, const term& from_pid);
  bool handle_info(const term& msg);
  // {sync, Nodes} (global:sync/0,1): the nodes still to wait for (Nodes less node() and the synced ones); the
  // caller's syncer is told {synced, [Node]} as each one gets in sync, and should watch the nodes itself.
  std::vector<atom> add_syncer(const term& pid, const std::vector<atom>& nodes);
  void remove_syncer(const term& pid);
  void nodeup(atom node);
  void nodedown(atom node);
  // The node is stopping and its names are released: from now on connections that come and go are not global's
  // business (on the BEAM, global_name_server stops before net_kernel closes the connections). Above all no
  // lost_connection goes out as the connections close one by one: it would make the nodes that get it disconnect
  // from the others (prevent_overlapping_partitions).
  void leave();

 private:
  struct peer {
    std::optional<term> my_tag, his_tag, prot_vsn, lock_id;
    std::optional<term> wait_exchange;  // names from an exchange that came before lock_is_set
    bool lock_is_set = false;
    std::optional<term> save_ops;                         // our ops from the resolver
    std::optional<std::array<term, 3>> saved_resolved;    // {HisKnown, Names_ext, HisResolved}
    std::optional<std::array<term, 3>> pre_connect;       // {Vsn, InitMsg, HisTag}
  };
  enum class down_kind { disconnected, remove_connection, ignore_node };

  void nodeup_locked(atom node);
  void init_connect(const term& vsn, atom node, const term& init_msg, const term& his_tag, std::int64_t his_vsn);
  void restart_connect(atom node, const std::optional<term>& my_tag);
  void cancel_locker(atom node, const std::optional<term>& tag, term fun);
  void send_cancel_connect(atom node, const std::optional<term>& my_tag);
  void reset_node_state(atom node) { peers_.erase(node); }
  void lock_is_set(atom node, const term& lock_id);
  void exchange(atom node, const term& names);
  void resolved(atom node, const term& his_resolved, const term& his_known, const term& names_ext);
  void new_nodes(const term& ops, atom conn_node, const term& names_ext, const term& nodes, const term& extra);
  void do_ops(const term& ops, const term& conn, const term& names_ext, const term& extra);
  void insert_checked(const term& name, const term& pid, const term& method, const std::optional<atom>& reg_node,
                      const term& from, const term& extra);
  void tell_syncers(atom node);
  std::vector<atom> add_to_known(const term& nodes);
  term mk_known_list() const;
  std::int64_t node_vsn(atom n) const;
  void handle_nodedown(atom node, down_kind what);
  void lost_connection(const term& msg);
  void remove_connection(atom node);
  bool potentially_known(atom n) const { return known_.count(n) || pending_.count(n); }
  void multicast(const term& msg, atom except);
  std::optional<term> tag_my(atom n) const;
  term his_tag(atom n) const;

  server_io& io_;
  bool hidden_;
  mutable std::mutex mu_;
  tables tables_;
  std::map<atom, std::int64_t> known_, pending_;
  std::set<atom> removing_;
  std::vector<atom> synced_;
  std::map<atom, peer> peers_;
  std::map<atom, term> resolvers_;  // node -> the tag of its resolver
  struct lost_info {
    term xcreation, op_id;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::pair<atom, atom>, lost_info> lost_;  // {A, B}: kept an hour, as global.erl does
  std::vector<term> syncers_;
  term creation_ext_;
  bool leaving_ = false;
};

}  // namespace cnode::global
