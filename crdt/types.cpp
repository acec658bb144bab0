#include "crdt/types.hpp"

#include <algorithm>
#include <limits>
#include <string_view>

namespace cnode::crdt {

pn_counter pn_counter::add(replica_id r, std::int64_t amount) const {
  counts c;
  if (auto it = entries.find(r); it != entries.end()) c = it->second;
  // -(INT64_MIN) does not fit an int64, so the magnitude is taken in unsigned arithmetic.
  if (amount >= 0) c.p += static_cast<std::uint64_t>(amount);
  else c.n += std::uint64_t(0) - static_cast<std::uint64_t>(amount);
  pn_counter d;
  d.entries.emplace(r, c);
  return d;
}

bool pn_counter::join(const pn_counter& o) {
  bool changed = false;
  for (const auto& [r, c] : o.entries) {
    auto& mine = entries[r];
    if (c.p > mine.p || c.n > mine.n) changed = true;
    mine.p = std::max(mine.p, c.p);
    mine.n = std::max(mine.n, c.n);
  }
  return changed;
}

term pn_counter::value() const {
  etf::big_int sum = 0;
  for (const auto& [r, c] : entries) {
    sum += c.p;
    sum -= c.n;
  }
  return term::from_big(std::move(sum));
}

term aw_or_set::value() const {
  // The kernel is ordered by term_less: Erlang term order (an integer before an equal float).
  std::vector<term> v;
  v.reserve(kernel.entries.size());
  for (const auto& [e, ds] : kernel.entries) v.push_back(e);
  return term::list(std::move(v));
}

bool wins_over(const lww_cell& a, const lww_cell& b) noexcept {
  if (a.ts != b.ts) return a.ts > b.ts;
  return etf::compare_exact(a.value, b.value) > 0;
}

bool lww_register::join(const lww_register& o) {
  if (!o.cell || (cell && !wins_over(*o.cell, *cell))) return false;
  cell = o.cell;
  return true;
}

term lww_register::value() const { return cell ? cell->value : term(etf::atom("undefined")); }

const lww_cell* aw_lww_map::get(const term& key) const {
  auto* ds = kernel.find(key);
  if (!ds) return nullptr;
  const lww_cell* best = nullptr;
  for (const auto& [dt, c] : *ds)
    if (!best || wins_over(c, *best)) best = &c;
  return best;
}

term aw_lww_map::value() const {
  std::vector<std::pair<term, term>> kvs;
  kvs.reserve(kernel.entries.size());
  for (const auto& [k, ds] : kernel.entries) kvs.emplace_back(k, get(k)->value);
  return term::map(std::move(kvs));
}

crdt_type type_of(const object& o) noexcept {
  return std::visit([](const auto& x) { return std::decay_t<decltype(x)>::type; }, o);
}

object empty_object(crdt_type t) {
  switch (t) {
    case crdt_type::pn_counter: return pn_counter{};
    case crdt_type::aw_or_set: return aw_or_set{};
    case crdt_type::lww_register: return lww_register{};
    case crdt_type::aw_lww_map: return aw_lww_map{};
  }
  return pn_counter{};
}

bool join(object& into, const object& o) {
  if (into.index() != o.index()) return false;
  std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        x.join(std::get<T>(o));
      },
      into);
  return true;
}

bool join_changed(object& into, const object& o) {
  if (into.index() != o.index()) return false;
  return std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        return x.join(std::get<T>(o));
      },
      into);
}

std::size_t weight(const object& o) noexcept {
  if (auto* c = std::get_if<pn_counter>(&o)) return c->entries.size();
  if (auto* s = std::get_if<aw_or_set>(&o)) return s->kernel.weight();
  if (auto* m = std::get_if<aw_lww_map>(&o)) return m->kernel.weight();
  return 1;
}

bool type_wins(crdt_type a, crdt_type b) noexcept {
  return std::string_view(type_atom(a)) < std::string_view(type_atom(b));
}

term value(const object& o) {
  return std::visit([](const auto& x) { return x.value(); }, o);
}

}  // namespace cnode::crdt
