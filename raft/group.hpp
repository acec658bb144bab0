// One Raft group's process: the Asio shell around the sans-I/O core (raft/core.hpp) and the KV state machine
// (raft/kv.hpp). Members talk over Erlang distribution: {'$raft', Group, FromNode, Msg} to {Group, Node}, sent with
// noconnect (a busy or missing connection never suspends the group's process; the tick keeps the connections up).
// Elixir calls any member with GenServer.call; a follower hands the call to the leader, and the leader replies to
// the caller directly once the command is committed and applied (reads: once ReadIndex confirms the leadership).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "cnode/process.hpp"
#include "raft/core.hpp"
#include "raft/kv.hpp"
#include "raft/storage.hpp"
#include "raft/trace.hpp"

namespace cnode {
class distribution;
class function_table;
}  // namespace cnode

namespace cnode::raft {

struct group_config {
  std::string name;
  std::vector<std::string> members;  // the bootstrap configuration (a node not in it joins: see docs/raft.md)
};

struct timing {
  int election_ms = 1000, heartbeat_ms = 100, request_timeout_ms = 5000;
  std::uint64_t snapshot_entries = 4096;  // applied entries between snapshots
  bool pre_vote = true;                    // false only for tests (--raft-test-no-pre-vote)
};

// Where a group persists (raft/storage.hpp with --data-dir). persist() writes a ready's snapshot, hard state and
// entries and calls done from any thread once they are durable, completions in the order of the calls; without
// storage everything is "durable" at once.
class group_storage {
 public:
  virtual ~group_storage() = default;
  virtual void persist(std::shared_ptr<const snapshot> snap, std::optional<hard_state> state, std::vector<entry> es,
                       std::function<void(std::error_code)> done) = 0;
  virtual void save_snapshot(std::shared_ptr<const snapshot> s, std::function<void(std::error_code)> done) = 0;
};

// The group's directory (--data-dir DIR: DIR/raft/<group>/) through group commit on a writer thread.
// With a tracer, each write of the writer thread is an event (W, F: docs/raft.md "Benchmark").
std::unique_ptr<group_storage> make_durable_storage(std::unique_ptr<storage> st, std::shared_ptr<tracer> trace = nullptr);

// Counters for /metrics and :status, read from other threads.
struct group_stats {
  std::atomic<int> role{0};
  std::atomic<std::uint64_t> term{0}, commit{0}, applied{0}, last_index{0}, snapshot_index{0}, keys{0}, locks{0};
  std::atomic<std::uint64_t> proposals{0}, reads{0}, forwarded{0}, unavailable{0}, snapshots_sent{0};
  std::atomic<bool> leader{false};
};

class group_process {
 public:
  group_process(group_config g, timing t, distribution& d, function_table& fns, bool global_running,
                std::unique_ptr<group_storage> storage = nullptr, recovered rec = {});
  ~group_process();

  asio::awaitable<void> run(process& self);
  const group_config& config() const noexcept { return g_; }
  const group_stats& stats() const noexcept { return stats_; }
  // --raft-trace: the group's events go to this timeline (before run()).
  void set_trace(std::shared_ptr<tracer> t) { trace_ = std::move(t); }

 private:
  using clock = std::chrono::steady_clock;
  struct pending_call {
    term from;
    term_t in_term = 0;
    clock::time_point deadline;
  };
  struct waiting_call {  // no leader known yet, or a read to redo
    term from, request;
    clock::time_point deadline;
    int hops = 0;
  };
  struct pending_read {
    term from, key;
    clock::time_point deadline;
    index_t index = 0;  // once confirmed: answer when applied >= index
  };
  struct forwarded_call {  // handed to a leader: answered by it, unless it stops leading first
    term from;
    std::string leader;
    clock::time_point deadline;
  };
  struct pending_transfer {
    term from;
    member_id to;
    clock::time_point deadline;
  };
  struct lock_watch {  // the leader's watch over a granted lock: owner monitor and ttl
    term monitor;
    std::uint64_t token = 0;
    term name;
    clock::time_point expires;
    bool release_proposed = false;
  };
  struct watcher {
    term ref, pid, monitor, key;
  };

