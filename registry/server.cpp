// The process shell around server_core: global_name_server, the registrar, resolvers and sync_other processes, the
// C++ API, and the functions Erlang calls here (global:whereis_name/1 … resolve_it/4).
#include <algorithm>

#include "cnode/builtins.hpp"
#include "cnode/gen.hpp"
#include "cnode/log.hpp"
#include "etf/format.hpp"
#include "registry/global.hpp"
#include "registry/service.hpp"

namespace cnode::global {

namespace detail {
service* current(node& n) { return n.services().find_as<service>("global"); }
}  // namespace detail

using namespace detail;

namespace {

struct atoms {
  atom global{"global"}, yes{"yes"}, no{"no"}, ok{"ok"}, undefined{"undefined"}, nodeup{"nodeup"},
      nodedown{"nodedown"}, gen_cast{"$gen_cast"}, exchange_ops{"exchange_ops"}, in_sync{"in_sync"},
      extra_nodedown{"extra_nodedown"}, register_{"register"}, unregister{"unregister"}, rex{"rex"}, call{"call"},
      user{"user"}, resolve_it{"resolve_it"}, badrpc{"badrpc"}, kill{"kill"}, random_exit_name{"random_exit_name"},
      random_notify_name{"random_notify_name"}, notify_all_name{"notify_all_name"}, none{"none"},
      global_name_conflict{"global_name_conflict"}, aborted{"aborted"}, global_register{"global_register"},
      global_unregister{"global_unregister"}, re_register{"re_register"}, badarg{"badarg"}, exit_{"EXIT"},
      set_lock{"set_lock"}, del_lock{"del_lock"}, global_set_lock{"global_set_lock"},
      global_del_lock{"global_del_lock"}, global_trans{"global_trans"}, sync{"sync"}, synced{"synced"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

// The probe's set_lock and trans retry once (global.erl: Retries), so a held lock answers false within about a
// quarter second instead of blocking the probe, which serves one call at a time.
constexpr int probe_lock_retries = 1;

term default_method() {
  return term::export_(etf::export_value{at().global, at().random_exit_name, 3});
}

// Whether a pid of this node is alive, for server_core::where.
std::function<bool(const term&)> alive_on(node& n) {
  return [&n](const term& pid) { return n.find(pid) != nullptr; };
}

// global:resolve_it/4 run here: the three resolvers global exports; anything else is what `catch` gives for a fun
// we cannot run (global.erl:2599).
term resolve_locally(process& self, const term& method, const term& name, const term& pid1, const term& pid2) {
  if (!pid1.is_pid() || !pid2.is_pid()) return term::tuple({term(at().exit_), term(at().badarg)});
  const bool first_min = pid1.node_of() < pid2.node_of();
  const term& min = first_min ? pid1 : pid2;
  const term& max = first_min ? pid2 : pid1;
  if (method.type() == etf::term_type::export_ && method.as_export().module == at().global) {
    atom f = method.as_export().function;
    if (f == at().random_exit_name) {
      log::info("global: Name conflict terminating {}", etf::to_string(term::tuple({name, max})));
      self.exit(max, term(at().kill));
      return min;
    }
    if (f == at().random_notify_name) {
      self.send(max, term::tuple({term(at().global_name_conflict), name}));
      return min;
    }
    if (f == at().notify_all_name) {
      self.send(pid1, term::tuple({term(at().global_name_conflict), name, pid2}));
      self.send(pid2, term::tuple({term(at().global_name_conflict), name, pid1}));
      return term(at().none);
    }
  }
  return term::tuple({term(at().exit_), term::tuple({term(atom("undef")), method})});
}

class shell_io final : public server_io {
 public:
  explicit shell_io(service& s) : s_(s) {}
  process* self = nullptr;

  atom self_node() const override { return s_.n->name_atom(); }
  void send_server(atom nd, term msg) override {
    self->send_noconnect(term::tuple({term(gns), term(nd)}), std::move(msg));
  }
  void cast_server(atom nd, term req) override {
    self->send(term::tuple({term(gns), term(nd)}), term::tuple({term(at().gen_cast), std::move(req)}));
  }
  void to_locker(term msg) override { self->send(s_.locker_pid, std::move(msg)); }
  term locker_pid() const override { return s_.locker_pid; }
  term monitor(const term& pid) override { return self->monitor(pid); }
  void demonitor(const term& ref) override { self->demonitor(ref, true); }
  void disconnect(atom nd) override { s_.d->disconnect(nd); }
  void start_resolver(atom nd, const term& tag, const term& his, std::vector<name_entry> ours) override;
  void stop_resolver(atom nd) override {
    auto it = resolvers_.find(nd);
    if (it == resolvers_.end()) return;
    self->exit(it->second, term(at().kill));
    resolvers_.erase(it);
  }
  void sync_others(const std::vector<atom>& nodes) override;
  std::int64_t unique_integer() override { return s_.next_tag++; }
  void send_local(const term& pid, term msg) override { self->send(pid, std::move(msg)); }

 private:
  service& s_;
  std::map<atom, term> resolvers_;
};

void shell_io::start_resolver(atom nd, const term& tag, const term& his, std::vector<name_entry> ours) {
  service& s = s_;
  term server = s.server_pid;
  resolvers_[nd] = s.n->spawn([&s, nd, tag, his, ours = std::move(ours), server](process& me) -> asio::awaitable<void> {
    exchange_plan plan = plan_exchange(ours, his, s.n->name_atom(), nd);
    for (const conflict& c : plan.conflicts) {
      term result;
      atom node2 = c.pid2.node_of();
      if (node2 == s.n->name_atom()) {
        result = resolve_locally(me, c.method2, c.name, c.pid, c.pid2);
      } else {
        // rpc:call(Node2, global, resolve_it, [Method2, Name, Pid, Pid2]) through rex (global.erl:2563).
        const term rex = term::tuple({term(at().rex), term(node2)});
        term req = term::tuple({term(at().call), term(at().global), term(at().resolve_it),
                                term::list({c.method2, c.name, c.pid, c.pid2}), term(at().user)});
        auto r = co_await gen::call(me, rex, std::move(req), std::chrono::minutes(1));
        result = r.ok ? r.reply : term::tuple({term(at().badrpc), r.reason});
      }
      finish_conflict(plan, c, result);
    }
    me.send(server, term::tuple({term(at().gen_cast),
                                 term::tuple({term(at().exchange_ops), term(nd), tag, term::list(plan.ops),
                                              term::list(plan.resolved)})}));
  });
}

void shell_io::sync_others(const std::vector<atom>& nodes) {
  service& s = s_;
  for (atom nd : nodes) {
    if (nd == s.n->name_atom()) continue;
    s.n->spawn([&s, nd](process& me) -> asio::awaitable<void> {
      // sync_other/2 (global.erl:1926): connect, then tell him we are in sync; else an artificial nodedown.
      bool up = co_await s.d->connect(nd);
      if (up) {
        me.send(term::tuple({term(gns), term(nd)}),
                term::tuple({term(at().gen_cast), term::tuple({term(at().in_sync), term(s.n->name_atom()), term(true)})}));
      } else {
        log::warning("'global' at {} failed to connect to {}", s.n->name(), nd.text());
        me.send(term(gns), term::tuple({term(at().extra_nodedown), term(nd)}));
      }
    });
  }
}

// sync_loop/2 (global.erl:2970): until every node in `left` is in sync ({synced, Nodes} from the core) or down.
asio::awaitable<void> sync_loop(service& s, process& me, std::vector<atom>& left) {
  while (!left.empty()) {
    auto m = co_await me.receive();
    std::vector<atom> gone;
    if (m->is_tuple(2) && m->element(0).is_atom(at().nodedown) && m->element(1).is_atom()) {
      gone.push_back(m->element(1).atom_value());
    } else if (m->is_tuple(2) && m->element(0).is_atom(at().synced)) {
      std::vector<term> ns;
      if (m->element(1).list_to_vector(ns))
        for (auto& x : ns)
          if (x.is_atom()) gone.push_back(x.atom_value());
    }
    for (atom g : gone) {
      auto it = std::find(left.begin(), left.end(), g);
      if (it == left.end()) continue;
      s.d->monitor_node(me.pid(), g, false);
      left.erase(it);
    }
  }
}

// start_sync/2 (global.erl:2963): a syncer answers {sync, Nodes} with ok once every node in it is in sync with
// us or down. The core tells it {synced, [Node]}; it watches the nodes itself with monitor_node.
void start_syncer(service& s, term from, const term& nodes_t) {
  std::vector<term> v;
  std::vector<atom> nodes;
  if (nodes_t.list_to_vector(v))
    for (auto& x : v)
      if (x.is_atom()) nodes.push_back(x.atom_value());
  auto wait = std::make_shared<std::vector<atom>>();
  spawn_options opts;
  opts.before_start = [&s, wait, nodes](const term& pid) { *wait = s.core->add_syncer(pid, nodes); };
  s.n->spawn(
      [&s, wait, from](process& me) -> asio::awaitable<void> {
        std::vector<atom> left = *wait;
        try {
          // erlang:monitor_node/2 connects to a node that is not connected (and says nodedown if that fails).
          for (atom nd : left) {
            co_await s.d->connect(nd);
            s.d->monitor_node(me.pid(), nd, true);
          }
          co_await sync_loop(s, me, left);
        } catch (const process_exit&) {
          // Killed: out of the core's list and the node monitors, as the link's 'EXIT' does in global.erl.
          s.core->remove_syncer(me.pid());
          for (atom nd : left) s.d->monitor_node(me.pid(), nd, false);
          throw;
        }
        s.core->remove_syncer(me.pid());
        gen::reply(me, from, term(at().ok));
      },
      std::move(opts));
}

// global_name_server on the shared gen_server loop. A message that breaks one of the core's rules is logged and
// dropped (global.erl would crash and be restarted by kernel's supervisor; here nothing restarts it).
class name_server final : public gen_server {
 public:
  explicit name_server(std::shared_ptr<shell_io> io) : io_(std::move(io)) {}

  asio::awaitable<void> init(process& self) override {
    s_ = current(self.node());
    io_->self = &self;
    self.trap_exit(true);
    if (!s_->hidden) s_->d->monitor_nodes(self.pid(), true);
    co_return;
  }

  asio::awaitable<std::optional<term>> handle_call(process&, const term& request, const term& from) override {
    std::optional<term> reply;
    guarded("call", [&] {
      if (request.is_tuple(2) && request.element(0).is_atom(at().sync)) {
        start_syncer(*s_, from, request.element(1));  // replied by the syncer once in sync
        return;
      }
      const term& from_pid = from.is_tuple(2) ? from.element(0) : term();
      reply = s_->core->handle_call(request, from_pid);
      if (!reply) log::debug("global_name_server: unexpected call {}", etf::to_string(request));
    });
    co_return reply;
  }

  asio::awaitable<void> handle_cast(process&, const term& req) override {
    guarded("cast", [&] {
      if (!s_->core->handle_cast(req)) log::debug("global_name_server: unexpected cast {}", etf::to_string(req));
    });
    co_return;
  }

  asio::awaitable<void> handle_info(process&, const term& m) override {
    guarded("message", [&] {
      if (m.is_tuple(2) && m.element(0).is_atom(at().nodeup) && m.element(1).is_atom()) {
        s_->core->nodeup(m.element(1).atom_value());
      } else if (m.is_tuple(2) && m.element(0).is_atom(at().nodedown) && m.element(1).is_atom()) {
        s_->core->nodedown(m.element(1).atom_value());
      } else if (!s_->core->handle_info(m)) {
        log::debug("global_name_server: unexpected message {}", etf::to_string(m));
      }
    });
    co_return;
  }

 private:
  template <typename F>
  void guarded(const char* what, F f) {
    try {
      f();
    } catch (const process_exit&) {
      throw;
    } catch (const std::exception& e) {
      log::debug("global_name_server: ignored a {} that broke a rule ({})", what, e.what());
    }
  }

  std::shared_ptr<shell_io> io_;
  service* s_ = nullptr;
};

// The registrar (global.erl:3020): name operations one at a time, under global's lock on every known node.
// get_known/0 as global.erl asks it: a call to the server, so that a nodedown already in its mailbox has been
// handled (a direct read of the table could still list a node just cut off, and the lock calls to it would dial it
// again).
asio::awaitable<std::vector<atom>> get_known(process& self) {
  service& s = *current(self.node());
  std::vector<atom> out;
  auto r = co_await gen::call(self, s.server_pid, term(atom("get_known")), infinity);
  std::vector<term> v;
  if (r.ok && r.reply.list_to_vector(v))
    for (auto& x : v)
      if (x.is_atom()) out.push_back(x.atom_value());
  co_return out;
}

asio::awaitable<std::vector<atom>> set_lock_known(process& self, const term& id) {
  service& s = *current(self.node());
  for (int times = 0;; ++times) {
    auto known = co_await get_known(self);
    std::vector<atom> nodes{s.n->name_atom()};
    nodes.insert(nodes.end(), known.begin(), known.end());
    atom boss = the_boss(nodes);
    const std::vector<atom> just_boss(1, boss);
    if (co_await set_lock_on_nodes(self, id, just_boss)) {
      if (co_await set_lock_on_nodes(self, id, nodes)) {
        auto now = co_await get_known(self);
        bool same = std::all_of(now.begin(), now.end(),
                                [&](atom x) { return std::find(known.begin(), known.end(), x) != known.end(); });
        if (same) co_return nodes;
      }
      co_await del_lock_on_nodes(self, id, just_boss);
    }
    s.lock_waits.fetch_add(1, std::memory_order_relaxed);
    co_await random_sleep(self, times);
  }
}

asio::awaitable<void> registrar(process& self) {
  service& s = *current(self.node());
  for (;;) {
    auto m = co_await self.receive();
    gen::incoming_call c;
    if (!gen::is_call(*m, c) || !c.request.is_tuple() || c.request.tuple_size() < 2) continue;
    const term& r = c.request;
    term id = term::tuple({term(at().global), self.pid()});
    if (r.element(0).is_atom(at().register_) || r.element(0).is_atom(at().re_register))
      s.registrations.fetch_add(1, std::memory_order_relaxed);
    auto nodes = co_await set_lock_known(self, id);
    term reply(at().ok);
    if (r.element(0).is_atom(at().register_) && r.tuple_size() == 4) {
      if (!s.core->where(r.element(1), alive_on(*s.n)) && !s.core->has_pid(r.element(2))) {
        const term reg = term::tuple({term(at().register_), r.element(1), r.element(2), r.element(3)});
        co_await multi_call(self, nodes, reg);
        reply = term(at().yes);
      } else {
        reply = term(at().no);
      }
    } else if (r.element(0).is_atom(at().re_register) && r.tuple_size() == 4) {
      const term reg = term::tuple({term(at().register_), r.element(1), r.element(2), r.element(3)});
      co_await multi_call(self, nodes, reg);
      reply = term(at().yes);
    } else if (r.element(0).is_atom(at().unregister)) {
      const term unreg = term::tuple({term(at().unregister), r.element(1)});
      if (s.core->where(r.element(1), alive_on(*s.n))) co_await multi_call(self, nodes, unreg);
    }
    co_await delete_global_lock(self, id, nodes);
    gen::reply(self, c.from, std::move(reply));
  }
}

asio::awaitable<term> registrar_call(process& self, term req) {
  service* s = current(self.node());
  if (!s) co_return term(at().no);
  auto r = co_await gen::call(self, s->registrar_pid, std::move(req), infinity);
  co_return r.ok ? r.reply : term(at().no);
}

std::vector<atom> default_nodes(node& n) {
  service& s = *current(n);
  std::vector<atom> v{s.n->name_atom()};
  for (atom x : s.d->nodes(true, false)) v.push_back(x);
  return v;
}

}  // namespace

// ---------------------------------------------------------------- API

asio::awaitable<term> register_name(process& self, const term& name, const term& pid, std::optional<term> method) {
  if (!pid.is_pid()) co_return term(at().no);
  term req = term::tuple({term(at().register_), name, pid, method.value_or(default_method())});
  co_return co_await registrar_call(self, std::move(req));
}

asio::awaitable<term> re_register_name(process& self, const term& name, const term& pid, std::optional<term> method) {
  if (!pid.is_pid()) co_return term(at().no);
  term req = term::tuple({term(at().re_register), name, pid, method.value_or(default_method())});
  co_return co_await registrar_call(self, std::move(req));
}

asio::awaitable<void> unregister_name(process& self, const term& name) {
  term req = term::tuple({term(at().unregister), name});
  co_await registrar_call(self, std::move(req));
}

std::optional<term> whereis_name(node& n, const term& name) {
  service* s = current(n);
  return s ? s->core->where(name, alive_on(n)) : std::nullopt;
}

std::vector<term> registered_names(node& n) {
  service* s = current(n);
  return s ? s->core->registered_names() : std::vector<term>{};
}

std::vector<atom> known(node& n) {
  service* s = current(n);
  return s ? s->core->known() : std::vector<atom>{};
}

asio::awaitable<term> sync(process& self, std::optional<std::vector<atom>> nodes) {
  service* s = current(self.node());
  if (!s) co_return term(at().ok);
  auto ns = nodes.value_or(s->d->nodes(true, false));
  std::vector<term> v(ns.begin(), ns.end());
  const term req = term::tuple({term(at().sync), term::list(std::move(v))});
  auto r = co_await gen::call(self, s->server_pid, req, infinity);
  co_return r.ok ? r.reply : term::tuple({term(atom("error")), r.reason});
}

bool send(process& self, const term& name, term msg) {
  auto pid = whereis_name(self.node(), name);
  if (!pid) return false;
  self.send(*pid, std::move(msg));
  return true;
}

asio::awaitable<gen::call_result> call(process& self, const term& name, term request, std::chrono::milliseconds timeout) {
  auto pid = whereis_name(self.node(), name);
  if (!pid) co_return gen::call_result{false, {}, term(atom("noproc"))};
  co_return co_await gen::call(self, *pid, std::move(request), timeout);
}

asio::awaitable<bool> set_lock(process& self, const term& id, std::optional<std::vector<atom>> nodes, int retries) {
  if (!id.is_tuple(2)) co_return false;
  auto ns = nodes.value_or(default_nodes(self.node()));
  for (int times = 1;; ++times) {
    if (co_await set_lock_on_nodes(self, id, ns)) co_return true;
    if (retries >= 0 && times > retries) co_return false;
    co_await random_sleep(self, times);
  }
}

asio::awaitable<void> del_lock(process& self, const term& id, std::optional<std::vector<atom>> nodes) {
  co_await del_lock_on_nodes(self, id, nodes.value_or(default_nodes(self.node())));
}

asio::awaitable<term> trans(process& self, const term& id, std::function<asio::awaitable<term>()> fn,
                            std::optional<std::vector<atom>> nodes, int retries) {
  auto ns = nodes.value_or(default_nodes(self.node()));
  if (!co_await set_lock(self, id, ns, retries)) co_return term(at().aborted);
  std::exception_ptr err;
  term result;
  try {
    result = co_await fn();
  } catch (...) {
    err = std::current_exception();
  }
  co_await del_lock(self, id, ns);
  if (err) std::rethrow_exception(err);
  co_return result;
}

// ---------------------------------------------------------------- start

namespace detail {

asio::awaitable<void> service::start(service_context& ctx) {
  node& nd = ctx.n;
  n = &ctx.n;
  d = &ctx.d;
  hidden = ctx.hidden;
  auto shell = std::make_shared<shell_io>(*this);
  io = shell;
  core = std::make_unique<server_core>(*shell, hidden);
  locker_pid = nd.spawn(locker);
  registrar_pid = nd.spawn(registrar);
  spawn_options opts;
  opts.before_start = [this](const term& pid) { server_pid = pid; };
  auto server = std::make_shared<name_server>(shell);
  if (!nd.spawn_registered(gns, [server](process& self) -> asio::awaitable<void> { co_await run_gen_server(self, server); },
                           std::move(opts)))
    throw std::runtime_error("global: global_name_server is already registered");
  ctx.resolver.add(at().global, [&nd](const term& name) { return whereis_name(nd, name); });

  auto fn = [&ctx](const char* f, unsigned arity, function_body body) {
    ctx.functions.add("global", f, arity, std::move(body));
  };
  fn("whereis_name", 1, [](process& self, std::vector<term> a) -> asio::awaitable<term> {
    auto p = whereis_name(self.node(), a[0]);
    co_return p ? *p : term(at().undefined);
  });
  fn("registered_names", 0, [](process& self, std::vector<term>) -> asio::awaitable<term> {
    co_return term::list(registered_names(self.node()));
  });
  fn("register_name", 2, [](process& self, std::vector<term> a) -> asio::awaitable<term> {
    if (!a[1].is_pid()) erl_error(term(atom("function_clause")));
    co_return co_await register_name(self, a[0], a[1]);
  });
  fn("register_name", 3, [](process& self, std::vector<term> a) -> asio::awaitable<term> {
    if (!a[1].is_pid()) erl_error(term(atom("function_clause")));
    co_return co_await register_name(self, a[0], a[1], a[2]);
  });
  fn("re_register_name", 2, [](process& self, std::vector<term> a) -> asio::awaitable<term> {
    if (!a[1].is_pid()) erl_error(term(atom("function_clause")));  // global.erl:339: when is_pid(Pid)
    co_return co_await re_register_name(self, a[0], a[1]);
  });
  fn("unregister_name", 1, [](process& self, std::vector<term> a) -> asio::awaitable<term> {
    co_await unregister_name(self, a[0]);
    co_return term(at().ok);
  });
  fn("sync", 0, [](process& self, std::vector<term>) -> asio::awaitable<term> { co_return co_await sync(self); });
  fn("sync", 1, [](process& self, std::vector<term> a) -> asio::awaitable<term> {
    std::vector<term> v;
    if (!a[0].list_to_vector(v)) erl_error(term(atom("function_clause")));
    std::vector<atom> nodes;
    for (auto& x : v)
      if (x.is_atom()) nodes.push_back(x.atom_value());
    co_return co_await sync(self, nodes);
  });
  fn("resolve_it", 4, [](process& self, std::vector<term> a) -> asio::awaitable<term> {
    co_return resolve_locally(self, a[0], a[1], a[2], a[3]);
  });
  for (const char* r : {"random_exit_name", "random_notify_name", "notify_all_name"}) {
    fn(r, 3, [r](process& self, std::vector<term> a) -> asio::awaitable<term> {
      co_return resolve_locally(self, term::export_(etf::export_value{at().global, atom(r), 3}), a[0], a[1], a[2]);
    });
  }

  ctx.probes.add(at().global_register, [](process& self, const term& r) -> asio::awaitable<term> {
    // {global_register, Name} or {global_register, Name, Method}: Method is the resolve fun, as in
    // global:register_name/3 (e.g. &:global.notify_all_name/3), so the notifying resolvers can be tried live.
    if (r.is_tuple(2)) co_return co_await register_name(self, r.element(1), self.pid());
    if (!r.is_tuple(3)) co_return term(at().no);
    const term method = r.element(2);
    co_return co_await register_name(self, r.element(1), self.pid(), method);
  });
  ctx.probes.add(at().global_unregister, [](process& self, const term& r) -> asio::awaitable<term> {
    if (r.is_tuple(2)) co_await unregister_name(self, r.element(1));
    co_return term(at().ok);
  });
  // Locks held by the probe: the lock id is {Id, ProbePid}, as global:set_lock({Id, self()}) in a BEAM process.
  ctx.probes.add(at().global_set_lock, [](process& self, const term& r) -> asio::awaitable<term> {
    if (!r.is_tuple(2)) co_return term(false);
    // Built outside the co_await: g++ 12 rejects a braced list inside a co_await expression.
    const term id = term::tuple({r.element(1), self.pid()});
    co_return term(co_await set_lock(self, id, std::nullopt, probe_lock_retries));
  });
  ctx.probes.add(at().global_del_lock, [](process& self, const term& r) -> asio::awaitable<term> {
    if (!r.is_tuple(2)) co_return term(at().ok);
    const term id = term::tuple({r.element(1), self.pid()});
    co_await del_lock(self, id);
    co_return term(at().ok);
  });
  // {global_trans, Id, Ms}: global:trans({Id, self()}, fun) whose fun "works" for Ms milliseconds holding the lock
  // (other requesters see it taken meanwhile); :ok, or :aborted when the lock could not be had.
  ctx.probes.add(at().global_trans, [](process& self, const term& r) -> asio::awaitable<term> {
    if (!r.is_tuple(3) || !r.element(2).is_small() || r.element(2).small() < 0) co_return term(at().aborted);
    auto ms = std::chrono::milliseconds(r.element(2).small());
    const term id = term::tuple({r.element(1), self.pid()});
    co_return co_await trans(
        self, id,
        [&self, ms]() -> asio::awaitable<term> {
          std::function<bool(const term&)> none = [](const term&) { return false; };  // named: GCC 12 (README)
          co_await self.receive(none, ms);
          co_return term(at().ok);
        },
        std::nullopt, probe_lock_retries);
  });
  co_return;
}

asio::awaitable<void> service::stop(clock::time_point deadline) {
  if (!core) co_return;
  if (hidden || !n) {
    core->leave();
    co_return;
  }
  // The names held by this node's processes, unregistered one by one through the registrar.
  std::vector<term> ours;
  for (const auto& name : core->registered_names()) {
    auto pid = core->where(name, alive_on(*n));
    if (pid && n->is_local(*pid)) ours.push_back(name);
  }
  if (ours.empty()) {
    core->leave();
    co_return;
  }
  // Named first: a temporary inside a co_await expression is destroyed twice by GCC 12 (README).
  std::function<asio::awaitable<term>(process&)> release = [ours](process& self) -> asio::awaitable<term> {
    for (const auto& name : ours) co_await unregister_name(self, name);
    co_return term(at().ok);
  };
  auto r = co_await run_in_process(*n, std::move(release), deadline);
  if (!r) log::warning("global: {} names of this node were not all released before the stop deadline", ours.size());
  core->leave();
}

void service::metrics(metrics_sink& m) const {
  if (!core) return;
  m.gauge("cnode_global_names", "Names registered in :global, cluster-wide, as this node sees them.",
          static_cast<double>(core->registered_names().size()));
  m.gauge("cnode_global_known_nodes", "Nodes :global is in sync with.", static_cast<double>(core->known().size()));
  m.counter("cnode_global_registrations_total", "Registrations asked of this node's registrar.",
            static_cast<double>(registrations.load()));
  m.counter("cnode_global_lock_waits_total",
            "Times the registrar found global's lock taken and waited to try again (random_sleep).",
            static_cast<double>(lock_waits.load()));
}

term service::status() const {
  if (!core) return term::map({});
  std::vector<term> known_nodes;
  for (atom a : core->known()) known_nodes.emplace_back(a);
  return term::map({{term(atom("names")), term(core->registered_names().size())},
                    {term(atom("known")), term::list(std::move(known_nodes))},
                    {term(atom("hidden")), term(hidden)}});
}

}  // namespace detail

std::unique_ptr<cnode::service> make_service() { return std::make_unique<detail::service>(); }

}  // namespace cnode::global
