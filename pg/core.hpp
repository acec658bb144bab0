// The sans-I/O core of one pg scope: the membership tables of OTP 25's pg.erl (local members, remote peers and
// their groups, the group table pg keeps in ETS, scope and group monitors) and every protocol decision. Messages
// go in as terms; what the scope does goes out through scope_io (send, monitor, demonitor), so the unit tests
// drive the core with terms and record what it sends.
//
// Two protocol versions, per peer (docs/otp-versions.md):
//   0, OTP 23-28's pg.erl: {discover, Pid}, {'$gen_cast', {sync, Pid, [{Group, Pids}]}}, {join, Pid, Group,
//      PidOrPids}, {leave, Pid, PidOrPids, Groups};
//   1, OTP 29's pg on data_publisher.erl: {discover, Pid, 1}, {'$gen_cast', {local_data, Pid, 1, #{Group => Pids}}},
//      {update, Pid, [{Group, Add, Remove}]}.
// A peer's version is what its discover says (pg 26+ answers {discover, Pid, V} as version 0, OTP 25 crashes on
// it); a peer that sends local_data speaks 1. We discover every node with version 0: an OTP 29 scope answers with
// its own {discover, Pid, 1}, and from then on we speak 1 to it. Both forms are accepted from every peer.
//
// The group table keeps pg's list order (newest first) so get_members/2 answers in the order pg would.
#pragma once

#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "etf/term.hpp"

namespace cnode::pg {

using etf::atom;
using etf::term;

// What the core needs from the process that runs it.
class scope_io {
 public:
  virtual ~scope_io() = default;
  // erlang:send/3; noconnect: drop the message rather than open a connection (pg.erl:584).
  virtual void send(const term& dest, term msg, bool noconnect) = 0;
  // erlang:monitor(process, Pid): the reference, and later {'DOWN', Ref, process, Pid, Reason} to handle_info.
  virtual term monitor(const term& pid) = 0;
  virtual void demonitor(const term& ref) = 0;
};

// The newest pg protocol version this core speaks (data_publisher's version(), pg.erl OTP 29).
inline constexpr int protocol_version = 1;

class scope_core {
 public:
  scope_core(atom scope, term self_pid, scope_io& io);

  atom scope() const noexcept { return scope_; }
  const term& self() const noexcept { return self_; }

  // init/1 (pg.erl:273): {discover, self()} to {Scope, Node} for every node already connected.
  void init(const std::vector<atom>& nodes);

  // The gen_server calls of pg.erl (join_local, leave_local, monitor, {monitor, G}, {demonitor, Ref}); `from` is
  // the caller's pid. nullopt: a request pg does not know (pg would crash; we ignore it).
  std::optional<term> handle_call(const term& request, const term& from);
  // '$gen_cast' payloads: {sync, Peer, Groups} and {local_data, Peer, Vsn, Data}. False: ignored.
  bool handle_cast(const term& request);
  // Plain messages: discover (both forms), join, leave, update, local_data, 'DOWN', nodeup, nodedown. False: ignored.
  bool handle_info(const term& msg);

  // The direct forms of the calls (already validated: local pids only).
  term join_local(const term& group, const term& pid_or_pids);
  term leave_local(const term& group, const term& pid_or_pids);  // ok | not_joined

  // Reads: what pg:get_members/2 etc. return on this node.
  term get_members(const term& group) const;
  term get_local_members(const term& group) const;
  term which_groups() const;
  term which_local_groups() const;
  std::size_t group_count() const noexcept { return table_.size(); }
  std::size_t peer_count() const noexcept { return remote_.size(); }
  bool knows_peer(const term& peer) const { return remote_.contains(peer); }
  // The protocol version spoken to a known peer (0 or 1); -1 for an unknown one.
  int peer_version(const term& peer) const {
    auto it = remote_.find(peer);
    return it == remote_.end() ? -1 : it->second.version;
  }

 private:
  // pids kept in reverse order of pg's lists: the list head is the vector's back.
  using pid_vec = std::vector<term>;
  struct local_entry {
    term mref;
    std::vector<term> groups;  // pg's [Group | Groups]: back = newest; duplicates count joins
  };
  struct peer_entry {
    term mref;
    std::unordered_map<term, pid_vec> groups;
    int version = 0;  // what we send it: 0 (join/leave/sync) or 1 (update/local_data)
  };
  struct group_row {  // the ETS row {Group, All, Local}
    pid_vec all, local;
  };

  bool is_local_pid(const term& t) const;
  static bool pid_or_pids(const term& t, pid_vec& out);  // out in pg list order (front = head)

  void handle_discover(const term& peer, int version);
  void handle_sync(const term& peer, const term& groups);
  void handle_local_data(const term& peer, const term& data);
  void handle_update(const term& peer, const term& update);
  void handle_join(const term& peer, const term& group, const term& pids_term, const pid_vec& pids);
  void handle_leave(const term& peer, const term& pids_term, const pid_vec& pids, const std::vector<term>& groups);
  void handle_down(const term& mref, const term& pid);

  // The ETS updates of pg.erl (pg.erl:542-656), each with its notification.
  void join_update(const term& group, const pid_vec& pids, bool local);
  void leave_local_update(const term& group, const pid_vec& pids);
  void leave_remote_update(const pid_vec& pids, const std::vector<term>& groups);
  void notify(atom action, const term& group, const pid_vec& pids);
  // update_global_view_and_notify/4 for a remote node (pg.erl OTP 29): All = Add ++ (All -- Remove).
  void remote_update(const term& group, const pid_vec& add, const pid_vec& remove);

  term all_local_pids() const;   // version 0 sync: [{Group, Pids}]
  term local_data() const;       // version 1: #{Group => Pids}
  term discover_msg(int version) const;
  // The same change in each version's words, each peer getting its own.
  void broadcast(const term& v0, const term& v1);
  void drop_monitor(const term& mref);

  atom scope_;
  term self_;
  atom self_node_;
  scope_io& io_;
  std::unordered_map<term, local_entry> local_;
  std::unordered_map<term, peer_entry> remote_;
  std::unordered_map<term, group_row> table_;
  std::unordered_map<term, term> scope_monitors_;                     // ref -> watcher
  std::unordered_map<term, std::pair<term, term>> group_monitors_;    // ref -> {watcher, group}
  std::unordered_map<term, std::vector<std::pair<term, term>>> monitored_groups_;  // group -> [{watcher, ref}]
};

// Helpers shared with the shell.
term pids_to_list(const std::vector<term>& reversed);

}  // namespace cnode::pg
