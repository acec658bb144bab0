// Raft's core under the deterministic harness: seeded runs of 3 and 5 members over a network that drops,
// duplicates, delays and partitions (one way too), with crashes and restarts from what was persisted. After every
// step: election safety, log matching, leader completeness, state-machine safety. Then the network heals and every
// member must converge. A failing seed is printed; CNODE_SEED=N replays it.
#include <doctest.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <sstream>

#include "etf/format.hpp"
#include "raft/core.hpp"
#include "test/support/sim.hpp"

using namespace cnode::raft;
using cnode::test::network_faults;
using cnode::test::sim_network;

namespace {

struct disk {
  hard_state hs;
  std::shared_ptr<const snapshot> snap;
  std::vector<entry> log;  // the entries after the snapshot
  index_t snap_index() const { return snap ? snap->meta.index : 0; }
};

// The test's state machine is a hash chain over the applied entries: a snapshot holds "index:digest", and an
// installed snapshot must match the chain of the one committed sequence at its index.
std::uint64_t chain(std::uint64_t d, const entry& e) {
  std::ostringstream os;
  os << e.term << '/' << e.index << '/' << cnode::etf::to_string(e.data);
  return (d ^ std::hash<std::string>{}(os.str())) * 1099511628211ULL + 7;
}

struct member {
  std::unique_ptr<core> c;  // null while crashed
  disk d;
  index_t applied = 0;  // the state machine's last applied index
  std::uint64_t digest = 0;
  std::vector<cnode::etf::term> applied_values;  // since the last (re)start, including what a snapshot stood for
  std::int64_t down_until = 0;
  // The shell's pipeline (raft/group.cpp): a ready's appends go at once and its state machine side is applied at
  // once; its persist is queued for the disk, and its other messages go once it and every ready before it are
  // durable. `pending` holds them in order; the first `syncing` are in the running fdatasync (group commit: the
  // writer takes everything queued when it starts), due at `sync_done`.
  struct write {
    ready rd;
    bool sync = true;         // false: nothing to persist, waits only for the writes before it
    bool compaction = false;  // the member's own snapshot (rd.snapshot), saved after the writes before it
  };
  std::deque<write> pending;
  std::size_t syncing = 0;
  std::int64_t sync_done = 0;
  hard_state synced;                // the newest hard state handed to the disk
  std::optional<hard_state> deferred;  // a change of the commit index only: written with the next write
};

struct cluster {
  std::vector<member_id> ids;      // every node that runs
  std::vector<member_id> initial;  // the bootstrap configuration (ids but the joiners)
  std::map<member_id, member> members;
  sim_network<member_id, message> net;
  std::int64_t now = 0;
  std::map<term_t, member_id> leaders;  // every leader seen, by term
  std::vector<entry> committed;         // the one committed sequence every member applies a prefix of
  std::vector<std::uint64_t> digests;   // digests[i]: the chain over committed[0..i]
  std::uint64_t seed;
  std::string failure;
  double compact_chance = 0.0;
  static inline std::uint64_t snapshot_installs = 0;
  static inline std::uint64_t reads_confirmed = 0;
  std::map<std::uint64_t, index_t> reads;  // ctx -> entries committed when the read was asked
  std::uint64_t next_read = 1;
  static inline std::uint64_t membership_changes = 0;
  static inline std::uint64_t learners_promoted = 0, learners_timed_out = 0;
  std::vector<ready::learner_outcome> outcomes;  // catch-up phases that ended, in order

  bool pre_vote = true;  // set false, then start() every member again, for a cluster without pre-vote

  cluster(int n, std::uint64_t s, int joiners = 0) : net(s), seed(s) {
    for (int i = 1; i <= n + joiners; ++i) {
      std::string id = std::to_string(i);  // (built in steps: GCC 12's -Wrestrict misfires on "n" + ... + "@sim")
      id.insert(0, 1, 'n');
      id.append("@sim");
      ids.push_back(std::move(id));
    }
    initial.assign(ids.begin(), ids.begin() + n);
    for (const auto& id : ids) start(id);
  }

  config cfg(const member_id& id) const {
    config c;
    c.self = id;
    c.members = initial;
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.seed = seed;
    c.pre_vote = pre_vote;
    return c;
  }

  static std::uint64_t digest_of(const snapshot& s) {
    const auto colon = s.data.find(':');
    return std::stoull(s.data.substr(colon + 1));
  }

  void start(const member_id& id) {
    auto& m = members[id];
    m.c = std::make_unique<core>(cfg(id));
    m.c->restore(m.d.hs, m.d.snap, m.d.log);
    m.applied = m.d.snap_index();
    m.digest = m.d.snap ? digest_of(*m.d.snap) : 0;
    m.applied_values.clear();
    m.pending.clear();
    m.syncing = 0;
    m.synced = m.d.hs;
    m.deferred.reset();
  }

  void crash(const member_id& id, std::int64_t for_ms) {
    auto& m = members[id];
    // A kill -9 during an fdatasync: the write was issued, so the page cache may still hold it (a power loss may
    // lose it): on disk or not, never reported. What was queued behind it is lost.
    if (m.syncing && net.chance(0.5))
      for (std::size_t k = 0; k < m.syncing && failure.empty(); ++k) write_disk(m, id, m.pending[k]);
    m.pending.clear();
    m.syncing = 0;
    m.c.reset();
    m.down_until = now + for_ms;
    net.drop_endpoint(id);
  }

  void fail(const std::string& why) {
    if (failure.empty()) failure = why;
  }

  bool check_snapshot(const snapshot& s, const member_id& id) {
    const index_t i = s.meta.index;
    if (i == 0 || i > committed.size()) return fail("a snapshot beyond the committed sequence on " + id), false;
    if (digests[i - 1] != digest_of(s)) return fail("a snapshot that is not the committed state on " + id), false;
    if (committed[i - 1].term != s.meta.term) return fail("a snapshot with the wrong term on " + id), false;
    return true;
  }