  void answer(process& self, const term& from, term reply);
  void keep_connected(process& self);
  void handle(process& self, const term& m);
  void handle_call(process& self, const term& from, const term& request, clock::time_point deadline, int hops);
  void forward(process& self, const term& from, const term& request, clock::time_point deadline, int hops);
  void propose(process& self, const term& from, const term& request, term command, clock::time_point deadline);
  void flush(process& self);
  void write(process& self, std::shared_ptr<const snapshot> snap, std::optional<hard_state> st, std::vector<entry> es);
  void synced(process& self);
  void send(process& self, std::vector<message>& ms);
  void apply_ready(process& self, ready& rd);
  void apply(process& self, const entry& e);
  void answer_reads(process& self);
  void check_leadership(process& self);
  void expire(process& self);
  void maybe_snapshot(process& self);
  void notify_watchers(process& self, const term& key);
  void handle_down(process& self, const term& ref);
  term status() const;
  void publish_stats();

  group_config g_;
  timing t_;
  distribution& d_;
  function_table& fns_;
  bool global_running_;
  std::unique_ptr<group_storage> storage_;
  recovered recovered_;
  std::optional<core> core_;
  kv_machine kv_;
  index_t last_applied_ = 0;
  std::map<index_t, pending_call> pending_;
  std::map<member_id, pending_call> adding_;  // {add_member, Node} while Node catches up as a learner
  std::vector<waiting_call> waiting_;
  std::map<std::uint64_t, pending_read> reads_;
  std::multimap<index_t, pending_read> reads_at_;  // confirmed, waiting for the state machine
  std::uint64_t next_read_ = 1;
  std::vector<pending_transfer> transfers_;
  std::deque<forwarded_call> forwarded_;
  std::map<std::string, lock_watch> lock_watches_;  // by lock key; only on the leader
  std::map<std::string, std::vector<watcher>> watchers_;  // by printed key
  bool leading_ = false;
  // The pipeline (docs/raft.md "With --data-dir"): every ready taken is handed to the writer at once; its messages
  // wait here, in order, until its write (and every write before it) is durable.
  struct held {
    std::vector<message> messages;
    index_t index = 0;  // core::persisted(index, term) once durable (0: nothing of the log)
    term_t term = 0;
    bool done = false;  // durable (or nothing to write), waiting only for the writes before it
  };
  std::deque<held> held_;
  hard_state synced_;                   // the newest hard state handed to the writer
  std::optional<hard_state> deferred_;  // a newer commit index only: written with the next write (or at a tick)
  bool snapshot_saving_ = false;  // a snapshot is being encoded (snap_build_) or saved
  // A snapshot being encoded as of snap_build_index_: kv_serializer steps of snapshot_step_entries, one per
  // $raft_snapshot_step message this process sends itself, so requests are served between the steps.
  std::optional<kv_serializer> snap_build_;
  index_t snap_build_index_ = 0;
  static constexpr std::size_t snapshot_step_entries = 512;
  void snapshot_step(process& self);
  // A snapshot from the leader is decoded and loaded (kv_loader) install_step_entries entries, and its bytes copied
  // out of the message install_copy_bytes, per $raft_install_step message, into a state apart from kv_, before the
  // core sees it; once loaded (and so known to be a KV state) the core takes the message, and its ready swaps the
  // state in at once (kv_machine::replace). The old state goes to reaper_, freed free_step_entries map nodes per
  // $raft_free_step message.
  struct install {
    message msg;  // the install_snapshot (its snap's data empty), held until its state is loaded
    std::shared_ptr<const term> bytes;  // the binary of the message that holds the state's bytes
    kv_loader loader;  // over *bytes
    std::string data;  // *bytes copied so far: the core's snapshot
    std::uint64_t generation = 0;  // of the $raft_install_step messages that drive this one
    bool loaded = false;
  };
  std::optional<install> installing_;
  std::uint64_t install_generation_ = 0;
  std::optional<kv_state> loaded_;  // loaded, handed to the core: swapped in when its ready comes (apply_ready)
  std::shared_ptr<const snapshot> loaded_snap_;
  kv_reaper reaper_;
  bool reaping_ = false;  // a $raft_free_step is on its way
  static constexpr std::size_t install_step_entries = 512, free_step_entries = 4096,
                               install_copy_bytes = std::size_t{1} << 18;
  void begin_install(process& self, message msg, term bytes);
  bool is_resend(const term& wire) const;
  void install_step(process& self, std::uint64_t generation);
  void reap(process& self, kv_state s);
  void free_step(process& self);
  std::uint64_t ticks_ = 0;
  term registrar_;  // the process that keeps {raft_leader, Group} registered in :global
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  group_stats stats_;
  std::shared_ptr<tracer> trace_;
};

}  // namespace cnode::raft
