#include "crdt/codec.hpp"

#include <limits>

namespace cnode::crdt {

using etf::atom;

namespace {

term A(const char* s) { return term(atom(s)); }

bool get_u64(const term& t, std::uint64_t& out) {
  if (t.is_small()) {
    if (t.small() < 0) return false;
    out = static_cast<std::uint64_t>(t.small());
    return true;
  }
  if (t.type() == etf::term_type::big_integer) {
    const auto& b = t.big_ref();
    if (b < 0 || b > std::numeric_limits<std::uint64_t>::max()) return false;
    out = static_cast<std::uint64_t>(b);
    return true;
  }
  return false;
}

bool get_list(const term& t, std::vector<term>& out) {
  if (!t.is_list()) return false;
  out.clear();
  return t.list_to_vector(out);
}

template <class Payload, class EncodeOne>
term encode_kernel(const char* tag, const dot_kernel<Payload>& k, EncodeOne one) {
  std::vector<term> entries;
  entries.reserve(k.entries.size());
  for (const auto& [key, ds] : k.entries) {
    std::vector<term> dots;
    dots.reserve(ds.size());
    for (const auto& [d, p] : ds) dots.push_back(one(d, p));
    entries.push_back(term::tuple({key, term::list(std::move(dots))}));
  }
  return term::tuple({A(tag), term::list(std::move(entries)), encode(k.context)});
}

// {Tag, [{Key, [DotEntry]}], Context}; decode_one turns a DotEntry into (dot, payload).
template <class Payload, class DecodeOne>
bool decode_kernel(const term& t, dot_kernel<Payload>& k, DecodeOne decode_one) {
  if (!t.is_tuple(3)) return false;
  auto ctx = decode_context(t.element(2));
  if (!ctx) return false;
  k.context = std::move(*ctx);
  std::vector<term> entries, dots;
  if (!get_list(t.element(1), entries)) return false;
  for (const auto& e : entries) {
    if (!e.is_tuple(2) || !get_list(e.element(1), dots) || dots.empty()) return false;
    auto& slot = k.entries[e.element(0)];
    for (const auto& de : dots) {
      dot d;
      Payload p;
      if (!decode_one(de, d, p) || !k.context.contains(d)) return false;
      slot.emplace(d, std::move(p));
    }
  }
  return true;
}

}  // namespace

term encode(const dot& d) { return term::tuple({term(d.replica), term(d.counter)}); }

term encode(const causal_context& c) {
  std::vector<term> vv, cloud;
  for (const auto& [r, n] : c.vector()) vv.push_back(term::tuple({term(r), term(n)}));
  for (const auto& [r, rs] : c.cloud())
    for (const auto& [first, last] : rs)
      cloud.push_back(first == last ? term::tuple({term(r), term(first)})
                                    : term::tuple({term(r), term(first), term(last)}));
  return term::tuple({term::list(std::move(vv)), term::list(std::move(cloud))});
}

term encode(const hlc_timestamp& ts) {
  return term::tuple({term(ts.physical_ms), term(ts.logical), term(ts.node)});
}

term encode(const object& o) {
  if (auto* c = std::get_if<pn_counter>(&o)) {
    std::vector<term> v;
    for (const auto& [r, pn] : c->entries) v.push_back(term::tuple({term(r), term(pn.p), term(pn.n)}));
    return term::tuple({A("pn_counter"), term::list(std::move(v))});
  }
  if (auto* s = std::get_if<aw_or_set>(&o))
    return encode_kernel("aw_or_set", s->kernel, [](const dot& d, unit) { return encode(d); });
  if (auto* r = std::get_if<lww_register>(&o)) {
    term cell = r->cell ? term::tuple({encode(r->cell->ts), r->cell->value}) : A("undefined");
    return term::tuple({A("lww_register"), cell});
  }
  const auto& m = std::get<aw_lww_map>(o);
  return encode_kernel("aw_lww_map", m.kernel,
                       [](const dot& d, const lww_cell& c) { return term::tuple({encode(d), encode(c.ts), c.value}); });
}

term encode(const delta_group& g) {
  std::vector<term> v;
  v.reserve(g.size());
  for (const auto& [name, o] : g) v.push_back(term::tuple({name, encode(o)}));
  return term::list(std::move(v));
}

term encode_sync(replica_id from, const sync_message& m) {
  return term::tuple({A("crdt_sync"), term(from), A(m.full_state ? "state" : "delta"), term(m.seq), encode(m.group)});
}

term encode_ack(replica_id from, std::uint64_t seq) { return term::tuple({A("crdt_ack"), term(from), term(seq)}); }

result<dot> decode_dot(const term& t) {
  dot d;
  if (!t.is_tuple(2) || !t.element(0).is_atom() || !get_u64(t.element(1), d.counter) || d.counter == 0 ||
      d.counter >= max_dot_counter)
    return error::malformed;
  d.replica = t.element(0).atom_value();
  return d;
}

result<causal_context> decode_context(const term& t) {
  std::vector<term> vv, cloud;
  if (!t.is_tuple(2) || !get_list(t.element(0), vv) || !get_list(t.element(1), cloud)) return error::malformed;
  causal_context c;
  for (const auto& e : vv) {
    std::uint64_t n = 0;
    if (!e.is_tuple(2) || !e.element(0).is_atom() || !get_u64(e.element(1), n) || n >= max_dot_counter)
      return error::malformed;
    c.advance(e.element(0).atom_value(), n);
  }
  for (const auto& e : cloud) {
    if (e.is_tuple(3)) {  // a range {Replica, First, Last}
      std::uint64_t first = 0, last = 0;
      if (!e.element(0).is_atom() || !get_u64(e.element(1), first) || !get_u64(e.element(2), last) || first == 0 ||
          last < first || last >= max_dot_counter)
        return error::malformed;
      c.insert_range(e.element(0).atom_value(), first, last);
      continue;
    }
    auto d = decode_dot(e);
    if (!d) return error::malformed;
    c.insert(*d);
  }
  return c;
}

result<hlc_timestamp> decode_timestamp(const term& t) {
  hlc_timestamp ts;
  if (!t.is_tuple(3) || !t.element(0).is_small() || !get_u64(t.element(1), ts.logical) || !t.element(2).is_atom())
    return error::malformed;
  ts.physical_ms = t.element(0).small();
  ts.node = t.element(2).atom_value();
  return ts;
}

result<object> decode_object(const term& t) {
  if (!t.is_tuple() || t.tuple_size() < 2 || !t.element(0).is_atom()) return error::malformed;
  const atom tag = t.element(0).atom_value();
  if (tag == atom("pn_counter")) {
    std::vector<term> v;
    if (!t.is_tuple(2) || !get_list(t.element(1), v)) return error::malformed;
    pn_counter c;
    for (const auto& e : v) {
      pn_counter::counts pn;
      if (!e.is_tuple(3) || !e.element(0).is_atom() || !get_u64(e.element(1), pn.p) || !get_u64(e.element(2), pn.n))
        return error::malformed;
      pn_counter one;
      one.entries.emplace(e.element(0).atom_value(), pn);
      c.join(one);  // a replica listed twice: the join of both
    }
    return object{std::move(c)};
  }
  if (tag == atom("aw_or_set")) {
    aw_or_set s;
    auto one = [](const term& de, dot& d, unit&) {
      auto r = decode_dot(de);
      if (!r) return false;
      d = *r;
      return true;
    };
    if (!decode_kernel(t, s.kernel, one)) return error::malformed;
    return object{std::move(s)};
  }
  if (tag == atom("lww_register")) {
    if (!t.is_tuple(2)) return error::malformed;
    lww_register r;
    const term& cell = t.element(1);
    if (cell.is_atom(atom("undefined"))) return object{std::move(r)};
    if (!cell.is_tuple(2)) return error::malformed;
    auto ts = decode_timestamp(cell.element(0));
    if (!ts) return error::malformed;
    r.cell = lww_cell{*ts, cell.element(1)};
    return object{std::move(r)};
  }
  if (tag == atom("aw_lww_map")) {
    aw_lww_map m;
    auto one = [](const term& de, dot& d, lww_cell& c) {
      if (!de.is_tuple(3)) return false;
      auto r = decode_dot(de.element(0));
      auto ts = decode_timestamp(de.element(1));
      if (!r || !ts) return false;
      d = *r;
      c = lww_cell{*ts, de.element(2)};
      return true;
    };
    if (!decode_kernel(t, m.kernel, one)) return error::malformed;
    return object{std::move(m)};
  }
  return error::malformed;
}

result<delta_group> decode_group(const term& t) {
  std::vector<term> v;
  if (!get_list(t, v)) return error::malformed;
  delta_group g;
  for (const auto& e : v) {
    if (!e.is_tuple(2)) return error::malformed;
    auto o = decode_object(e.element(1));
    if (!o) return error::malformed;
    auto [slot, fresh] = g.try_emplace(e.element(0), *o);
    if (!fresh && !join(slot->second, *o)) return error::malformed;  // one name, two types
  }
  return g;
}

result<inbound> decode_message(const term& t) {
  if (!t.is_tuple() || t.tuple_size() < 3 || !t.element(0).is_atom() || !t.element(1).is_atom())
    return error::malformed;
  const atom tag = t.element(0).atom_value();
  const atom from = t.element(1).atom_value();
  if (tag == atom("crdt_ack")) {
    inbound_ack a{from, 0};
    if (!t.is_tuple(3) || !get_u64(t.element(2), a.seq)) return error::malformed;
    return inbound{a};
  }
  if (tag == atom("crdt_sync")) {
    if (!t.is_tuple(5)) return error::malformed;
    inbound_sync s{from, {}};
    const term& kind = t.element(2);
    if (kind.is_atom(atom("state"))) s.msg.full_state = true;
    else if (!kind.is_atom(atom("delta"))) return error::malformed;
    if (!get_u64(t.element(3), s.msg.seq)) return error::malformed;
    auto g = decode_group(t.element(4));
    if (!g) return error::malformed;
    s.msg.group = std::move(*g);
    return inbound{std::move(s)};
  }
  return error::malformed;
}

}  // namespace cnode::crdt
