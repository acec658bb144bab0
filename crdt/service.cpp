// The `crdt` service: options, start (reading the state back with --data-dir), stop (the state written and the
// last intervals sent), metrics and the HTTP status. The process itself is crdt/replica.cpp.
#include <boost/asio/this_coro.hpp>

#include "cnode/distribution.hpp"
#include "cnode/log.hpp"
#include "cnode/oneshot.hpp"
#include "cnode/service.hpp"
#include "crdt/replica.hpp"

namespace cnode::crdt {

namespace {

term A(const char* s) { return term(atom(s)); }

std::function<std::string(const std::string&)> integer_option(std::int64_t& field, std::int64_t min, std::int64_t max,
                                                              const char* what) {
  return [&field, min, max, what](const std::string& v) -> std::string {
    try {
      std::size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used != v.size() || x < min || x > max)
        return std::string(what) + " from " + std::to_string(min) + " to " + std::to_string(max);
      field = x;
      return {};
    } catch (const std::exception&) {
      return std::string(what);
    }
  };
}

class crdt_service final : public cnode::service {
 public:
  std::string_view name() const override { return "crdt"; }

  void add_options(option_list& o) override {
    o.add("--crdt", "N1,N2,...", "run the CRDT replica :crdt with these replicas (the list may name this node)",
          [this](const std::string& v) -> std::string {
            enabled_ = true;
            for (std::size_t p = 0; p <= v.size();) {
              auto c = v.find(',', p);
              std::string m = v.substr(p, c == std::string::npos ? std::string::npos : c - p);
              if (!m.empty()) {
                if (m.find('@') == std::string::npos) return "replica '" + m + "' is not NAME@HOST";
                cfg_.replicas.push_back(m);
              }
              if (c == std::string::npos) break;
              p = c + 1;
            }
            return {};
          });
    o.add("--crdt-sync-ms", "MS", "the CRDT anti-entropy interval (default: 200)",
          integer_option(sync_ms_, 1, 3'600'000, "milliseconds"));
    o.add("--crdt-max-clock-offset-ms", "MS",
          "a replica's timestamp further ahead of this node's clock is logged and not taken into it (default: 60000)",
          integer_option(cfg_.max_clock_offset_ms, 1, INT64_MAX / 4, "milliseconds"));
    o.add("--crdt-test-clock-offset-ms", "MS", "FOR TESTS ONLY: shift this node's CRDT clock by MS (may be negative)",
          integer_option(cfg_.clock_offset_ms, -(std::int64_t{1} << 50), std::int64_t{1} << 50, "milliseconds"));
  }

  asio::awaitable<void> start(service_context& ctx) override {
    if (!enabled_) co_return;
    cfg_.sync_ms = static_cast<int>(sync_ms_);
    std::unique_ptr<state_dir> dir;
    std::optional<snapshot> restored;
    if (ctx.data_dir) {
      dir = std::make_unique<state_dir>(*ctx.data_dir / "crdt");  // throws with a sentence
      restored = dir->load();                                     // throws with a sentence for a bad file
    }
    const bool persistent = dir != nullptr;
    replica_ = std::make_shared<replica>(cfg_, ctx.d, std::move(dir), std::move(restored));
    replica_->prepare(ctx.n.name_atom());
    auto r = replica_;
    if (!ctx.spawn_registered(atom("crdt"), [r](process& self) -> asio::awaitable<void> { co_await r->run(self); }))
      throw std::runtime_error("the name crdt is taken");
    node_ = &ctx.n;
    if (cfg_.clock_offset_ms != 0)
      log::warning("crdt: the clock is shifted by {} ms (--crdt-test-clock-offset-ms, for tests only)",
                   cfg_.clock_offset_ms);
    log::info("crdt: replica {} (writer {}) with {} listed replicas, sync every {} ms, {}", ctx.n.name(),
              replica_->writer().text(), cfg_.replicas.size(), cfg_.sync_ms,
              persistent ? "state in " + (*ctx.data_dir / "crdt").string() : std::string("state in memory only"));
  }