  void apply(member& m, const member_id& id, const entry& e) {
    if (e.index != m.applied + 1) return fail("applied out of order on " + id);
    const std::size_t i = e.index - 1;
    if (i < committed.size()) {
      if (!(committed[i] == e))
        return fail("state-machine safety: two members applied different entries at " + std::to_string(e.index));
    } else {
      committed.push_back(e);
      digests.push_back(chain(digests.empty() ? 0 : digests.back(), e));
    }
    m.applied = e.index;
    m.digest = chain(m.digest, e);
    m.applied_values.push_back(e.data);
  }

  // What the disk holds once a write is durable.
  void write_disk(member& m, const member_id& id, const member::write& w) {
    const ready& r = w.rd;
    const index_t was_committed = m.d.hs.commit;
    if (r.state) m.d.hs = *r.state;
    if (r.snapshot) {
      const auto& meta = r.snapshot->meta;
      const index_t old = m.d.snap_index();
      if (meta.index <= old) {
        if (!w.compaction) return fail("a snapshot not newer than the disk's persisted on " + id);
      } else {
        if (meta.index <= old + m.d.log.size() && m.d.log[meta.index - old - 1].term == meta.term)
          m.d.log.erase(m.d.log.begin(), m.d.log.begin() + static_cast<std::ptrdiff_t>(meta.index - old));
        else if (w.compaction)
          return fail("a compaction past what the disk holds on " + id);
        else
          m.d.log.clear();
        m.d.snap = r.snapshot;
      }
    }
    const index_t base = m.d.snap_index();
    // As raft/storage.cpp takes them: one run of consecutive entries (a truncation is its first index).
    for (std::size_t k = 1; k < r.to_persist.size(); ++k)
      if (r.to_persist[k].index != r.to_persist[k - 1].index + 1)
        return fail("entries to persist not consecutive on " + id + ": " + std::to_string(r.to_persist[k].index) +
                    " after " + std::to_string(r.to_persist[k - 1].index));
    for (const auto& e : r.to_persist) {
      if (e.index <= base || e.index > base + m.d.log.size() + 1) return fail("a persisted entry leaves a gap on " + id + ": entry " + std::to_string(e.index) + ", disk " + std::to_string(base) + "+" + std::to_string(m.d.log.size()) + (r.snapshot ? " after a snapshot" : ""));
      if (e.index <= was_committed && e.index <= base + m.d.log.size() && !(m.d.log[e.index - base - 1] == e))
        return fail("a committed entry was overwritten on " + id);
      m.d.log.resize(e.index - base - 1);
      m.d.log.push_back(e);
    }
  }

  // A write is durable: onto the disk, reported to the core, then the ready's held messages go.
  void complete(member& m, const member_id& id, member::write& w) {
    if (w.sync) write_disk(m, id, w);
    if (!failure.empty() || !m.c) return;
    ready& r = w.rd;
    if (!r.to_persist.empty()) m.c->persisted(r.to_persist.back().index, r.to_persist.back().term);
    else if (r.snapshot && !w.compaction) m.c->persisted(r.snapshot->meta.index, r.snapshot->meta.term);
    for (auto& msg : r.messages) {
      const member_id to = msg.to;  // before msg is moved from
      net.send(id, to, std::move(msg), now);
    }
  }

  void queue_write(member& m, const member_id& id, member::write w) {
    if (!busy_disks && w.sync) {  // a disk that is never busy: durable at once, in order
      complete(m, id, w);
      return;
    }
    if (!w.sync && m.pending.empty()) return complete(m, id, w);
    m.pending.push_back(std::move(w));
  }

  void finish_sync(member& m, const member_id& id) {
    for (std::size_t k = 0; k < m.syncing && failure.empty() && m.c; ++k) {
      complete(m, id, m.pending.front());
      m.pending.pop_front();
    }
    while (!m.pending.empty() && !m.pending.front().sync && failure.empty() && m.c) {
      complete(m, id, m.pending.front());
      m.pending.pop_front();
    }
    m.syncing = 0;
  }

  void drain(const member_id& id) {
    auto& m = members[id];
    if (!m.c) return;
    ready r = m.c->take_ready();
    // The leader's appends go before its own write (thesis §10.2.1).
    for (auto& msg : r.send_now) {
      const member_id to = msg.to;
      net.send(id, to, std::move(msg), now);
    }
    if (r.snapshot) {
      if (!check_snapshot(*r.snapshot, id)) return;
      ++snapshot_installs;
      m.applied = r.snapshot->meta.index;
      m.digest = digest_of(*r.snapshot);
    }
    for (const auto& e : r.to_apply) {
      apply(m, id, e);
      if (!failure.empty()) return;
    }
    // ReadIndex: a confirmed read answers at an index at or above everything committed before it was asked.
    for (const auto& rd : r.reads) {
      auto it = reads.find(rd.ctx);
      if (it == reads.end()) return fail("a read confirmed twice or never asked on " + id);
      if (rd.index < it->second)
        return fail("a stale read on " + id + ": index " + std::to_string(rd.index) + " but " +
                    std::to_string(it->second) + " were committed when it was asked");
      reads.erase(it);
      ++reads_confirmed;
    }
    for (auto ctx : r.failed_reads) reads.erase(ctx);
    for (const auto& l : r.learners) {
      if (l.what == ready::learner_outcome::promoted) ++learners_promoted;
      if (l.what == ready::learner_outcome::timeout) ++learners_timed_out;
      outcomes.push_back(l);
    }
    // As the shell: a term or vote must be durable before the messages go; a change of the commit index alone is
    // written with the next write.
    const bool state_sync = r.state && (r.state->term != m.synced.term || r.state->voted_for != m.synced.voted_for);
    const bool sync = r.snapshot || !r.to_persist.empty() || state_sync;
    if (sync) {
      if (!r.state) r.state = m.deferred;
      if (r.state) m.synced = *r.state;
      m.deferred.reset();
    } else if (r.state) {
      m.deferred = r.state;
      r.state.reset();
    }
    queue_write(m, id, member::write{std::move(r), sync, false});
    if (!failure.empty() || !m.c) return;
    if (compact_chance > 0 && m.applied > m.c->snapshot_index() && net.chance(compact_chance)) {
      auto s = m.c->compact(m.applied, std::to_string(m.applied) + ":" + std::to_string(m.digest));
      if (s && s->meta.index == m.applied) {
        if (!check_snapshot(*s, id)) return;
        ready save;
        save.snapshot = s;
        queue_write(m, id, member::write{std::move(save), true, true});
      }
    }
  }

