// The raft service: one registered process per --raft-group, running the sans-I/O core (raft/core.hpp) with the
// KV state machine (raft/kv.hpp). Members talk over Erlang distribution: {'$raft', Group, Msg} to {Group, Node},
// sent with noconnect (a busy or missing connection never suspends the group's process; the tick keeps the
// connections up). Elixir calls any member with GenServer.call; a follower hands the call to the leader
// unchanged, and the leader replies to the caller directly once the command is committed and applied.
//
// This step keeps the log in memory (no --data-dir yet); locks, fencing, watches, membership changes and the
// WAL come next (docs/raft.md).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "cnode/distribution.hpp"
#include "cnode/gen.hpp"
#include "cnode/log.hpp"
#include "cnode/service.hpp"
#include "etf/format.hpp"
#include "raft/core.hpp"
#include "raft/kv.hpp"

namespace cnode::raft {

namespace {

using etf::atom;
using etf::term;

term a(const char* s) { return term(atom(s)); }

// ---- raft messages as terms ----
term encode(const message& m) {
  std::vector<term> es;
  es.reserve(m.entries.size());
  for (const auto& e : m.entries) es.push_back(term::tuple({term(e.term), term(e.index), e.data}));
  return term::tuple({term(static_cast<std::int64_t>(m.type)), term(m.term), term(m.last_index), term(m.last_term),
                      term(m.prev_index), term(m.prev_term), term(m.commit), term(m.index), term(m.granted),
                      term(m.success), term(m.force), term::list(std::move(es))});
}

bool u64(const term& t, std::uint64_t& out) {
  if (!t.is_small() || t.small() < 0) return false;
  out = static_cast<std::uint64_t>(t.small());
  return true;
}

bool boolean(const term& t, bool& out) {
  if (t.is_atom(atom::true_())) out = true;
  else if (t.is_atom(atom::false_())) out = false;
  else return false;
  return true;
}

// Total over any term: a peer's garbage is dropped, never a crash.
std::optional<message> decode(const term& t, const std::string& from, const std::string& to) {
  if (!t.is_tuple(12) || !t.element(0).is_small()) return std::nullopt;
  const auto type = t.element(0).small();
  if (type < 0 || type > static_cast<std::int64_t>(msg_type::timeout_now)) return std::nullopt;
  message m;
  m.type = static_cast<msg_type>(type);
  m.from = from;
  m.to = to;
  if (!u64(t.element(1), m.term) || !u64(t.element(2), m.last_index) || !u64(t.element(3), m.last_term) ||
      !u64(t.element(4), m.prev_index) || !u64(t.element(5), m.prev_term) || !u64(t.element(6), m.commit) ||
      !u64(t.element(7), m.index) || !boolean(t.element(8), m.granted) || !boolean(t.element(9), m.success) ||
      !boolean(t.element(10), m.force))
    return std::nullopt;
  std::vector<term> es;
  term tail;
  if (!t.element(11).list_to_vector(es, &tail) || !tail.is_nil()) return std::nullopt;
  for (const auto& e : es) {
    entry x;
    if (!e.is_tuple(3) || !u64(e.element(0), x.term) || !u64(e.element(1), x.index)) return std::nullopt;
    x.data = e.element(2);
    m.entries.push_back(std::move(x));
  }
  return m;
}

struct group_config {
  std::string name;
  std::vector<std::string> members;
};

struct timing {
  int election_ms = 1000, heartbeat_ms = 100, request_timeout_ms = 5000;
};

struct pending_call {
  term from;
  term_t in_term = 0;
  std::chrono::steady_clock::time_point deadline;
};

struct waiting_call {  // no leader known yet
  term from, request;
  std::chrono::steady_clock::time_point deadline;
};

class group_process {
 public:
  group_process(group_config g, timing t, distribution& d) : g_(std::move(g)), t_(t), d_(d) {}

