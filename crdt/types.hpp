// The delta-state CRDTs (Almeida et al. 2018): each type is a join-semilattice with a join and delta-mutators that
// return the delta of an operation (the caller joins it into the state, and ships it). Values are terms.
//
//   pn_counter    per replica (P, N) counts; join is the pointwise max; value = sum P - sum N.
//   aw_or_set     add-wins observed-remove set: a dot kernel element -> {dots} with a causal context; an add makes a
//                 new dot, a remove ships the element's observed dots as context only, so a concurrent add survives.
//   lww_register  the (hybrid logical clock timestamp, value) with the largest timestamp.
//   aw_lww_map    delta_crdt's AWLWWMap: a dot kernel key -> {dot -> {timestamp, value}}; add-wins on keys, the
//                 largest timestamp among a key's surviving writes is its value.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <variant>

#include "crdt/causal.hpp"
#include "crdt/error.hpp"
#include "crdt/hlc.hpp"
#include "etf/term.hpp"

namespace cnode::crdt {

using etf::term;
using term_less = etf::term_less;

// A dot kernel (the paper's DotMap over a DotFun): key -> {dot -> payload}, and the context of every dot seen.
// Invariant: every dot in `entries` is in `context`; no key maps to an empty dot set.
template <class Payload>
struct dot_kernel {
  using dots = std::map<dot, Payload>;
  std::map<term, dots, term_less> entries;
  causal_context context;

  const dots* find(const term& key) const {
    auto it = entries.find(key);
    return it == entries.end() ? nullptr : &it->second;
  }
  // The delta that removes `key` as observed here: no entries, the key's dots as context.
  dot_kernel remove(const term& key) const {
    dot_kernel d;
    if (auto* ds = find(key))
      for (const auto& [dt, p] : *ds) d.context.insert(dt);
    return d;
  }
  // The delta of writing `payload` to `key` with replica r's next dot; it also removes what is observed of key.
  dot_kernel write(replica_id r, const term& key, Payload payload) const {
    dot_kernel d = remove(key);
    const dot nd = context.next(r);
    d.entries[key].emplace(nd, std::move(payload));
    d.context.insert(nd);
    return d;
  }
  // write() with its delta joined here, in one search of the entries (the local operations' path): the delta.
  dot_kernel write_here(replica_id r, const term& key, Payload payload) {
    dot_kernel d;
    const dot nd = context.next(r);
    auto it = entries.lower_bound(key);
    if (it != entries.end() && !entries.key_comp()(key, it->first)) {
      for (const auto& [dt, p] : it->second) d.context.insert(dt);
      it->second.clear();
      it->second.emplace(nd, payload);
    } else {
      entries.emplace_hint(it, key, dots{{nd, payload}});
    }
    d.entries.emplace(key, dots{{nd, std::move(payload)}});
    d.context.insert(nd);
    context.insert(nd);
    return d;
  }
  // remove() with its delta joined here: the observed dots go (they stay in the context).
  dot_kernel remove_here(const term& key) {
    dot_kernel d;
    auto it = entries.find(key);
    if (it == entries.end()) return d;
    for (const auto& [dt, p] : it->second) d.context.insert(dt);
    entries.erase(it);
    return d;
  }
  dot_kernel clear() const {
    dot_kernel d;
    for (const auto& [k, ds] : entries)
      for (const auto& [dt, p] : ds) d.context.insert(dt);
    return d;
  }
  // (m1, c1) join (m2, c2): a dot survives if both have it, or one has it and the other has not seen it. True when
  // this kernel changed.
  bool join(const dot_kernel& o) {
    bool changed = false;
    for (auto it = entries.begin(); it != entries.end();) {
      auto oit = o.entries.find(it->first);
      changed |= join_entry(it->second, oit == o.entries.end() ? nullptr : &oit->second, o.context);
      if (it->second.empty()) it = entries.erase(it);
      else ++it;
    }
    for (const auto& [k, ds] : o.entries) {
      if (entries.contains(k)) continue;
      dots keep;
      for (const auto& [dt, p] : ds)
        if (!context.contains(dt)) keep.emplace(dt, p);
      if (!keep.empty()) {
        entries.emplace(k, std::move(keep));
        changed = true;
      }
    }
    return join_context(o.context) || changed;
  }
  // The join with a delta `d` whose context holds only dots of `key` (observed here or in d) and dots this kernel
  // has never seen: what write(), remove() and their joins make. Only that key can change, so this is O(log n)
  // instead of a pass over every entry. (The local operations' path; the result equals join(d).)
  bool join_key(const dot_kernel& d, const term& key) {
    auto it = entries.find(key);
    auto dit = d.entries.find(key);
    const dots* theirs = dit == d.entries.end() ? nullptr : &dit->second;
    bool changed = false;
    if (it != entries.end()) {
      changed = join_entry(it->second, theirs, d.context);
      if (it->second.empty()) entries.erase(it);
    } else if (theirs) {
      dots keep;
      for (const auto& [dt, p] : *theirs)
        if (!context.contains(dt)) keep.emplace(dt, p);
      if (!keep.empty()) {
        entries.emplace(key, std::move(keep));
        changed = true;
      }
    }
    return join_context(d.context) || changed;
  }
  // About the representation's entries (keys + context entries; a key usually holds one dot): the cost of
  // keeping or sending this kernel, in O(1).
  std::size_t weight() const noexcept { return entries.size() + context.weight(); }
  bool empty() const noexcept { return entries.empty() && context.empty(); }
  friend bool operator==(const dot_kernel&, const dot_kernel&) = default;

