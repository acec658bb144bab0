#include "raft/kv.hpp"

namespace cnode::raft {

namespace {
using etf::atom;
using etf::term;
term tag(const char* a) { return term(atom(a)); }
bool is(const term& r, const char* t, std::size_t arity) { return r.is_tuple(arity) && r.element(0).is_atom(atom(t)); }
}  // namespace

bool kv_machine::is_command(const term& r) {
  return is(r, "put", 3) || is(r, "delete", 2) || is(r, "cas", 4) || (is(r, "incr", 3) && r.element(2).is_integer()) ||
         is(r, "get", 2);
}

term kv_machine::get(const term& key) const {
  // std::map orders by <=> (Erlang term order, where 1 == 1.0); a key matches only when =:=, as in a map.
  auto it = data_.find(key);
  if (it == data_.end() || !(it->first == key)) return tag("not_found");
  return term::tuple({tag("ok"), it->second});
}

term kv_machine::apply(const term& c) {
  if (is(c, "put", 3)) {
    data_.insert_or_assign(c.element(1), c.element(2));
    return tag("ok");
  }
  if (is(c, "delete", 2)) {
    data_.erase(c.element(1));
    return tag("ok");
  }
  if (is(c, "get", 2)) return get(c.element(1));
  if (is(c, "cas", 4)) {
    term current = get(c.element(1));
    if (!(current == c.element(2))) return term::tuple({tag("error"), term::tuple({tag("mismatch"), current})});
    data_.insert_or_assign(c.element(1), c.element(3));
    return tag("ok");
  }
  if (is(c, "incr", 3)) {
    auto it = data_.find(c.element(1));
    term base = it == data_.end() ? term(std::int64_t{0}) : it->second;
    if (!base.is_integer() || !c.element(2).is_integer()) return term::tuple({tag("error"), tag("not_integer")});
    term sum = term::from_big(base.big() + c.element(2).big());
    data_.insert_or_assign(c.element(1), sum);
    return term::tuple({tag("ok"), sum});
  }
  return term::tuple({tag("error"), tag("badarg")});
}

}  // namespace cnode::raft