  asio::awaitable<void> stop(clock::time_point deadline) override {
    if (!replica_) co_return;
    oneshot<bool> done(co_await asio::this_coro::executor);
    replica_->request_stop(done);
    node_->send({}, term(atom("crdt")), A("$crdt_stop"));
    if (!co_await done.wait(deadline)) log::warning("crdt: the last state write did not finish before the deadline");
  }

  void metrics(metrics_sink& m) const override {
    if (!replica_) return;
    const auto& s = replica_->stats();
    auto c = [&](const char* name, const char* help, const std::atomic<std::uint64_t>& v) {
      m.counter(name, help, static_cast<double>(v.load(std::memory_order_relaxed)));
    };
    auto g = [&](const char* name, const char* help, const std::atomic<std::uint64_t>& v) {
      m.gauge(name, help, static_cast<double>(v.load(std::memory_order_relaxed)));
    };
    c("cnode_crdt_writes_total", "Local writes (counter_add, set_add, map_put, ...) taken.", s.writes);
    c("cnode_crdt_reads_total", "Local reads (value, map_get).", s.reads);
    c("cnode_crdt_bad_requests_total", "Requests answered {:error, :badarg}.", s.bad_requests);
    c("cnode_crdt_wrong_type_total", "Requests answered {:error, {:wrong_type, type}}.", s.wrong_type);
    c("cnode_crdt_syncs_sent_total", "Anti-entropy messages sent to other replicas.", s.syncs_sent);
    c("cnode_crdt_full_states_sent_total", "Of those, full states (a new, restarted or far-behind replica).",
      s.full_states_sent);
    c("cnode_crdt_syncs_received_total", "Anti-entropy messages received.", s.syncs_received);
    c("cnode_crdt_merges_changed_total", "Received messages that changed this replica's state.", s.merges_changed);
    c("cnode_crdt_malformed_total", "Messages dropped as neither requests nor well-formed replica messages.",
      s.malformed);
    c("cnode_crdt_far_ahead_total", "Merged messages with a timestamp beyond --crdt-max-clock-offset-ms.",
      s.far_ahead);
    c("cnode_crdt_type_conflicts_total", "Names another replica created with another type.", s.conflicts);
    c("cnode_crdt_busy_skips_total", "Sync rounds a peer was skipped for a connection over its busy limit.",
      s.busy_skips);
    c("cnode_crdt_notifications_total", "{:crdt_changed, ...} messages sent to subscribers.", s.notifications);
    c("cnode_crdt_persists_total", "State writes to --data-dir.", s.persists);
    c("cnode_crdt_persist_failures_total", "State writes that failed (sends are held until one succeeds).",
      s.persist_failures);
    g("cnode_crdt_state_bytes", "Size of the last state written to --data-dir.", s.persisted_bytes);
    g("cnode_crdt_names", "Names (objects) held.", s.names);
    g("cnode_crdt_peers", "Replicas this replica syncs with.", s.peers);
    g("cnode_crdt_peers_in_contact", "Of those, heard from since their connection came up.", s.in_contact);
    g("cnode_crdt_buffered_intervals", "Delta intervals kept for replicas that have not acked them.", s.buffered);
    g("cnode_crdt_subscribers", "Processes subscribed to a name.", s.subscribers);
  }

  term status() const override {
    if (!replica_) return term::map({{A("enabled"), term(false)}});
    const auto& s = replica_->stats();
    return term::map({{A("enabled"), term(true)},
                      {A("writer"), term(replica_->writer())},
                      {A("sync_ms"), term(cfg_.sync_ms)},
                      {A("persistent"), term(replica_->persistent())},
                      {A("names"), term(s.names.load())},
                      {A("peers"), term(s.peers.load())},
                      {A("peers_in_contact"), term(s.in_contact.load())},
                      {A("buffered_intervals"), term(s.buffered.load())}});
  }

 private:
  bool enabled_ = false;
  std::int64_t sync_ms_ = 200;
  replica_config cfg_;
  std::shared_ptr<replica> replica_;
  node* node_ = nullptr;
};

}  // namespace

std::unique_ptr<cnode::service> make_service() { return std::make_unique<crdt_service>(); }

}  // namespace cnode::crdt