  asio::awaitable<void> run(process& self) {
    config c;
    c.self = self.node().name();
    c.members = g_.members;
    c.heartbeat_ticks = 1;
    c.election_ticks = std::max(2, t_.election_ms / std::max(1, t_.heartbeat_ms));
    c.seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    core_.emplace(c);
    keep_connected(self);
    auto next_tick = clock::now() + std::chrono::milliseconds(t_.heartbeat_ms);
    for (;;) {
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - clock::now());
      auto m = co_await self.receive(std::max(wait, std::chrono::milliseconds(0)));
      if (m) handle(self, *m);
      if (clock::now() >= next_tick) {
        core_->tick();
        next_tick += std::chrono::milliseconds(t_.heartbeat_ms);
        if (next_tick < clock::now()) next_tick = clock::now() + std::chrono::milliseconds(t_.heartbeat_ms);
        expire(self);
        if (++ticks_ % 10 == 0) keep_connected(self);
      }
      flush(self);
    }
  }

  term status() const {
    std::vector<term> ms;
    for (const auto& m : g_.members) ms.emplace_back(atom(m));
    static const char* roles[] = {"follower", "pre_candidate", "candidate", "leader"};
    auto l = core_->leader();
    return term::map({{a("role"), a(roles[static_cast<int>(core_->current_role())])},
                      {a("term"), term(core_->current_term())},
                      {a("leader"), l ? term(atom(*l)) : a("nil")},
                      {a("commit_index"), term(core_->commit_index())},
                      {a("last_applied"), term(last_applied_)},
                      {a("last_index"), term(core_->last_index())},
                      {a("members"), term::list(std::move(ms))},
                      {a("keys"), term(kv_.size())}});
  }

  using clock = std::chrono::steady_clock;

 private:
  void keep_connected(process& self) {
    // Raft's sends are noconnect: the connections to the members are brought up here, out of the group's way.
    auto up = d_.nodes(true, true);
    for (const auto& m : g_.members) {
      if (m == self.node().name()) continue;
      const atom n(m);
      if (std::find(up.begin(), up.end(), n) != up.end()) continue;
      asio::co_spawn(self.node().get_executor(), [&d = d_, n]() -> asio::awaitable<void> { co_await d.connect(n); },
                     asio::detached);
    }
  }

  void handle(process& self, const term& m) {
    gen::incoming_call c;
    if (gen::is_call(m, c)) return handle_call(self, m, c);
    // {'$raft', Group, FromNode, Msg}
    if (m.is_tuple(4) && m.element(0).is_atom(atom("$raft")) && m.element(2).is_atom()) {
      const std::string from(m.element(2).atom_value().text());
      if (std::find(g_.members.begin(), g_.members.end(), from) == g_.members.end()) return;
      if (auto msg = decode(m.element(3), from, self.node().name())) core_->step(*msg);
    }
  }

  void handle_call(process& self, const term& raw, const gen::incoming_call& c) {
    const term& r = c.request;
    if (r.is_atom(atom("status"))) return gen::reply(self, c.from, status());
    if (r.is_tuple(3) && r.element(0).is_atom(atom("get")) && r.element(2).is_atom(atom("local")))
      return gen::reply(self, c.from, kv_.get(r.element(1)));
    if (!kv_machine::is_command(r)) return gen::reply(self, c.from, term::tuple({a("error"), a("badarg")}));
    const auto deadline = clock::now() + std::chrono::milliseconds(t_.request_timeout_ms);
    if (core_->current_role() == role::leader) {
      auto idx = core_->propose(r);
      if (!idx) return gen::reply(self, c.from, term::tuple({a("error"), a("unavailable")}));
      pending_[*idx] = pending_call{c.from, core_->current_term(), deadline};
      return;
    }
    if (auto l = core_->leader()) {
      // The call goes to the leader as it is: its From is the caller's, so the leader's reply reaches the caller.
      self.send_noconnect(term::tuple({term(atom(g_.name)), term(atom(*l))}), raw);
      return;
    }
    waiting_.push_back({c.from, r, deadline});
  }