  void check_leader(const member_id& id) {
    auto& m = members[id];
    if (!m.c || m.c->current_role() != role::leader) return;
    auto [it, fresh] = leaders.emplace(m.c->current_term(), id);
    if (!fresh && it->second != id) return fail("election safety: two leaders in term " + std::to_string(it->first));
    const auto& c = *m.c;
    if (fresh) {
      // Leader completeness: a new leader's log (or its snapshot) holds every committed entry.
      for (const auto& e : committed) {
        if (e.index <= c.snapshot_index()) continue;
        if (e.index > c.last_index() || !(c.at(e.index) == e))
          return fail("leader completeness: " + id + " leads term " + std::to_string(it->first) +
                      " without committed entry " + std::to_string(e.index));
      }
      if (c.snapshot_index() > committed.size())
        return fail("leader completeness: " + id + " holds a snapshot beyond what is committed");
    }
    // Durability: what the leader counts as committed is on the disks of a majority of its configuration (the
    // leader's own appends went before its write: it must not count itself for what is not durable yet).
    const index_t ci = c.commit_index();
    if (fresh) checked_commit[id] = ci;  // what it knew committed when elected was counted by earlier leaders
    if (ci <= c.snapshot_index() || ci <= checked_commit[id]) return;
    checked_commit[id] = ci;
    const term_t t = c.term_at(ci);
    auto durable_on_majority = [&](const std::vector<member_id>& conf, int& on_disk) {
      on_disk = 0;
      for (const auto& x : conf) {
        const auto& d = members[x].d;
        const index_t base = d.snap_index();
        if (ci <= base || (ci <= base + d.log.size() && d.log[ci - base - 1].term == t)) ++on_disk;
      }
      return on_disk >= static_cast<int>(conf.size()) / 2 + 1;
    };
    // The leader counted with its newest configuration: the one in force at the entry, or one appended since
    // (one server at a time, a change only once the previous one committed: at most one in this step).
    // When the log holds no configuration entry at or below ci: the snapshot's, else the bootstrap one.
    std::vector<member_id> at_ci =
        c.last_snapshot() && !c.last_snapshot()->meta.members.empty() ? c.last_snapshot()->meta.members : initial;
    for (index_t i = ci; i > c.snapshot_index(); --i)
      if (auto ms = members_of(c.at(i).data)) {
        at_ci = *ms;
        break;
      }
    int now_on = 0, then_on = 0;
    if (!durable_on_majority(c.members(), now_on) && !durable_on_majority(at_ci, then_on))
      return fail("durability: " + id + " committed " + std::to_string(ci) + " held on the disks of " +
                  std::to_string(now_on) + " of its " + std::to_string(c.members().size()) + " members" + [&] {
                    std::string d = " (persisted " + std::to_string(c.persisted_index()) + "; members";
                    for (const auto& x : c.members()) {
                      const auto& dd = members[x].d;
                      d += " " + x + ":disk " + std::to_string(dd.snap_index()) + "+" + std::to_string(dd.log.size());
                      auto pr = c.peers();
                      if (pr.count(x)) d += " match " + std::to_string(pr[x].match);
                    }
                    return d + ")";
                  }());
  }
  std::map<member_id, index_t> checked_commit;

  void check_log_matching() {
    for (std::size_t a = 0; a < ids.size(); ++a)
      for (std::size_t b = a + 1; b < ids.size(); ++b) {
        const auto& x = members[ids[a]];
        const auto& y = members[ids[b]];
        if (!x.c || !y.c) continue;
        const index_t lo = std::max(x.c->first_index(), y.c->first_index());
        const index_t hi = std::min(x.c->last_index(), y.c->last_index());
        index_t last_same = 0;
        for (index_t i = hi; i >= lo && i > 0; --i)
          if (x.c->at(i).term == y.c->at(i).term) {
            last_same = i;
            break;
          }
        for (index_t i = lo; i <= last_same; ++i)
          if (!(x.c->at(i) == y.c->at(i))) return fail("log matching between " + ids[a] + " and " + ids[b]);
      }
  }

  // One millisecond of the world: deliveries, then a tick every 10 ms.
  void step_ms() {
    ++now;
    for (auto& env : net.due(now)) {
      auto& m = members[env.to];
      if (m.c) m.c->step(env.msg);
    }
    for (const auto& id : ids) {
      auto& m = members[id];
      if (!m.c && m.down_until <= now) start(id);
      if (m.c && now % 10 == 0) m.c->tick();
    }
    // Each member: a finished fdatasync completes its writes; a ready is taken (while a write runs too: what is
    // submitted meanwhile gathers into the next fdatasync, as with group commit); an idle disk starts on the queue.
    for (const auto& id : ids) {
      auto& m = members[id];
      if (!m.c) continue;
      if (m.syncing && now >= m.sync_done) finish_sync(m, id);
      if (!m.c || !failure.empty()) continue;
      if (now % 10 == 0 && m.deferred && m.pending.empty()) {  // the shell's tick writes an idle commit index
        ready w;
        w.state = m.deferred;
        m.deferred.reset();
        queue_write(m, id, member::write{std::move(w), true, false});
      }
      if (m.c->has_ready()) drain(id);
      if (!m.c || !failure.empty()) continue;
      if (!m.syncing && !m.pending.empty()) {
        m.syncing = m.pending.size();
        m.sync_done = now + (net.chance(0.3) ? static_cast<std::int64_t>(net.rng()() % 8) : 0);  // 0-7 ms
      }
      check_leader(id);
    }
  }
  bool busy_disks = true;