 private:
  // One key's dots joined with the other side's (theirs: null when it has none) under its context.
  bool join_entry(dots& mine, const dots* theirs, const causal_context& their_context) const {
    bool changed = false;
    for (auto d = mine.begin(); d != mine.end();) {
      const bool in_other = theirs && theirs->contains(d->first);
      if (!in_other && their_context.contains(d->first)) {
        d = mine.erase(d);
        changed = true;
      } else {
        ++d;
      }
    }
    if (theirs)
      for (const auto& [dt, p] : *theirs)
        if (!context.contains(dt) && mine.emplace(dt, p).second) changed = true;
    return changed;
  }
  bool join_context(const causal_context& o) {
    if (o.empty()) return false;
    const causal_context before = context;  // a few vector entries and ranges
    context.join(o);
    return !(context == before);
  }
};

class pn_counter {
 public:
  struct counts {
    std::uint64_t p = 0, n = 0;
    friend bool operator==(const counts&, const counts&) = default;
  };
  static constexpr crdt_type type = crdt_type::pn_counter;

  pn_counter add(replica_id r, std::int64_t amount) const;  // delta; negative amounts decrement
  bool join(const pn_counter& o);  // true when this changed
  term value() const;  // an integer (a big one past int64)
  bool empty() const noexcept { return entries.empty(); }

  std::map<replica_id, counts> entries;
  friend bool operator==(const pn_counter&, const pn_counter&) = default;
};

struct unit {
  friend bool operator==(unit, unit) = default;
};

class aw_or_set {
 public:
  static constexpr crdt_type type = crdt_type::aw_or_set;

  aw_or_set add(replica_id r, const term& element) const { return {kernel.write(r, element, unit{})}; }
  aw_or_set remove(const term& element) const { return {kernel.remove(element)}; }
  aw_or_set clear() const { return {kernel.clear()}; }
  bool join(const aw_or_set& o) { return kernel.join(o.kernel); }
  bool contains(const term& element) const { return kernel.find(element) != nullptr; }
  term value() const;  // the elements, a list in Erlang term order
  bool empty() const noexcept { return kernel.empty(); }

  dot_kernel<unit> kernel;
  friend bool operator==(const aw_or_set&, const aw_or_set&) = default;
};

struct lww_cell {
  hlc_timestamp ts;
  term value;
  friend bool operator==(const lww_cell&, const lww_cell&) = default;
};
// Which of two writes wins: the larger timestamp; the same timestamp twice (only a misbehaving peer makes one) is
// broken by term order so that every replica still picks the same.
bool wins_over(const lww_cell& a, const lww_cell& b) noexcept;

class lww_register {
 public:
  static constexpr crdt_type type = crdt_type::lww_register;

  lww_register set(const term& value, const hlc_timestamp& ts) const { return {lww_cell{ts, value}}; }
  bool join(const lww_register& o);
  term value() const;  // the value, or `undefined` before the first write
  bool empty() const noexcept { return !cell.has_value(); }

  std::optional<lww_cell> cell;
  friend bool operator==(const lww_register&, const lww_register&) = default;
};

class aw_lww_map {
 public:
  static constexpr crdt_type type = crdt_type::aw_lww_map;

  aw_lww_map put(replica_id r, const term& key, const term& value, const hlc_timestamp& ts) const {
    return {kernel.write(r, key, lww_cell{ts, value})};
  }
  aw_lww_map remove(const term& key) const { return {kernel.remove(key)}; }
  aw_lww_map clear() const { return {kernel.clear()}; }
  bool join(const aw_lww_map& o) { return kernel.join(o.kernel); }
  const lww_cell* get(const term& key) const;  // the winning write of a present key
  term value() const;                          // a map key => value
  bool empty() const noexcept { return kernel.empty(); }

  dot_kernel<lww_cell> kernel;
  friend bool operator==(const aw_lww_map&, const aw_lww_map&) = default;
};

// An object of the replica store: one of the types.
using object = std::variant<pn_counter, aw_or_set, lww_register, aw_lww_map>;
crdt_type type_of(const object& o) noexcept;
object empty_object(crdt_type t);
// Joins o into into; false (and nothing done) when the types differ.
bool join(object& into, const object& o);
// Joins o into into when the types are the same; true when into changed.
bool join_changed(object& into, const object& o);
term value(const object& o);
// Representation entries of an object (counter entries, stored dots and context entries, 1 for a register).
std::size_t weight(const object& o) noexcept;
// When two replicas gave one name different types: the type whose atom sorts first wins everywhere (aw_lww_map,
// aw_or_set, lww_register, pn_counter), so that the replicas converge on that name.
bool type_wins(crdt_type a, crdt_type b) noexcept;

}  // namespace cnode::crdt