  void flush(process& self) {
    auto rd = core_->take_ready();
    for (const auto& msg : rd.messages) {
      term wire = term::tuple({a("$raft"), term(atom(g_.name)), term(self.node().name_atom()), encode(msg)});
      self.send_noconnect(term::tuple({term(atom(g_.name)), term(atom(msg.to))}), std::move(wire));
    }
    for (const auto& e : rd.to_apply) {
      term result = e.data.is_nil() ? term() : kv_.apply(e.data);
      last_applied_ = e.index;
      auto it = pending_.find(e.index);
      if (it == pending_.end()) continue;
      // Our proposal at this index was committed only if the entry is ours (same term); else it was replaced.
      if (it->second.in_term == e.term) gen::reply(self, it->second.from, std::move(result));
      else gen::reply(self, it->second.from, term::tuple({a("error"), a("unavailable")}));
      pending_.erase(it);
    }
    // Calls that waited for a leader go on once there is one.
    if (!waiting_.empty() && core_->leader()) {
      auto w = std::move(waiting_);
      waiting_.clear();
      for (auto& x : w) {
        term call = term::tuple({a("$gen_call"), x.from, x.request});
        gen::incoming_call c{x.from, x.request};
        handle_call(self, call, c);
      }
    }
  }

  void expire(process& self) {
    const auto now = clock::now();
    const term unavailable = term::tuple({a("error"), a("unavailable")});
    for (auto it = pending_.begin(); it != pending_.end();) {
      // A proposal of a term that is over, or past its deadline, may or may not commit: the caller is told so.
      if (it->second.deadline <= now || (core_->current_role() != role::leader && it->second.in_term != core_->current_term())) {
        gen::reply(self, it->second.from, unavailable);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    std::erase_if(waiting_, [&](const waiting_call& w) {
      if (w.deadline > now) return false;
      gen::reply(self, w.from, unavailable);
      return true;
    });
  }

  group_config g_;
  timing t_;
  distribution& d_;
  std::optional<core> core_;
  kv_machine kv_;
  index_t last_applied_ = 0;
  std::map<index_t, pending_call> pending_;
  std::vector<waiting_call> waiting_;
  std::uint64_t ticks_ = 0;
};

class raft_service final : public cnode::service {
 public:
  std::string_view name() const override { return "raft"; }

  void add_options(option_list& o) override {
    o.add("--raft-group", "NAME=N1,N2,N3", "run a Raft group NAME of these member nodes, registered as NAME (repeatable)",
          [this](const std::string& v) -> std::string {
            auto eq = v.find('=');
            if (eq == std::string::npos || eq == 0) return "NAME=NODE1,NODE2,... ";
            group_config g;
            g.name = v.substr(0, eq);
            std::string rest = v.substr(eq + 1);
            for (std::size_t p = 0; p <= rest.size();) {
              auto c = rest.find(',', p);
              std::string m = rest.substr(p, c == std::string::npos ? std::string::npos : c - p);
              if (!m.empty()) {
                if (m.find('@') == std::string::npos) return "member '" + m + "' is not NAME@HOST";
                g.members.push_back(m);
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
  }

  asio::awaitable<void> start(service_context& ctx) override {
    for (auto& g : groups_) {
      if (std::find(g.members.begin(), g.members.end(), ctx.n.name()) == g.members.end())
        throw std::runtime_error("raft group " + g.name + ": this node (" + ctx.n.name() + ") is not a member");
      auto gp = std::make_shared<group_process>(g, t_, ctx.d);
      procs_.push_back(gp);
      if (!ctx.spawn_registered(atom(g.name), [gp](process& self) -> asio::awaitable<void> { co_await gp->run(self); }))
        throw std::runtime_error("raft group " + g.name + ": the name is taken");
      log::info("raft: group {} with {} members", g.name, g.members.size());
    }
    co_return;
  }

  term status() const override {
    std::vector<std::pair<term, term>> v;
    for (const auto& g : groups_) v.emplace_back(term(atom(g.name)), term::list({}));
    return term::map({{a("groups"), term::map(std::move(v))}});
  }

 private:
  std::vector<group_config> groups_;
  timing t_;
  std::vector<std::shared_ptr<group_process>> procs_;
};

}  // namespace

std::unique_ptr<cnode::service> make_service() { return std::make_unique<raft_service>(); }

}  // namespace cnode::raft
