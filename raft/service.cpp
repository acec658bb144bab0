// The raft service: one registered group process (raft/group.hpp) per --raft-group, its options, a handover of
// leadership on stop, metrics and status.
#include "cnode/distribution.hpp"
#include "cnode/gen_server.hpp"
#include "cnode/log.hpp"
#include "cnode/service.hpp"
#include "raft/group.hpp"

namespace cnode::raft {

namespace {

using etf::atom;
using etf::term;

term a(const char* s) { return term(atom(s)); }

class raft_service final : public cnode::service {
 public:
  std::string_view name() const override { return "raft"; }

  void add_options(option_list& o) override {
    o.add("--raft-group", "NAME=N1,N2,N3",
          "run a Raft group NAME of these member nodes, registered as NAME (repeatable; a node not in the list joins "
          "the group and waits for {:add_member, node})",
          [this](const std::string& v) -> std::string {
            auto eq = v.find('=');
            if (eq == std::string::npos || eq == 0) return "NAME=NODE1,NODE2,... ";
            group_config g;
            g.name = v.substr(0, eq);
            for (const auto& x : groups_)
              if (x.name == g.name) return "group " + g.name + " given twice";
            std::string rest = v.substr(eq + 1);
            for (std::size_t p = 0; p <= rest.size();) {
              auto c = rest.find(',', p);
              std::string m = rest.substr(p, c == std::string::npos ? std::string::npos : c - p);
              if (!m.empty()) {
                if (m.find('@') == std::string::npos) return "member '" + m + "' is not NAME@HOST";
                if (std::find(g.members.begin(), g.members.end(), m) == g.members.end()) g.members.push_back(m);
              }
              if (c == std::string::npos) break;
              p = c + 1;
            }
            if (g.members.empty()) return "a group needs members";
            groups_.push_back(std::move(g));
            return {};
          });
    auto ms = [](int& field, int min) {
      return [&field, min](const std::string& v) -> std::string {
        try {
          int x = std::stoi(v);
          if (x < min) return "at least " + std::to_string(min);
          field = x;
          return {};
        } catch (const std::exception&) {
          return "a number of milliseconds";
        }
      };
    };
    o.add("--raft-election-ms", "MS", "election timeout, randomized x1-2 (default: 1000)", ms(t_.election_ms, 10));
    o.add("--raft-heartbeat-ms", "MS", "leader heartbeat interval (default: 100)", ms(t_.heartbeat_ms, 1));
    o.add("--raft-request-timeout-ms", "MS", "answer {:error, :unavailable} after this (default: 5000)",
          ms(t_.request_timeout_ms, 1));
    o.add("--raft-test-no-pre-vote", "",
          "for tests only: campaign without a pre-vote round (shows what pre-vote prevents; integration/faults)",
          [this](const std::string&) -> std::string {
            t_.pre_vote = false;
            return {};
          });
    o.add("--raft-trace", "DIR",
          "write a timeline of each group's events to DIR/<node>-<group>.trace (diagnostics: bench/raft/trace_report.py)",
          [this](const std::string& v) -> std::string {
            if (v.empty()) return "a directory";
            trace_dir_ = v;
            return {};
          });
    o.add("--raft-snapshot-entries", "N", "applied entries between snapshots of the state (default: 4096)",
          [this](const std::string& v) -> std::string {
            try {
              auto x = std::stoull(v);
              if (x < 1) return "at least 1";
              t_.snapshot_entries = x;
              return {};
            } catch (const std::exception&) {
              return "a number of entries";
            }
          });
  }