  member* leader() {
    member* best = nullptr;
    for (auto& [id, m] : members)
      if (m.c && m.c->current_role() == role::leader && (!best || m.c->current_term() > best->c->current_term()))
        best = &m;
    return best;
  }
};

struct chaos_options {
  int joiners = 0;          // nodes outside the bootstrap configuration that membership changes add and remove
  double compact = 0.0;     // chance per ready that a member snapshots and compacts its log
};

void run_chaos(int n, std::uint64_t seed, int steps, chaos_options o = {}) {
  cluster cl(n, seed, o.joiners);
  cl.compact_chance = o.compact;
  auto& rng = cl.net.rng();
  auto pick = [&](std::size_t k) { return std::uniform_int_distribution<std::size_t>(0, k - 1)(rng); };
  cl.net.set_faults(network_faults{0.05, 0.05, 1, 30});
  std::int64_t next_value = 1;
  int changes = 0;
  for (int s = 0; s < steps && cl.failure.empty(); ++s) {
    const auto r = pick(1000);
    if (r < 60) {
      if (auto* l = cl.leader()) l->c->propose(cnode::etf::term(next_value++));
    } else if (r < 63) {
      std::vector<member_id> side{cl.ids[pick(cl.ids.size())]};
      if (pick(2)) side.push_back(cl.ids[pick(cl.ids.size())]);
      cl.net.partition(side, cl.ids);
    } else if (r < 65) {
      cl.net.cut(cl.ids[pick(cl.ids.size())], cl.ids[pick(cl.ids.size())], true);  // one way
    } else if (r < 72) {
      cl.net.heal();
    } else if (r < 74) {
      cl.crash(cl.ids[pick(cl.ids.size())], static_cast<std::int64_t>(50 + pick(500)));
    } else if (r < 75) {
      if (auto* l = cl.leader()) l->c->transfer_leadership(cl.ids[pick(cl.ids.size())]);
    } else if (r < 90) {
      auto& m = cl.members[cl.ids[pick(cl.ids.size())]];
      if (m.c && m.c->read_index(cl.next_read)) cl.reads[cl.next_read++] = cl.committed.size();
    } else if (r < 93 && o.joiners) {
      // One server in or out, keeping between n - 1 (at least 3) and n + joiners members.
      if (auto* l = cl.leader()) {
        auto ms = l->c->members();
        const auto& x = cl.ids[pick(cl.ids.size())];
        auto it = std::find(ms.begin(), ms.end(), x);
        if (it != ms.end()) ms.erase(it);
        else ms.push_back(x);
        if (static_cast<int>(ms.size()) >= std::max(3, n - 1) && l->c->propose_members(ms) == change_error::ok)
          ++changes;
      }
    }
    cl.step_ms();
    if (s % 50 == 0) cl.check_log_matching();
  }
  // Heal everything: the group must elect a leader, commit a new entry, and every member must hold it.
  cl.net.heal();
  cl.net.set_faults(network_faults{0, 0, 1, 10});
  bool proposed = false;
  const cnode::etf::term final_value(std::int64_t{-1});
  auto final_index = [&]() -> index_t {
    for (const auto& e : cl.committed)
      if (e.data == final_value) return e.index;
    return 0;
  };
  auto holds_final = [&](const member& m) {
    const index_t f = final_index();
    return m.c && f && m.applied >= f;
  };
  std::vector<member_id> final_members;
  for (int s = 0; s < 20000 && cl.failure.empty(); ++s) {
    cl.step_ms();
    // A proposal to a leader that is deposed before it commits is lost (the client retries): again every 2 s.
    if (s % 2000 == 0) proposed = false;
    auto* l = cl.leader();
    if (!proposed && l) proposed = l->c->propose(final_value).has_value();
    if (!l) continue;
    final_members = l->c->members();
    bool all = true;
    for (const auto& id : final_members) all = all && holds_final(cl.members[id]);
    if (all) break;
  }
  cl.check_log_matching();
  if (cl.failure.empty()) {
    if (final_members.empty()) {
      std::string d = "after the heal no leader:";
      for (auto& [id, m] : cl.members) {
        d += "\n  " + id + (m.c ? " role " + std::to_string(static_cast<int>(m.c->current_role())) + " term " +
                                      std::to_string(m.c->current_term()) + " last " + std::to_string(m.c->last_index()) +
                                      "/" + std::to_string(m.c->term_at(m.c->last_index())) + " commit " +
                                      std::to_string(m.c->commit_index()) + " members"
                                : std::string(" down"));
        if (m.c)
          for (const auto& x : m.c->members()) d += " " + x;
      }
      cl.fail(d);
    }
    for (const auto& id : final_members) {
      auto& m = cl.members[id];
      if (!holds_final(m))
        cl.fail("after the heal " + id + " did not apply the final entry (" +
                (m.c ? "role " + std::to_string(static_cast<int>(m.c->current_role())) + " term " +
                           std::to_string(m.c->current_term()) + " log " + std::to_string(m.c->last_index()) +
                           " commit " + std::to_string(m.c->commit_index()) + " applied " + std::to_string(m.applied)
                     : std::string("down")) +
                ", proposed " + std::to_string(proposed) + ")");
    }
  }
  cluster::membership_changes += static_cast<std::uint64_t>(changes);
  INFO("seed " << seed << " (replay: CNODE_SEED=" << seed << " ./test_raft_core), " << n << " members, "
               << o.joiners << " joiners, " << changes << " membership changes");
  CHECK_MESSAGE(cl.failure.empty(), cl.failure);
}

}  // namespace

