#include "cnode/node.hpp"

#include "cnode/service.hpp"

#include <mutex>
#include <random>

namespace cnode {

namespace {
atom atom_noproc() {
  static const atom a("noproc");
  return a;
}
}  // namespace

node::node(asio::any_io_executor ex, std::string name, std::uint32_t creation)
    : ex_(std::move(ex)), name_(std::move(name)), name_atom_(name_), creation_(creation),
      started_(std::chrono::steady_clock::now()) {
  services_ = std::make_unique<service_directory>();
  std::random_device rd;
  ref_salt_ = rd();
}

node::~node() = default;

void node::set_identity(std::string name, std::uint32_t creation) {
  name_ = std::move(name);
  name_atom_ = atom(name_);
  creation_ = creation;
}

term node::make_pid(std::uint64_t number) const {
  // OTP 25 accepts any 32-bit number and serial from another node: a 64-bit counter never repeats a pid.
  return term::pid({name_atom_, static_cast<std::uint32_t>(number), static_cast<std::uint32_t>(number >> 32),
                    creation_});
}

term node::make_ref() {
  const std::uint64_t n = next_ref_.fetch_add(1, std::memory_order_relaxed);
  etf::ref_value v;
  v.node = name_atom_;
  v.creation = creation_;
  v.len = 3;
  v.ids[0] = static_cast<std::uint32_t>(n);
  v.ids[1] = static_cast<std::uint32_t>(n >> 32);
  v.ids[2] = ref_salt_;
  return term::reference(v);
}

bool node::is_local(const term& t) const noexcept {
  switch (t.type()) {
    case etf::term_type::pid: return t.as_pid().node == name_atom_ && t.as_pid().creation == creation_;
    case etf::term_type::reference: return t.as_ref().node == name_atom_ && t.as_ref().creation == creation_;
    case etf::term_type::port: return t.as_port().node == name_atom_ && t.as_port().creation == creation_;
    default: return false;
  }
}

term node::spawn(process::body_type body, spawn_options opts) {
  return *spawn_as(nullptr, std::move(body), std::move(opts));
}

std::optional<term> node::spawn_as(const atom* name, process::body_type body, spawn_options opts) {
  if (name && *name == atom::undefined()) return std::nullopt;
  const std::uint64_t n = next_pid_.fetch_add(1, std::memory_order_relaxed);
  term pid = make_pid(n);
  auto p = std::make_shared<process>(*this, pid, n, std::move(body));
  // The options go on the process before anyone can reach it: no signal queued, so start() below runs the body
  // on this thread at once (a queued drain would make the strand post it).
  if (opts.trap_exit) p->trap_exit(true);
  if (opts.link) p->prime_link(*opts.link);
  if (opts.monitored_by) p->prime_monitored_by(opts.monitored_by->first, opts.monitored_by->second);
  {
    // The name is taken in the same step that makes the process exist: a spawn that loses the name to another
    // leaves nothing behind (no process, no link or monitor, no EXIT or 'DOWN' for the caller's options).
    std::unique_lock lock(mu_);
    if (name && names_.count(*name)) return std::nullopt;
    table_.insert(p);
    if (name) names_.emplace(*name, p);
  }
  counters_.processes_spawned.fetch_add(1, std::memory_order_relaxed);
  // Both ends learn of the link before the body runs (spawn_link).
  if (opts.link && !opts.link_silent) route(*opts.link, signal{signal_kind::link, pid, {}, {}, {}, 0});
  if (opts.before_start) opts.before_start(pid);
  p->start();
  return pid;
}

std::shared_ptr<process> node::find(const term& pid) const {
  if (!pid.is_pid() || !is_local(pid)) return nullptr;
  const auto& v = pid.as_pid();
  const std::uint64_t n = std::uint64_t{v.id} | (std::uint64_t{v.serial} << 32);
  std::shared_lock lock(mu_);
  auto it = table_.find(n);
  return it == table_.end() ? nullptr : *it;
}

std::vector<term> node::processes() const {
  std::vector<std::pair<std::uint64_t, term>> v;
  {
    std::shared_lock lock(mu_);
    v.reserve(table_.size());
    for (const auto& p : table_) v.emplace_back(p->number(), p->pid());
  }
  std::sort(v.begin(), v.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<term> out;
  out.reserve(v.size());
  for (auto& e : v) out.push_back(std::move(e.second));
  return out;
}

std::size_t node::process_count() const {
  std::shared_lock lock(mu_);
  return table_.size();
}

void node::for_each_process(const std::function<void(process&)>& fn) const {
  std::vector<std::shared_ptr<process>> snapshot;
  {
    std::shared_lock lock(mu_);
    snapshot.reserve(table_.size());
    for (const auto& p : table_) snapshot.push_back(p);
  }
  for (auto& p : snapshot) fn(*p);
}

bool node::register_name(atom name, const term& pid) {
  auto p = find(pid);
  if (!p || name == atom("undefined")) return false;
  std::unique_lock lock(mu_);
  if (names_.count(name)) return false;
  for (const auto& [n, q] : names_)
    if (q == p) return false;  // a process has at most one registered name
  names_.emplace(name, std::move(p));
  return true;
}

bool node::unregister_name(atom name) {
  std::unique_lock lock(mu_);
  return names_.erase(name) > 0;
}

std::optional<term> node::whereis(atom name) const {
  std::shared_lock lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end()) return std::nullopt;
  return it->second->pid();
}

std::vector<atom> node::registered() const {
  std::shared_lock lock(mu_);
  std::vector<atom> out;
  out.reserve(names_.size());
  for (const auto& [n, p] : names_) out.push_back(n);
  return out;
}

void node::add_alias(const term& ref, std::uint64_t number) {
  std::unique_lock lock(mu_);
  aliases_[ref] = number;
}

void node::remove_alias(const term& ref) {
  std::unique_lock lock(mu_);
  aliases_.erase(ref);
}

void node::remove_process(std::uint64_t number, const std::vector<atom>&) {
  std::unique_lock lock(mu_);
  auto it = table_.find(number);
  if (it == table_.end()) return;
  auto p = *it;
  table_.erase(it);
  for (auto n = names_.begin(); n != names_.end();) {
    if (n->second == p) n = names_.erase(n);
    else ++n;
  }
  for (auto al = aliases_.begin(); al != aliases_.end();) {
    if (al->second == number) al = aliases_.erase(al);
    else ++al;
  }
}

void node::send(const term& from, const term& dest, term msg, bool noconnect) {
  signal s{signal_kind::message, from, std::move(msg), {}, {}, 0, noconnect};
  switch (dest.type()) {
    case etf::term_type::pid: route(dest, std::move(s)); return;
    case etf::term_type::atom: deliver_to_name(dest.atom_value(), std::move(s)); return;
    case etf::term_type::tuple:
      if (dest.tuple_size() == 2 && dest.element(0).is_atom() && dest.element(1).is_atom()) {
        const atom name = dest.element(0).atom_value();
        const atom where = dest.element(1).atom_value();
        if (where == name_atom_) {
          deliver_to_name(name, std::move(s));
        } else if (router_) {
          counters_.messages_out.fetch_add(1, std::memory_order_relaxed);
          router_->route_remote(where, dest.element(0), std::move(s));
        }
      }
      return;
    case etf::term_type::reference:
      if (is_local(dest)) {
        deliver_local(dest, std::move(s));
      } else if (router_) {
        counters_.messages_out.fetch_add(1, std::memory_order_relaxed);
        router_->route_remote(dest.as_ref().node, dest, std::move(s));
      }
      return;
    default: return;
  }
}

void node::route(const term& to, signal s) {
  if (!to.is_pid()) return;
  if (is_local(to)) {
    deliver_local(to, std::move(s));
    return;
  }
  if (to.as_pid().node == name_atom_) {
    // A pid of an earlier incarnation of this node: it is dead.
    answer_dead(to, s);
    return;
  }
  if (router_) {
    if (s.kind == signal_kind::message) counters_.messages_out.fetch_add(1, std::memory_order_relaxed);
    router_->route_remote(to.as_pid().node, to, std::move(s));
  }
}

void node::deliver_local(const term& to, signal s) {
  if (to.is_reference()) {
    // A message to an alias: delivered while the alias is active (the process checks, on its strand).
    std::shared_ptr<process> p;
    {
      std::shared_lock lock(mu_);
      auto it = aliases_.find(to);
      if (it != aliases_.end()) {
        auto t = table_.find(it->second);
        if (t != table_.end()) p = *t;
      }
    }
    if (p && s.kind == signal_kind::message) {
      s.ref = to;
      p->deliver(std::move(s));
    }
    return;
  }
  if (s.kind == signal_kind::message) counters_.local_messages.fetch_add(1, std::memory_order_relaxed);
  if (auto p = find(to)) {
    p->deliver(std::move(s));
  } else {
    answer_dead(to, s);
  }
}

void node::deliver_to_name(atom name, signal s) {
  std::shared_ptr<process> p;
  {
    std::shared_lock lock(mu_);
    auto it = names_.find(name);
    if (it != names_.end()) p = it->second;
  }
  if (p) {
    if (s.kind == signal_kind::monitor) s.extra = term(name);
    p->deliver(std::move(s));
    return;
  }
  if (s.kind == signal_kind::monitor) {
    route(s.from, signal{signal_kind::down, {}, term(atom_noproc()), s.ref, term(name), 0});
  }
}

void node::send_named_signal(atom name, atom where, signal s) {
  if (where == name_atom_) {
    deliver_to_name(name, std::move(s));
  } else if (router_) {
    router_->route_remote(where, term(name), std::move(s));
  }
}

void node::answer_dead(const term& to, signal& s) {
  switch (s.kind) {
    case signal_kind::link: route(s.from, signal{signal_kind::link_exit, to, term(atom_noproc()), {}, {}, 0}); break;
    case signal_kind::monitor:
      route(s.from, signal{signal_kind::down, to, term(atom_noproc()), s.ref, s.extra.is_nil() ? to : s.extra, 0});
      break;
    case signal_kind::unlink:
      if (s.id != 0) route(s.from, signal{signal_kind::unlink_ack, to, {}, {}, {}, s.id});
      break;
    default: break;
  }
}

}  // namespace cnode

