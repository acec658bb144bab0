// The `crdt` service's process: one registered `:crdt` per node, owning the replica store (crdt/store.hpp). It
// answers Elixir's GenServer.call at once from local state, runs the anti-entropy on a timer (every --crdt-sync-ms),
// and talks to the other replicas with plain messages to {crdt, Node}:
//
//   {crdt_hello, FromNode, Incarnation}            on nodeup, and at start to the replicas already connected: a
//                                                  new Incarnation means that replica restarted, so it gets
//                                                  everything again; the same one (a partition that healed) means
//                                                  it gets what it has not acked
//   {crdt_sync, FromNode, delta | state, Seq, Objects}   crdt/codec.hpp
//   {crdt_ack, FromNode, Seq}
//
// Every send is noconnect (a missing connection never blocks the process) and skipped for a connection over its
// busy limit (a frozen peer's queue never suspends the process; it gets the interval once its queue drains or
// after the retransmit time). Connections to the listed replicas are brought up by separate coroutines, out of the
// process's way. With --data-dir the state is written (background thread, atomically and durably) before anything
// leaves for a peer, so no dot this replica made is known elsewhere but not on its disk.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cnode/oneshot.hpp"
#include "cnode/process.hpp"
#include "crdt/persist.hpp"
#include "crdt/store.hpp"

namespace cnode {
class distribution;
}

namespace cnode::crdt {

struct replica_config {
  std::vector<std::string> replicas;  // --crdt (may name this node)
  int sync_ms = 200;                  // --crdt-sync-ms
  std::int64_t clock_offset_ms = 0;   // --crdt-test-clock-offset-ms (tests only)
  std::int64_t max_clock_offset_ms = 60'000;
  std::size_t max_buffered_deltas = 1024;
};

// Counters the exporter reads from another thread.
struct replica_stats {
  std::atomic<std::uint64_t> writes{0}, reads{0}, bad_requests{0}, wrong_type{0};
  std::atomic<std::uint64_t> syncs_sent{0}, full_states_sent{0}, acks_sent{0}, syncs_received{0}, merges_changed{0};
  std::atomic<std::uint64_t> malformed{0}, far_ahead{0}, conflicts{0}, busy_skips{0}, notifications{0};
  std::atomic<std::uint64_t> persists{0}, persist_failures{0}, persisted_bytes{0};
  std::atomic<std::uint64_t> names{0}, peers{0}, in_contact{0}, buffered{0}, subscribers{0};
};

class replica : public std::enable_shared_from_this<replica> {
 public:
  using clock = std::chrono::steady_clock;

  // dir: the opened DIR/crdt (null without --data-dir); its snapshot, if any, was read by the caller.
  replica(replica_config cfg, distribution& d, std::unique_ptr<state_dir> dir, std::optional<snapshot> restored);
  ~replica();

  // Takes the writer id and the state (before the process runs). Throws std::runtime_error with a sentence.
  void prepare(atom self_node);
  asio::awaitable<void> run(process& self);
  // From the service's stop(): the state is written and the last intervals sent; done is set then.
  void request_stop(oneshot<bool> done);

  const replica_stats& stats() const noexcept { return stats_; }
  replica_id writer() const noexcept { return writer_; }
  std::uint64_t incarnation() const noexcept { return incarnation_; }
  bool persistent() const noexcept { return dir_ != nullptr; }

 private:
  std::int64_t now_ms() const;
  void handle(process& self, const term& m);
  void handle_call(process& self, const term& from, const term& request);
  term status(process& self) const;
  void handle_hello(process& self, atom from, std::uint64_t incarnation);
  void handle_peer_message(process& self, const term& m);
  void node_up(process& self, atom n);
  void node_down(atom n);
  // A message from a node we do not list: taken only while that node is connected (a name that is not a node
  // cannot make us keep deltas for it).
  bool accept_unlisted(atom n) const;
  void tick(process& self);
  void send_syncs(process& self);
  void notify(process& self);
  void start_persist(process& self);
  void on_persisted(process& self, std::uint64_t generation, const term& outcome);
  void maybe_finish_stop(process& self);
  void keep_connected(process& self);
  void send_hello(process& self, atom to);
  void changed(const term& name);
  void subscribe(process& self, const term& pid, const term& name);
  void unsubscribe(process& self, const term& pid, const term& name);
  void subscriber_down(const term& pid);
  void publish_stats();
  bool listed(atom n) const;

  replica_config cfg_;
  distribution& d_;
  std::unique_ptr<state_dir> dir_;
  std::optional<snapshot> restored_;
  std::unique_ptr<background_writer> writer_thread_;
  replica_stats stats_;

  atom self_node_;
  replica_id writer_;
  std::uint64_t incarnation_ = 0;
  std::optional<replica_store> store_;
  std::set<atom> listed_;
  std::map<atom, std::uint64_t> incarnations_;  // the last hello of each peer
  std::set<atom> contact_;                      // peers heard from since their connection came up
  std::map<atom, clock::time_point> far_ahead_logged_;
  clock::time_point malformed_logged_{};

  // Subscriptions: name -> subscribers, subscriber -> (monitor, names), what each name's subscribers last got.
  std::map<term, std::set<term, term_less>, term_less> subscribers_;
  struct subscriber {
    term monitor;
    std::set<term, term_less> names;
  };
  std::map<term, subscriber, term_less> by_pid_;
  std::map<term, term, term_less> last_notified_;
  std::set<term, term_less> changed_;

  // Persistence: state changed since the last write handed over; one write at a time.
  bool dirty_ = false;
  bool persist_in_flight_ = false;
  std::uint64_t persist_generation_ = 0;
  clock::time_point persist_error_logged_{};

  std::uint64_t ticks_ = 0;
  std::mutex stop_mu_;
  std::optional<oneshot<bool>> stop_done_;  // under stop_mu_
  bool stopping_ = false;                   // the process's view
};

}  // namespace cnode::crdt