TEST_CASE("raft core: chaos runs keep Raft's safety properties and converge after the heal") {
  const std::uint64_t fixed = cnode::test::seed_from_env(0);
  if (fixed) {
    run_chaos(3, fixed, 4000);
    run_chaos(5, fixed, 4000);
    return;
  }
  // CI's size; CNODE_RAFT_RUNS=5000 for a longer run.
  const char* runs_env = std::getenv("CNODE_RAFT_RUNS");
  const std::uint64_t runs = runs_env ? std::strtoull(runs_env, nullptr, 10) : 300;
  for (std::uint64_t seed = 1; seed <= runs; ++seed) run_chaos(seed % 2 ? 3 : 5, seed, 6000);
}

TEST_CASE("raft core: chaos runs with snapshots, compaction and membership changes") {
  const std::uint64_t fixed = cnode::test::seed_from_env(0);
  const chaos_options o{2, 0.02};
  if (fixed) {
    run_chaos(3, fixed, 6000, o);
    run_chaos(5, fixed, 6000, o);
    return;
  }
  const char* runs_env = std::getenv("CNODE_RAFT_RUNS");
  const std::uint64_t runs = runs_env ? std::strtoull(runs_env, nullptr, 10) : 300;
  cluster::snapshot_installs = cluster::membership_changes = cluster::reads_confirmed = 0;
  cluster::learners_promoted = cluster::learners_timed_out = 0;
  for (std::uint64_t seed = 1; seed <= runs; ++seed) run_chaos(seed % 2 ? 3 : 5, seed, 6000, o);
  // The paths under test were taken: snapshots sent to members behind, servers added and removed.
  MESSAGE(cluster::snapshot_installs << " snapshot installs, " << cluster::membership_changes << " membership changes, "
                   << cluster::reads_confirmed << " reads confirmed, " << cluster::learners_promoted
                   << " learners promoted, " << cluster::learners_timed_out << " timed out");
  CHECK(cluster::learners_promoted > runs / 2);
  CHECK(cluster::snapshot_installs > runs / 10);
  CHECK(cluster::reads_confirmed > runs);
  CHECK(cluster::membership_changes > runs);
}

TEST_CASE("raft core: a single member leads and commits alone") {
  config c;
  c.self = "a@h";
  c.members = {"a@h"};
  core x(c);
  for (int i = 0; i < 30 && x.current_role() != role::leader; ++i) x.tick();
  REQUIRE(x.current_role() == role::leader);
  auto i = x.propose(cnode::etf::term(7));
  REQUIRE(i);
  auto r = x.take_ready();
  CHECK(r.to_apply.empty());  // nothing counts before it is durable: here, on its own disk
  REQUIRE(r.to_persist.size() == 2);
  x.persisted(r.to_persist.back().index, r.to_persist.back().term);
  r = x.take_ready();
  REQUIRE(r.to_apply.size() == 2);  // the no-op of the term, then ours
  CHECK(r.to_apply.back().data == cnode::etf::term(7));
  CHECK(x.commit_index() == *i);
}

TEST_CASE("raft core: pre-vote keeps a member that was cut off from deposing a healthy leader") {
  cluster cl(3, 42);
  for (int s = 0; s < 3000 && !cl.leader(); ++s) cl.step_ms();
  REQUIRE(cl.leader());
  const term_t t0 = cl.leader()->c->current_term();
  member_id lead = cl.leader()->c->cfg().self;
  member_id outcast = lead == cl.ids[0] ? cl.ids[1] : cl.ids[0];
  cl.net.partition({outcast}, cl.ids);
  for (int s = 0; s < 2000; ++s) cl.step_ms();  // many election timeouts of the outcast
  CHECK(cl.members[outcast].c->current_term() <= t0);  // pre-votes failed: its term did not grow
  cl.net.heal();
  for (int s = 0; s < 500; ++s) cl.step_ms();
  REQUIRE(cl.leader());
  CHECK(cl.leader()->c->cfg().self == lead);
  CHECK(cl.leader()->c->current_term() == t0);
  CHECK(cl.failure.empty());
}

TEST_CASE("raft core: pre-vote — a member that hears no one (its inbound cut, its outbound not) cannot depose an idle leader") {
  // Idle: the deaf member's log is as up to date as the leader's, so its pre-votes are only refused by the lease
  // (a vote request within an election timeout of hearing a leader is ignored). The leader itself must keep the
  // lease for the whole of its randomized election timeout, not only its first election_ticks.
  for (std::uint64_t seed : {1, 2, 3, 4, 5, 6, 7, 8}) {
    cluster cl(3, seed);
    for (int s = 0; s < 3000 && !cl.leader(); ++s) cl.step_ms();
    REQUIRE(cl.leader());
    for (int s = 0; s < 300; ++s) cl.step_ms();  // every member has the leader's no-op
    const term_t t0 = cl.leader()->c->current_term();
    member_id lead = cl.leader()->c->cfg().self;
    member_id deaf = lead == cl.ids[0] ? cl.ids[1] : cl.ids[0];
    for (auto& id : cl.ids)
      if (id != deaf) cl.net.cut(id, deaf, true);  // nothing reaches it; what it sends goes through
    for (int s = 0; s < 3000; ++s) cl.step_ms();
    CAPTURE(seed);
    REQUIRE(cl.leader());
    CHECK(cl.leader()->c->cfg().self == lead);
    CHECK(cl.leader()->c->current_term() == t0);
    cl.net.heal();
    for (int s = 0; s < 500; ++s) cl.step_ms();
    REQUIRE(cl.leader());
    CHECK(cl.leader()->c->current_term() == t0);
    CHECK(cl.failure.empty());
  }
}