  asio::awaitable<void> start(service_context& ctx) override {
    n_ = &ctx.n;
    const bool global = !ctx.hidden && ctx.services.find("global") != nullptr;
    for (auto& g : groups_) {
      const bool member = std::find(g.members.begin(), g.members.end(), ctx.n.name()) != g.members.end();
      std::unique_ptr<group_storage> st;
      recovered rec;
      std::shared_ptr<tracer> trace;
      if (!trace_dir_.empty()) {
        trace = tracer::open(trace_dir_, ctx.n.name(), g.name);
        if (!trace) throw std::runtime_error("raft group " + g.name + ": cannot write a trace in " + trace_dir_);
      }
      if (ctx.data_dir) {
        const auto dir = *ctx.data_dir / "raft" / g.name;
        storage_failure why;
        auto s = storage::open(dir, rec, why);
        if (!s) throw std::runtime_error("raft group " + g.name + ": " + why.message());
        log::info("raft: group {}: log in {} (snapshot at {}, {} entries after it)", g.name, dir.string(),
                  rec.snap ? rec.snap->meta.index : 0, rec.log.size());
        st = make_durable_storage(std::move(s), trace);
      }
      auto gp = std::make_shared<group_process>(g, t_, ctx.d, ctx.functions, global, std::move(st), std::move(rec));
      gp->set_trace(trace);
      procs_.push_back(gp);
      auto pid =
          ctx.spawn_registered(atom(g.name), [gp](process& self) -> asio::awaitable<void> { co_await gp->run(self); });
      if (!pid) throw std::runtime_error("raft group " + g.name + ": the name is taken");
      pids_.push_back(*pid);
      if (member) log::info("raft: group {} with {} members", g.name, g.members.size());
      else log::info("raft: group {}: this node joins ({} members so far); add it with {{:add_member, :\"{}\"}}", g.name,
                     g.members.size(), ctx.n.name());
    }
    co_return;
  }

  // A leader hands its leadership over before the node goes (the others need not wait an election timeout).
  asio::awaitable<void> stop(clock::time_point deadline) override {
    if (pids_.empty() || !n_) co_return;
    auto pids = pids_;
    std::function<asio::awaitable<term>(process&)> handover = [pids](process& self) -> asio::awaitable<term> {
      for (const auto& p : pids) {
        const term req = a("$raft_handover");
        co_await gen::call(self, p, req, std::chrono::milliseconds(3000));
      }
      co_return a("ok");
    };
    co_await run_in_process(*n_, std::move(handover), deadline);
  }

  void metrics(metrics_sink& m) const override {
    for (const auto& gp : procs_) {
      const auto& s = gp->stats();
      const metrics_sink::labels l{{"group", gp->config().name}};
      m.gauge("cnode_raft_leader", "1 while this member leads the group.", s.leader ? 1 : 0, l);
      m.gauge("cnode_raft_term", "The member's current term.", static_cast<double>(s.term.load()), l);
      m.gauge("cnode_raft_commit_index", "The highest index known committed.", static_cast<double>(s.commit.load()), l);
      m.gauge("cnode_raft_applied_index", "The highest index applied to the state machine.",
              static_cast<double>(s.applied.load()), l);
      m.gauge("cnode_raft_last_index", "The last index in the member's log.", static_cast<double>(s.last_index.load()), l);
      m.gauge("cnode_raft_snapshot_index", "The index of the newest snapshot.",
              static_cast<double>(s.snapshot_index.load()), l);
      m.gauge("cnode_raft_keys", "Keys in the KV state.", static_cast<double>(s.keys.load()), l);
      m.gauge("cnode_raft_locks", "Locks held.", static_cast<double>(s.locks.load()), l);
      m.counter("cnode_raft_proposals_total", "Commands this member proposed as leader.",
                static_cast<double>(s.proposals.load()), l);
      m.counter("cnode_raft_reads_total", "Linearizable reads this member served as leader.",
                static_cast<double>(s.reads.load()), l);
      m.counter("cnode_raft_forwarded_total", "Calls handed on to the leader.", static_cast<double>(s.forwarded.load()), l);
      m.counter("cnode_raft_unavailable_total", "Calls answered {error, unavailable}.",
                static_cast<double>(s.unavailable.load()), l);
      m.counter("cnode_raft_snapshots_sent_total", "Snapshots sent to members behind.",
                static_cast<double>(s.snapshots_sent.load()), l);
    }
  }

  term status() const override {
    static const char* roles[] = {"follower", "pre_candidate", "candidate", "leader"};
    std::vector<std::pair<term, term>> v;
    for (const auto& gp : procs_) {
      const auto& s = gp->stats();
      v.emplace_back(term(atom(gp->config().name)),
                     term::map({{a("role"), a(roles[std::clamp(s.role.load(), 0, 3)])},
                                {a("term"), term(s.term.load())},
                                {a("commit_index"), term(s.commit.load())},
                                {a("last_applied"), term(s.applied.load())}}));
    }
    return term::map({{a("groups"), term::map(std::move(v))}});
  }

 private:
  std::vector<group_config> groups_;
  timing t_;
  node* n_ = nullptr;
  std::vector<std::shared_ptr<group_process>> procs_;
  std::string trace_dir_;
  std::vector<term> pids_;
};

}  // namespace

std::unique_ptr<cnode::service> make_service() { return std::make_unique<raft_service>(); }

}  // namespace cnode::raft
