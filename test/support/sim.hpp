// The shared deterministic harness: a manual clock and a seeded simulated network that drops, duplicates, delays
// (so reorders) and partitions messages, one way or both. Everything is driven by the test; a failing run is
// replayed from its seed. Models: NuRaft's tests/unit/fake_network.hxx, etcd raft's rafttest.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace cnode::test {

class manual_clock {
 public:
  using duration = std::chrono::milliseconds;
  std::int64_t now_ms() const noexcept { return now_; }
  void advance(std::int64_t ms) noexcept { now_ += ms; }

 private:
  std::int64_t now_ = 0;
};

struct network_faults {
  double drop = 0.0;       // chance a message is lost
  double duplicate = 0.0;  // chance it is delivered twice
  std::int64_t min_delay_ms = 1, max_delay_ms = 10;  // uniform; unequal delays reorder
};

// Messages of type Msg between endpoints named by Id (a node name, an index).
template <typename Id, typename Msg>
class sim_network {
 public:
  struct envelope {
    Id from, to;
    Msg msg;
    std::int64_t at;     // delivery time
    std::uint64_t seq;   // ties in send order
  };

  explicit sim_network(std::uint64_t seed, network_faults f = {}) : rng_(seed), faults_(f) {}

  void set_faults(network_faults f) { faults_ = f; }
  // Messages from a to b are lost until heal (both ways unless one_way).
  void cut(const Id& a, const Id& b, bool one_way = false) {
    cuts_.insert({a, b});
    if (!one_way) cuts_.insert({b, a});
  }
  // Every endpoint in `side` cut from every endpoint not in it (among `all`).
  void partition(const std::vector<Id>& side, const std::vector<Id>& all) {
    for (const auto& a : side)
      for (const auto& b : all)
        if (std::find(side.begin(), side.end(), b) == side.end()) cut(a, b);
  }
  void heal() { cuts_.clear(); }
  bool is_cut(const Id& a, const Id& b) const { return cuts_.count({a, b}) != 0; }

  void send(const Id& from, const Id& to, Msg m, std::int64_t now) {
    if (is_cut(from, to) || chance(faults_.drop)) return;
    const int copies = chance(faults_.duplicate) ? 2 : 1;
    for (int i = 0; i < copies; ++i) queue_.push_back({from, to, m, now + delay(), next_seq_++});
  }

  // The messages due by `now`, in delivery order. A cut made after sending also loses what is in flight.
  std::vector<envelope> due(std::int64_t now) {
    std::vector<envelope> out, keep;
    for (auto& e : queue_) (e.at <= now ? out : keep).push_back(std::move(e));
    queue_ = std::move(keep);
    std::sort(out.begin(), out.end(), [](const envelope& a, const envelope& b) {
      return a.at != b.at ? a.at < b.at : a.seq < b.seq;
    });
    std::vector<envelope> delivered;
    for (auto& e : out)
      if (!is_cut(e.from, e.to)) delivered.push_back(std::move(e));
    return delivered;
  }
  std::size_t in_flight() const noexcept { return queue_.size(); }
  // Messages to or from a crashed endpoint vanish.
  void drop_endpoint(const Id& id) {
    std::erase_if(queue_, [&](const envelope& e) { return e.from == id || e.to == id; });
  }

  std::mt19937_64& rng() noexcept { return rng_; }
  bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

 private:
  std::int64_t delay() {
    return std::uniform_int_distribution<std::int64_t>(faults_.min_delay_ms, faults_.max_delay_ms)(rng_);
  }
  std::mt19937_64 rng_;
  network_faults faults_;
  std::set<std::pair<Id, Id>> cuts_;
  std::vector<envelope> queue_;
  std::uint64_t next_seq_ = 0;
};

// The seed of a test run: CNODE_SEED from the environment, else `fallback`; printed so a failure replays.
std::uint64_t seed_from_env(std::uint64_t fallback);

}  // namespace cnode::test