TEST_CASE("raft core: without pre-vote, a leader in its lease ignores a deaf member's vote requests") {
  // The deaf member (its inbound cut) campaigns for ever higher terms; its vote requests reach the leader. Found by
  // integration/faults raft.prevote (--raft-test-no-pre-vote): the leader's election_elapsed_ runs to its randomized
  // election timeout, up to twice election_ticks, and in the second half the lease check (election_elapsed_ <
  // election_ticks) let a vote request's higher term depose a leader that heard from a majority all along.
  for (std::uint64_t seed : {1, 2, 3, 4, 5, 6, 7, 8}) {
    cluster cl(3, seed);
    cl.pre_vote = false;
    for (auto& id : cl.ids) cl.start(id);
    for (int s = 0; s < 3000 && !cl.leader(); ++s) cl.step_ms();
    REQUIRE(cl.leader());
    for (int s = 0; s < 300; ++s) cl.step_ms();
    const term_t t0 = cl.leader()->c->current_term();
    member_id lead = cl.leader()->c->cfg().self;
    member_id deaf = lead == cl.ids[0] ? cl.ids[1] : cl.ids[0];
    for (auto& id : cl.ids)
      if (id != deaf) cl.net.cut(id, deaf, true);
    for (int s = 0; s < 3000; ++s) cl.step_ms();
    CAPTURE(seed);
    CHECK(cl.members[deaf].c->current_term() > t0 + 3);  // it did campaign
    REQUIRE(cl.leader());
    CHECK(cl.leader()->c->cfg().self == lead);
    CHECK(cl.leader()->c->current_term() == t0);
    CHECK(cl.failure.empty());
  }
}

TEST_CASE("raft core: leadership transfer") {
  cluster cl(3, 7);
  for (int s = 0; s < 3000 && !cl.leader(); ++s) cl.step_ms();
  REQUIRE(cl.leader());
  member_id lead = cl.leader()->c->cfg().self;
  member_id target = lead == cl.ids[2] ? cl.ids[1] : cl.ids[2];
  REQUIRE(cl.leader()->c->transfer_leadership(target));
  for (int s = 0; s < 1000; ++s) cl.step_ms();
  REQUIRE(cl.leader());
  CHECK(cl.leader()->c->cfg().self == target);
  CHECK(cl.failure.empty());
}

TEST_CASE("raft core: ReadIndex — a leader cut off from the majority confirms no read, and fails it on stepping down") {
  cluster cl(3, 11);
  for (int s = 0; s < 3000 && !cl.leader(); ++s) cl.step_ms();
  REQUIRE(cl.leader());
  auto* l = cl.leader();
  // A read on a healthy leader is confirmed within a heartbeat round.
  REQUIRE(l->c->read_index(1));
  cl.reads[1] = cl.committed.size();
  for (int s = 0; s < 100 && cl.reads.count(1); ++s) cl.step_ms();
  CHECK(cl.reads.count(1) == 0);
  const auto confirmed = cluster::reads_confirmed;
  const member_id lead = l->c->cfg().self;
  cl.net.partition({lead}, cl.ids);
  REQUIRE(l->c->read_index(2));
  cl.reads[2] = cl.committed.size();
  for (int s = 0; s < 50; ++s) cl.step_ms();  // shorter than an election timeout: still leader, nothing confirmed
  CHECK(cl.members[lead].c->current_role() == role::leader);
  CHECK(cluster::reads_confirmed == confirmed);
  for (int s = 0; s < 1000 && cl.reads.count(2); ++s) cl.step_ms();
  CHECK(cl.reads.count(2) == 0);  // failed when check-quorum deposed it
  CHECK(cluster::reads_confirmed == confirmed);
  CHECK(cl.members[lead].c->current_role() != role::leader);
  CHECK(cl.failure.empty());
}

TEST_CASE("raft core: a leader that removes itself hands over; a new member is caught up by snapshot") {
  cluster cl(3, 5, 1);
  cl.compact_chance = 1.0;  // every member compacts whenever it can: the joiner can only be caught up by snapshot
  for (int s = 0; s < 3000 && !cl.leader(); ++s) cl.step_ms();
  REQUIRE(cl.leader());
  for (int i = 0; i < 20; ++i) {
    cl.leader()->c->propose(cnode::etf::term(std::int64_t{i}));
    cl.step_ms();
  }
  for (int s = 0; s < 200; ++s) cl.step_ms();
  const member_id joiner = cl.ids[3];
  CHECK(cl.members[joiner].applied == 0);  // not a member: nobody replicates to it
  auto ms = cl.leader()->c->members();
  ms.push_back(joiner);
  REQUIRE(cl.leader()->c->propose_members(ms) == change_error::ok);
  CHECK(cl.leader()->c->propose_members(cl.ids) == change_error::in_progress);  // one change at a time
  for (int s = 0; s < 1000 && (cl.members[joiner].applied < cl.leader()->c->commit_index() ||
                               !cl.leader()->c->is_member(joiner) || !cl.members[joiner].c->is_member(joiner));
       ++s)
    cl.step_ms();
  CHECK(cl.members[joiner].applied == cl.leader()->c->commit_index());
  CHECK(cluster::snapshot_installs > 0);
  CHECK(cl.members[joiner].c->is_member(joiner));
  // The leader removes itself: it steps down once that commits, and the other three elect one of them.
  const member_id old = cl.leader()->c->cfg().self;
  auto without = cl.leader()->c->members();
  std::erase(without, old);
  for (int s = 0; s < 200 && cl.leader()->c->propose_members(without) == change_error::in_progress; ++s) cl.step_ms();
  for (int s = 0; s < 2000 && (!cl.leader() || cl.leader()->c->cfg().self == old); ++s) cl.step_ms();
  REQUIRE(cl.leader());
  CHECK(cl.leader()->c->cfg().self != old);
  CHECK(cl.members[old].c->current_role() == role::follower);
  REQUIRE(cl.leader()->c->propose(cnode::etf::term(std::int64_t{99})));
  for (int s = 0; s < 500; ++s) cl.step_ms();
  CHECK(cl.members[joiner].applied == cl.leader()->c->commit_index());
  CHECK(cl.failure.empty());
}

