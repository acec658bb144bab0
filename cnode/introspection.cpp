// What observer-style tools ask any node over rpc, answered with cnode's own figures: erlang:memory/0,1,
// erlang:system_info/1 (the common keys), erlang:statistics/1 (runtime, wall_clock, reductions as messages
// handled, run_queue) and erlang:process_info/1,2 for this node's pids.
#include <sys/resource.h>

#include <thread>

#include "cnode/builtins.hpp"
#include "cnode/metrics.hpp"
#include "cnode/oneshot.hpp"

#ifndef CNODE_VERSION
#define CNODE_VERSION "0.0.0"
#endif

namespace cnode {

namespace {

term kv(const char* k, term v) { return term::tuple({term(atom(k)), std::move(v)}); }

term badarg() { return term(atom("badarg")); }

// "since last call" for statistics/1, per node.
struct since_last {
  std::mutex mu;
  std::int64_t runtime_ms = 0, wall_ms = 0;
  std::uint64_t reductions = 0;
};

std::int64_t cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& t) { return static_cast<std::int64_t>(t.tv_sec) * 1000 + t.tv_usec / 1000; };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}

term memory_list(node& n) {
  auto m = memory(n);
  return term::list({kv("total", term(m.total)), kv("processes", term(m.processes)),
                     kv("processes_used", term(m.processes)), kv("system", term(m.system)), kv("atom", term(m.atom)),
                     kv("atom_used", term(m.atom)), kv("binary", term(m.binary)), kv("code", term(std::uint64_t{0})),
                     kv("ets", term(std::uint64_t{0}))});
}

std::optional<term> memory_of(const term& all, const term& key) {
  if (!key.is_atom()) return std::nullopt;
  std::vector<term> items;
  all.list_to_vector(items);
  for (const auto& it : items)
    if (it.element(0) == key) return it.element(1);
  return std::nullopt;
}

std::optional<term> system_info(node& n, const term& key) {
  if (!key.is_atom()) return std::nullopt;
  const std::string_view k = key.atom_value().text();
  const auto cores = static_cast<std::uint64_t>(std::max(1u, std::thread::hardware_concurrency()));
  if (k == "otp_release") return term::string(otp_release);
  if (k == "process_count") return term(n.process_count());
  if (k == "process_limit") return term(std::uint64_t{134217727});
  if (k == "atom_count") return term(atom::count());
  if (k == "atom_limit") return term(atom::limit());
  if (k == "schedulers" || k == "schedulers_online" || k == "logical_processors" ||
      k == "logical_processors_available" || k == "logical_processors_online")
    return term(cores);
  if (k == "version") return term::string(CNODE_VERSION);
  if (k == "system_version") return term::string(std::string("cnode ") + CNODE_VERSION + " [speaks OTP " + otp_release + "]\n");
  if (k == "machine") return term::string("cnode");
  if (k == "wordsize") return term(std::int64_t{8});
  if (k == "thread_pool_size" || k == "dirty_cpu_schedulers" || k == "dirty_io_schedulers") return term(std::int64_t{0});
  return std::nullopt;
}

std::optional<term> statistics(node& n, since_last& last, const term& key) {
  if (!key.is_atom()) return std::nullopt;
  const std::string_view k = key.atom_value().text();
  std::lock_guard lk(last.mu);
  if (k == "runtime") {
    auto now = cpu_ms();
    term t = term::tuple({term(now), term(now - last.runtime_ms)});
    last.runtime_ms = now;
    return t;
  }
  if (k == "wall_clock") {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - n.started())
                   .count();
    term t = term::tuple({term(static_cast<std::int64_t>(now)), term(static_cast<std::int64_t>(now - last.wall_ms))});
    last.wall_ms = now;
    return t;
  }
  if (k == "reductions" || k == "exact_reductions") {
    auto& c = n.counters();
    std::uint64_t now = c.messages_in.load() + c.messages_out.load() + c.local_messages.load();
    term t = term::tuple({term(now), term(now - last.reductions)});
    last.reductions = now;
    return t;
  }
  if (k == "run_queue" || k == "total_run_queue_lengths" || k == "total_active_tasks") return term(std::int64_t{0});
  return std::nullopt;
}