namespace cnode {

std::optional<term> node::spawn_registered(atom name, process::body_type body, spawn_options opts) {
  return spawn_as(&name, std::move(body), std::move(opts));
}

void probe_registry::add(atom tag, probe_call handler) {
  std::unique_lock lk(mu_);
  calls_[tag] = std::move(handler);
}

void probe_registry::remove(atom tag) {
  std::unique_lock lk(mu_);
  calls_.erase(tag);
}

std::optional<probe_call> probe_registry::find(const term& r) const {
  atom tag;
  if (r.is_atom()) tag = r.atom_value();
  else if (r.is_tuple() && r.tuple_size() > 0 && r.element(0).is_atom()) tag = r.element(0).atom_value();
  else return std::nullopt;
  std::shared_lock lk(mu_);
  auto it = calls_.find(tag);
  if (it == calls_.end()) return std::nullopt;
  return it->second;
}

void name_resolver::add(atom module, whereis_fn f) {
  std::unique_lock lk(mu_);
  modules_[module] = std::move(f);
}

void name_resolver::remove(atom module) {
  std::unique_lock lk(mu_);
  modules_.erase(module);
}

std::optional<std::optional<term>> name_resolver::resolve(const term& dest) const {
  static const atom global("global"), via("via");
  // gen.erl's do_for_proc: {global, Name} is {via, global, Name}, whatever Name is ({global, 'a@host'} is a global
  // name, not the process `global` on a@host).
  atom module;
  const term* name = nullptr;
  if (dest.is_tuple(2) && dest.element(0).is_atom(global)) {
    module = global;
    name = &dest.element(1);
  } else if (dest.is_tuple(3) && dest.element(0).is_atom(via) && dest.element(1).is_atom()) {
    module = dest.element(1).atom_value();
    name = &dest.element(2);
  } else {
    return std::nullopt;
  }
  whereis_fn f;
  {
    std::shared_lock lk(mu_);
    auto it = modules_.find(module);
    if (it == modules_.end()) return std::optional<term>{};
    f = it->second;
  }
  return f(*name);
}

}  // namespace cnode