namespace {
cluster& elect(cluster& cl) {
  for (int s = 0; s < 3000 && !cl.leader(); ++s) cl.step_ms();
  REQUIRE(cl.leader());
  return cl;
}

// Proposes `n` values one by one, each waited for; returns the ms the slowest took to commit (-1: one never did).
int commit_latency(cluster& cl, int n, std::int64_t base) {
  int worst = 0;
  for (int i = 0; i < n; ++i) {
    auto* l = cl.leader();
    if (!l) return -1;
    auto at = l->c->propose(cnode::etf::term(base + i));
    if (!at) return -1;
    int ms = 0;
    for (; ms < 2000 && cl.committed.size() < *at; ++ms) cl.step_ms();
    if (cl.committed.size() < *at) return -1;
    worst = std::max(worst, ms);
  }
  return worst;
}
}  // namespace

TEST_CASE("raft core: a new member catches up as a learner first; the group commits meanwhile without it") {
  cluster cl(3, 21, 1);
  elect(cl);
  for (int i = 0; i < 600; ++i) {  // a long log for the joiner to fetch
    cl.leader()->c->propose(cnode::etf::term(std::int64_t{i}));
    if (i % 50 == 0) cl.step_ms();
  }
  for (int s = 0; s < 300; ++s) cl.step_ms();
  const member_id lead = cl.leader()->c->cfg().self;
  const member_id joiner = cl.ids[3];
  // One follower down: without a learner phase the four-member group would need the joiner's acknowledgements
  // (3 of 4) while it is still fetching the log.
  const member_id down = lead == cl.ids[0] ? cl.ids[1] : cl.ids[0];
  cl.crash(down, 100000);
  // Delays of 1-5 ms on every link.
  cl.net.set_faults(network_faults{0, 0, 1, 5});
  auto ms = cl.leader()->c->members();
  ms.push_back(joiner);
  index_t at = 99;
  REQUIRE(cl.leader()->c->propose_members(ms, &at) == change_error::ok);
  CHECK(at == 0);  // a learner first: no configuration entry yet
  CHECK(cl.leader()->c->learners() == std::vector<member_id>{joiner});
  CHECK_FALSE(cl.leader()->c->is_member(joiner));
  CHECK(cl.leader()->c->propose_members(cl.initial) == change_error::in_progress);
  CHECK(cl.leader()->c->members().size() == 3);
  // Writes commit while it catches up (the leader and the one live follower are a majority of the three).
  const int worst = commit_latency(cl, 5, 10000);
  CHECK(worst >= 0);
  CHECK(worst < 100);
  for (int s = 0; s < 3000 && cl.outcomes.empty(); ++s) cl.step_ms();
  REQUIRE(cl.outcomes.size() == 1);
  CHECK(cl.outcomes[0].node == joiner);
  CHECK(cl.outcomes[0].what == ready::learner_outcome::promoted);
  CHECK(cl.outcomes[0].index > 600);
  for (int s = 0; s < 500 && cl.committed.size() < cl.outcomes[0].index; ++s) cl.step_ms();
  REQUIRE(cl.leader());
  CHECK(cl.leader()->c->is_member(joiner));
  CHECK(cl.leader()->c->learners().empty());
  CHECK(cl.members[joiner].c->is_member(joiner));
  // A voter now: with one member down the four need it, and it keeps up.
  CHECK(commit_latency(cl, 5, 20000) >= 0);
  CHECK(cl.members[joiner].applied + 5 >= cl.committed.size());
  CHECK(cl.failure.empty());
}

TEST_CASE("raft core: a learner that cannot catch up in time is not added; the configuration is unchanged") {
  cluster cl(3, 33, 1);
  elect(cl);
  for (int i = 0; i < 20; ++i) cl.leader()->c->propose(cnode::etf::term(std::int64_t{i}));
  for (int s = 0; s < 200; ++s) cl.step_ms();
  const member_id joiner = cl.ids[3];
  cl.crash(joiner, 100000);  // never answers
  auto before = cl.leader()->c->members();
  auto ms = before;
  ms.push_back(joiner);
  REQUIRE(cl.leader()->c->propose_members(ms) == change_error::ok);
  CHECK(commit_latency(cl, 3, 500) >= 0);  // the group goes on
  for (int s = 0; s < 5000 && cl.outcomes.empty(); ++s) cl.step_ms();
  REQUIRE(cl.outcomes.size() == 1);
  CHECK(cl.outcomes[0].what == ready::learner_outcome::timeout);
  REQUIRE(cl.leader());
  CHECK(cl.leader()->c->members() == before);
  CHECK(cl.leader()->c->learners().empty());
  // Another change may go on now.
  CHECK(cl.leader()->c->propose_members(ms) == change_error::ok);
  CHECK(cl.failure.empty());
}

TEST_CASE("raft core: a learner phase ends with the lead (lost_lead) and a new leader knows of no learner") {
  cluster cl(3, 44, 1);
  elect(cl);
  const member_id joiner = cl.ids[3];
  cl.crash(joiner, 100000);
  auto* l = cl.leader();
  const member_id lead = l->c->cfg().self;
  auto ms = l->c->members();
  ms.push_back(joiner);
  for (int s = 0; s < 200 && l->c->propose_members(ms) == change_error::in_progress; ++s) cl.step_ms();
  REQUIRE(cl.members[lead].c->learners().size() == 1);
  const member_id to = lead == cl.ids[0] ? cl.ids[1] : cl.ids[0];
  REQUIRE(cl.members[lead].c->transfer_leadership(to));
  for (int s = 0; s < 1000 && (!cl.leader() || cl.leader()->c->cfg().self == lead || cl.outcomes.empty()); ++s)
    cl.step_ms();
  REQUIRE(cl.leader());
  CHECK(cl.leader()->c->cfg().self == to);
  REQUIRE(cl.outcomes.size() == 1);
  CHECK(cl.outcomes[0].what == ready::learner_outcome::lost_lead);
  CHECK(cl.leader()->c->learners().empty());
  CHECK(cl.leader()->c->members().size() == 3);
  CHECK(cl.failure.empty());
}