// One process_info item, or nullopt for an item we do not know (badarg, as the BEAM does for a bad item).
std::optional<term> info_item(const process_snapshot& s, const term& item) {
  if (!item.is_atom()) return std::nullopt;
  const std::string_view k = item.atom_value().text();
  auto pids = [](const std::vector<term>& v) { return term::list(std::vector<term>(v)); };
  if (k == "message_queue_len") return kv("message_queue_len", term(s.message_queue_len));
  if (k == "registered_name") {
    if (s.names.empty()) return term::nil();  // process_info(P, registered_name) is [] for an unnamed process
    return kv("registered_name", term(s.names.front()));
  }
  if (k == "links") return kv("links", pids(s.links));
  if (k == "monitors") {
    std::vector<term> out;
    for (const auto& m : s.monitors) out.push_back(term::tuple({term(atom("process")), m}));
    return kv("monitors", term::list(std::move(out)));
  }
  if (k == "monitored_by") return kv("monitored_by", pids(s.monitored_by));
  if (k == "trap_exit") return kv("trap_exit", term(s.trap_exit));
  if (k == "status") return kv("status", term(atom("waiting")));
  if (k == "memory") return kv("memory", term(std::uint64_t{1024} + 16 * s.message_queue_len));
  return std::nullopt;
}

asio::awaitable<std::optional<process_snapshot>> snapshot(process& self, node& n, const term& pid) {
  auto p = n.find(pid);
  if (!p || !p->alive()) co_return std::nullopt;
  if (p.get() == &self) {
    // Asking about ourselves: our own strand is busy running us, so read directly.
    process_snapshot s;
    s.message_queue_len = self.message_queue_len();
    s.trap_exit = self.trapping_exits();
    s.links = self.linked();
    co_return s;
  }
  oneshot<process_snapshot> done(co_await asio::this_coro::executor);
  p->inspect([done](process_snapshot s) { done.set(std::move(s)); });
  auto s = co_await done.wait(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  if (s && s->names.empty()) {
    // Names given through node::register_name (spawn_registered) live in the node's table only.
    for (atom name : n.registered())
      if (auto holder = n.whereis(name); holder && *holder == pid) s->names.push_back(name);
  }
  co_return s;
}

template <typename F>
function_body sync(F f) {
  return [f](process& self, std::vector<term> args) -> asio::awaitable<term> { co_return f(self, args); };
}

}  // namespace

void add_introspection_functions(node& n, function_table& fns) {
  fns.add("erlang", "memory", 0, sync([&n](process&, const std::vector<term>&) { return memory_list(n); }));
  fns.add("erlang", "memory", 1, sync([&n](process&, const std::vector<term>& a) {
            term all = memory_list(n);
            if (a[0].is_atom()) {
              auto v = memory_of(all, a[0]);
              if (!v) erl_error(badarg());
              return *v;
            }
            std::vector<term> keys, out;
            if (!a[0].list_to_vector(keys)) erl_error(badarg());
            for (const auto& k : keys) {
              auto v = memory_of(all, k);
              if (!v) erl_error(badarg());
              out.push_back(term::tuple({k, *v}));
            }
            return term::list(std::move(out));
          }));
  fns.add("erlang", "system_info", 1, sync([&n](process&, const std::vector<term>& a) {
            auto v = system_info(n, a[0]);
            if (!v) erl_error(badarg());
            return *v;
          }));
  auto last = std::make_shared<since_last>();
  fns.add("erlang", "statistics", 1, sync([&n, last](process&, const std::vector<term>& a) {
            auto v = statistics(n, *last, a[0]);
            if (!v) erl_error(badarg());
            return *v;
          }));
  auto info = [&n](process& self, std::vector<term> a) -> asio::awaitable<term> {
    if (!a[0].is_pid()) erl_error(badarg());
    if (!n.is_local(a[0])) erl_error(badarg());  // process_info/2 of another node's pid is badarg on the BEAM too
    const bool one = a.size() == 2 && a[1].is_atom();
    std::vector<term> items;
    if (a.size() == 1) {
      for (const char* k : {"registered_name", "message_queue_len", "links", "monitors", "trap_exit", "status"})
        items.emplace_back(atom(k));
    } else if (one) {
      items.push_back(a[1]);
    } else if (!a[1].list_to_vector(items)) {
      erl_error(badarg());
    }
    for (const auto& it : items)
      if (!info_item(process_snapshot{}, it)) erl_error(badarg());
    auto snap = co_await snapshot(self, n, a[0]);
    if (!snap) co_return term(atom("undefined"));
    std::vector<term> out;
    for (const auto& it : items) {
      term v = *info_item(*snap, it);
      if (one) co_return v;
      if (v.is_nil()) v = kv("registered_name", term::nil());  // in a list: {registered_name, []}
      out.push_back(std::move(v));
    }
    co_return term::list(std::move(out));
  };
  fns.add("erlang", "process_info", 1, info);
  fns.add("erlang", "process_info", 2, info);
}

}  // namespace cnode