TEST_CASE("raft core: a leader's unpersisted entries replaced by a new leader's leave one run to persist") {
  cluster cl(3, 55);
  cl.busy_disks = false;
  elect(cl);
  for (int s = 0; s < 200; ++s) cl.step_ms();
  auto& l = *cl.leader()->c;
  const index_t n = l.last_index();
  REQUIRE(l.commit_index() == n);
  (void)l.take_ready();
  for (int i = 0; i < 3; ++i) REQUIRE(l.propose(cnode::etf::term(std::int64_t{i})));  // N+1..N+3, not yet taken
  const member_id other = l.cfg().self == cl.ids[0] ? cl.ids[1] : cl.ids[0];
  message m;
  m.type = msg_type::append;
  m.from = other;
  m.to = l.cfg().self;
  m.term = l.current_term() + 1;
  m.prev_index = n;
  m.prev_term = l.term_at(n);
  m.entries = {entry{m.term, n + 1, cnode::etf::term(std::int64_t{777})}};
  m.commit = n;
  l.step(m);
  auto r = l.take_ready();
  REQUIRE(r.to_persist.size() == 1);
  CHECK(r.to_persist[0].index == n + 1);
  CHECK(r.to_persist[0].term == m.term);
}

namespace {
// A leader of three elected on a harness whose disks are never busy, everything committed and taken; `others` its
// two followers.
core& quiet_leader(cluster& cl, std::vector<member_id>& others) {
  cl.busy_disks = false;
  elect(cl);
  for (int s = 0; s < 200; ++s) cl.step_ms();
  auto& l = *cl.leader()->c;
  REQUIRE(l.commit_index() == l.last_index());
  REQUIRE(l.persisted_index() == l.last_index());
  (void)l.take_ready();
  for (const auto& id : cl.ids)
    if (id != l.cfg().self) others.push_back(id);
  return l;
}

message ack(const core& l, const member_id& from, index_t i) {
  message m;
  m.type = msg_type::append_reply;
  m.from = from;
  m.to = l.cfg().self;
  m.term = l.current_term();
  m.success = true;
  m.index = i;
  return m;
}
}  // namespace

TEST_CASE("raft core: a leader sends its appends before its own write and counts itself only once durable") {
  cluster cl(3, 66);
  std::vector<member_id> others;
  auto& l = quiet_leader(cl, others);
  const index_t n = l.last_index();
  REQUIRE(l.propose(cnode::etf::term(std::int64_t{1})) == n + 1);
  auto r = l.take_ready();
  REQUIRE(r.to_persist.size() == 1);
  CHECK(r.messages.empty());
  REQUIRE(r.send_now.size() == 2);  // an append to each follower, not waiting for the write
  for (const auto& m : r.send_now) {
    CHECK(m.type == msg_type::append);
    REQUIRE(m.entries.size() == 1);
    CHECK(m.entries[0].index == n + 1);
  }
  // One follower has it on disk, the leader not yet: one durable copy of three is no majority.
  l.step(ack(l, others[0], n + 1));
  CHECK(l.commit_index() == n);
  CHECK(l.take_ready().to_apply.empty());
  // The leader's write completes: two of three.
  l.persisted(n + 1, l.current_term());
  CHECK(l.persisted_index() == n + 1);
  CHECK(l.commit_index() == n + 1);
  r = l.take_ready();
  REQUIRE(r.to_apply.size() == 1);
  CHECK(r.to_apply[0].index == n + 1);
  // The other way round: both followers durable, the leader's write still running, is a majority too.
  REQUIRE(l.propose(cnode::etf::term(std::int64_t{2})) == n + 2);
  (void)l.take_ready();
  l.step(ack(l, others[0], n + 2));
  CHECK(l.commit_index() == n + 1);
  l.step(ack(l, others[1], n + 2));
  CHECK(l.commit_index() == n + 2);
  CHECK(l.persisted_index() == n + 1);
  CHECK(cl.failure.empty());
}

TEST_CASE("raft core: entries being written when a new leader replaces them never count as persisted") {
  cluster cl(3, 77);
  std::vector<member_id> others;
  auto& l = quiet_leader(cl, others);
  const index_t n = l.last_index();
  const term_t t = l.current_term();
  for (int i = 0; i < 3; ++i) REQUIRE(l.propose(cnode::etf::term(std::int64_t{i})));
  auto in_flight = l.take_ready();  // N+1..N+3 handed to the disk, not durable yet
  REQUIRE(in_flight.to_persist.size() == 3);
  // A new leader's append replaces them with one entry of its term.
  message m;
  m.type = msg_type::append;
  m.from = others[0];
  m.to = l.cfg().self;
  m.term = t + 1;
  m.prev_index = n;
  m.prev_term = l.term_at(n);
  m.entries = {entry{t + 1, n + 1, cnode::etf::term(std::int64_t{777})}};
  m.commit = n;
  l.step(m);
  CHECK(l.current_role() == role::follower);
  CHECK(l.last_index() == n + 1);
  CHECK(l.persisted_index() == n);
  auto r = l.take_ready();
  REQUIRE(r.to_persist.size() == 1);  // the storage truncates at N+1 and writes the new entry
  CHECK(r.to_persist[0].index == n + 1);
  CHECK(r.to_persist[0].term == t + 1);
  CHECK(r.messages.size() == 1);  // the acknowledgement, held for the write
  CHECK(r.send_now.empty());
  // The old write completes: its entries are gone, nothing of it counts.
  l.persisted(n + 3, t);
  CHECK(l.persisted_index() == n);
  l.persisted(n + 1, t);
  CHECK(l.persisted_index() == n);
  l.persisted(n + 1, t + 1);
  CHECK(l.persisted_index() == n + 1);
  CHECK(cl.failure.empty());
}
