// Erlang term order, both equalities and hashing, all iterative (an explicit work stack instead of recursion) so
// that 1 000 000-deep terms compare with constant native stack. Orders checked against OTP 25: pids order by serial,
// number, node, creation; ports and refs by node, creation, id (refs from their highest non-zero word down); local
// funs before exports; in map key order every integer sorts before every float.
#include <bit>
#include <cmath>
#include <cstring>

#include "etf/term.hpp"

namespace cnode::etf {
namespace {

enum class mode : std::uint8_t { order, exact };  // order: numbers by value; exact: map key order (int < float)

int type_class(term_type t) noexcept {
  switch (t) {
    case term_type::integer:
    case term_type::big_integer:
    case term_type::float_: return 0;
    case term_type::atom: return 1;
    case term_type::reference: return 2;
    case term_type::fun:
    case term_type::export_: return 3;
    case term_type::port: return 4;
    case term_type::pid: return 5;
    case term_type::tuple: return 6;
    case term_type::map: return 7;
    case term_type::nil: return 8;
    case term_type::list: return 9;
    case term_type::binary: return 10;
  }
  return 11;
}

template <typename T>
int cmp3(const T& a, const T& b) noexcept {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// A float that is at least 2^63 in magnitude is integral; its exact value as a big integer.
big_int float_to_big(double f) {
  int exp = 0;
  double m = std::frexp(f, &exp);  // f = m * 2^exp, 0.5 <= |m| < 1
  auto mant = static_cast<std::int64_t>(std::ldexp(m, 53));
  big_int r = mant;
  exp -= 53;
  if (exp > 0) r <<= exp;
  else r >>= -exp;
  return r;
}

int cmp_small_float(std::int64_t i, double f) noexcept {
  constexpr double two63 = 9223372036854775808.0;
  if (f >= two63) return -1;
  if (f < -two63) return 1;
  double t = std::trunc(f);
  auto ti = static_cast<std::int64_t>(t);
  if (i != ti) return i < ti ? -1 : 1;
  double frac = f - t;
  return frac > 0 ? -1 : (frac < 0 ? 1 : 0);
}

int cmp_big_float(const big_int& b, double f) {
  constexpr double two63 = 9223372036854775808.0;
  if (std::fabs(f) < two63) return b.sign() < 0 ? -1 : 1;  // b is outside int64
  return cmp3(b, float_to_big(f));
}

int cmp_numbers(const term& a, const term& b, mode m) noexcept {
  const term_type ta = a.type(), tb = b.type();
  const bool fa = ta == term_type::float_, fb = tb == term_type::float_;
  if (m == mode::exact && fa != fb) return fa ? 1 : -1;
  if (fa && fb) return cmp3(a.float_value(), b.float_value());
  if (!fa && !fb) {
    if (ta == term_type::integer && tb == term_type::integer) return cmp3(a.small(), b.small());
    if (ta == term_type::integer) return b.big_ref().sign() < 0 ? 1 : -1;
    if (tb == term_type::integer) return a.big_ref().sign() < 0 ? -1 : 1;
    return cmp3(a.big_ref(), b.big_ref());
  }
  if (fb) return ta == term_type::integer ? cmp_small_float(a.small(), b.float_value())
                                          : cmp_big_float(a.big_ref(), b.float_value());
  return -(tb == term_type::integer ? cmp_small_float(b.small(), a.float_value())
                                    : cmp_big_float(b.big_ref(), a.float_value()));
}

int cmp_bits(const term& a, const term& b) noexcept {
  const std::size_t ba = a.bit_size(), bb = b.bit_size();
  const std::size_t n = std::min(ba, bb);
  const std::size_t full = n / 8;
  if (full) {
    if (int c = std::memcmp(a.bytes().data(), b.bytes().data(), full)) return c < 0 ? -1 : 1;
  }
  if (std::size_t rest = n % 8) {
    const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
    const std::uint8_t x = a.bytes()[full] & mask, y = b.bytes()[full] & mask;
    if (x != y) return x < y ? -1 : 1;
  }
  return cmp3(ba, bb);
}

int cmp_refs(const ref_value& a, const ref_value& b) noexcept {
  if (a.node != b.node) return a.node < b.node ? -1 : 1;
  if (a.creation != b.creation) return cmp3(a.creation, b.creation);
  std::size_t la = a.len, lb = b.len;
  while (la > lb) {
    if (a.ids[la - 1] != 0) return 1;
    --la;
  }
  while (lb > la) {
    if (b.ids[lb - 1] != 0) return -1;
    --lb;
  }
  for (std::size_t i = la; i-- > 0;) {
    if (a.ids[i] != b.ids[i]) return cmp3(a.ids[i], b.ids[i]);
  }
  return 0;
}

int cmp_atoms(const atom& a, const atom& b) noexcept { return a == b ? 0 : (a < b ? -1 : 1); }

// Terms of one class with no children (everything but tuples, lists, maps and local funs).
int scalar_compare(const term& a, const term& b, mode m) noexcept {
  const int ca = type_class(a.type()), cb = type_class(b.type());
  if (ca != cb) return cmp3(ca, cb);
  switch (a.type()) {
    case term_type::integer:
    case term_type::big_integer:
    case term_type::float_: return cmp_numbers(a, b, m);
    case term_type::atom: return cmp_atoms(a.atom_value(), b.atom_value());
    case term_type::nil: return 0;
    case term_type::reference: return cmp_refs(a.as_ref(), b.as_ref());
    case term_type::port: {
      const auto &x = a.as_port(), &y = b.as_port();
      if (int c = cmp_atoms(x.node, y.node)) return c;
      if (int c = cmp3(x.creation, y.creation)) return c;
      return cmp3(x.id, y.id);
    }
    case term_type::pid: {
      const auto &x = a.as_pid(), &y = b.as_pid();
      if (int c = cmp3(x.serial, y.serial)) return c;
      if (int c = cmp3(x.id, y.id)) return c;
      if (int c = cmp_atoms(x.node, y.node)) return c;
      return cmp3(x.creation, y.creation);
    }
    case term_type::export_: {
      const auto &x = a.as_export(), &y = b.as_export();
      if (int c = cmp_atoms(x.module, y.module)) return c;
      if (int c = cmp_atoms(x.function, y.function)) return c;
      return cmp3(x.arity, y.arity);
    }
    case term_type::binary: return cmp_bits(a, b);
    default: return 0;  // containers: compared by the walker
  }
}

// Work items: a pair of terms, or a run of pairs (tuple elements, map keys or values, fun environments), or two
// list cursors walking segment by segment.
struct item {
  enum kind_t : std::uint8_t { pair, run, lists } kind;
  mode m;
  const term* a;
  const term* b;
  std::size_t n;  // run: remaining pairs
  // lists: remaining elements of the current segments and the tails after them
  const term* ta;
  const term* tb;
  std::size_t na;
  std::size_t nb;
};

class walker {
 public:
  // Returns <0, 0, >0. With stop_on_class_only it is also the equality test.
  int run(const term& a, const term& b, mode m) {
    const int c = walk(a, b, m);
    detail::trim_scratch(stack_);
    return c;
  }

 private:
  int walk(const term& a, const term& b, mode m) {
    stack_.clear();
    push_pair(&a, &b, m);
    while (!stack_.empty()) {
      item it = stack_.back();
      stack_.pop_back();
      int c = 0;
      switch (it.kind) {
        case item::pair: c = step_pair(*it.a, *it.b, it.m); break;
        case item::run:
          if (it.n > 1) stack_.push_back({item::run, it.m, it.a + 1, it.b + 1, it.n - 1, nullptr, nullptr, 0, 0});
          push_pair(it.a, it.b, it.m);
          break;
        case item::lists: c = step_lists(it); break;
      }
      if (c != 0) return c;
    }
    return 0;
  }

 private:
  void push_pair(const term* a, const term* b, mode m) {
    stack_.push_back({item::pair, m, a, b, 0, nullptr, nullptr, 0, 0});
  }
  void push_run(const term* a, const term* b, std::size_t n, mode m) {
    if (n) stack_.push_back({item::run, m, a, b, n, nullptr, nullptr, 0, 0});
  }

  int step_lists(item it) {
    // Advance each side to a non-empty segment, or to its final non-list tail.
    const auto advance = [](const term*& elems, std::size_t& n, const term*& tail) {
      while (n == 0 && tail->is_cons()) {
        auto seg = tail->list_segment();
        const term* next_tail = &tail->list_segment_tail();
        elems = seg.data();
        n = seg.size();
        tail = next_tail;
      }
    };
    advance(it.a, it.na, it.ta);
    advance(it.b, it.nb, it.tb);
    if (it.na && it.nb) {
      item rest = it;
      ++rest.a;
      ++rest.b;
      --rest.na;
      --rest.nb;
      stack_.push_back(rest);
      push_pair(it.a, it.b, it.m);
      return 0;
    }
    if (!it.na && !it.nb) {
      push_pair(it.ta, it.tb, it.m);
      return 0;
    }
    // One side still has elements (it is a list), the other ended in a non-list tail: their classes decide.
    const term& end = it.na ? *it.tb : *it.ta;
    int c = cmp3(type_class(term_type::list), type_class(end.type()));
    return it.na ? c : -c;
  }

  int step_pair(const term& a, const term& b, mode m) {
    const int ca = type_class(a.type()), cb = type_class(b.type());
    if (ca != cb) return cmp3(ca, cb);
    switch (a.type()) {
      case term_type::fun:
      case term_type::export_: {
        if (a.type() != b.type()) return a.type() == term_type::fun ? -1 : 1;
        if (a.type() == term_type::export_) return scalar_compare(a, b, m);
        const auto &x = a.as_fun(), &y = b.as_fun();
        if (int c = cmp_atoms(x.module, y.module)) return c;
        if (int c = cmp_numbers(x.old_index, y.old_index, mode::exact)) return c;
        if (int c = cmp_numbers(x.old_uniq, y.old_uniq, mode::exact)) return c;
        if (int c = cmp3(x.index, y.index)) return c;
        if (int c = std::memcmp(x.uniq, y.uniq, 16)) return c < 0 ? -1 : 1;
        if (int c = cmp3(x.free_vars.size(), y.free_vars.size())) return c;
        // The creator pid takes no part: OTP 25 orders funs by module, index, uniq, arity of the environment and
        // the environment, and two funs that differ only in their creator are =:= (checked live).
        push_run(x.free_vars.data(), y.free_vars.data(), x.free_vars.size(), m);
        return 0;
      }
      case term_type::tuple: {
        if (int c = cmp3(a.tuple_size(), b.tuple_size())) return c;
        push_run(a.elements().data(), b.elements().data(), a.tuple_size(), m);
        return 0;
      }
      case term_type::map: {
        if (int c = cmp3(a.map_size(), b.map_size())) return c;
        // Keys first (always in map key order, exactly), then values.
        push_run(a.map_values().data(), b.map_values().data(), a.map_size(), m);
        push_run(a.map_keys().data(), b.map_keys().data(), a.map_size(), mode::exact);
        return 0;
      }
      case term_type::list: {
        item it{item::lists, m, nullptr, nullptr, 0, &a, &b, 0, 0};
        return step_lists(it);
      }
      default: return scalar_compare(a, b, m);
    }
  }

  std::vector<item> stack_;
};

thread_local walker tl_walker;

bool same_shape_fast(const term& a, const term& b, bool& result) noexcept {
  // Immediates compare without the walker.
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case term_type::integer: result = a.small() == b.small(); return true;
    case term_type::atom: result = a.atom_value() == b.atom_value(); return true;
    case term_type::nil: result = true; return true;
    case term_type::float_: result = a.float_value() == b.float_value(); return true;
    default: break;
  }
  if (a.boxed() == b.boxed() && a.aux() == b.aux()) {
    result = true;
    return true;
  }
  return false;
}

}  // namespace

namespace {
// Terms with no children compare without the walker (sorting map keys is mostly this).
bool is_leaf(term_type t) noexcept {
  return t != term_type::tuple && t != term_type::list && t != term_type::map && t != term_type::fun;
}
}  // namespace

int compare(const term& a, const term& b) noexcept {
  if (is_leaf(a.type()) && is_leaf(b.type())) return scalar_compare(a, b, mode::order);
  return tl_walker.run(a, b, mode::order);
}
int compare_exact(const term& a, const term& b) noexcept {
  if (is_leaf(a.type()) && is_leaf(b.type())) return scalar_compare(a, b, mode::exact);
  return tl_walker.run(a, b, mode::exact);
}

bool exact_equal(const term& a, const term& b) noexcept {
  bool r;
  if (same_shape_fast(a, b, r)) return r;
  if (a.is_number() != b.is_number()) return false;
  return tl_walker.run(a, b, mode::exact) == 0;
}

bool equal(const term& a, const term& b) noexcept {
  bool r;
  if (same_shape_fast(a, b, r)) return r;
  return tl_walker.run(a, b, mode::order) == 0;
}

bool operator==(const term& a, const term& b) noexcept { return exact_equal(a, b); }

std::weak_ordering operator<=>(const term& a, const term& b) noexcept {
  int c = compare(a, b);
  return c < 0 ? std::weak_ordering::less : (c > 0 ? std::weak_ordering::greater : std::weak_ordering::equivalent);
}

// ---- hashing ----
namespace {

inline std::uint64_t mix(std::uint64_t h, std::uint64_t v) noexcept {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

std::uint64_t hash_big(const big_int& b) noexcept {
  std::uint64_t h = b.sign() < 0 ? 0x51ed27 : 0x1f3d5b;
  for (auto limb = b.backend().limbs(), end = limb + b.backend().size(); limb != end; ++limb)
    h = mix(h, static_cast<std::uint64_t>(*limb));
  return h;
}

std::uint64_t hash_number(const term& t, bool by_value) noexcept {
  switch (t.type()) {
    case term_type::integer: return mix(1, static_cast<std::uint64_t>(t.small()));
    case term_type::big_integer: return hash_big(t.big_ref());
    default: break;
  }
  double f = t.float_value();
  if (f == 0.0) f = 0.0;  // -0.0 =:= 0.0 in OTP 25
  if (by_value && std::trunc(f) == f) {
    constexpr double two63 = 9223372036854775808.0;
    if (f >= -two63 && f < two63) return mix(1, static_cast<std::uint64_t>(static_cast<std::int64_t>(f)));
    try {
      return hash_big(float_to_big(f));
    } catch (...) {
    }
  }
  return mix(2, std::bit_cast<std::uint64_t>(f));
}

std::size_t hash_term(const term& root, bool root_by_value) noexcept {
  // Each entry carries whether its numbers hash by value (==) or exactly; map keys are always exact.
  thread_local std::vector<std::pair<const term*, bool>> stack;
  stack.clear();
  std::uint64_t h = 0;
  stack.emplace_back(&root, root_by_value);
  while (!stack.empty()) {
    const auto [tp, by_value] = stack.back();
    const term& t = *tp;
    stack.pop_back();
    h = mix(h, static_cast<std::uint64_t>(type_class(t.type())));
    switch (t.type()) {
      case term_type::integer:
      case term_type::big_integer:
      case term_type::float_: h = mix(h, hash_number(t, by_value)); break;
      case term_type::atom: h = mix(h, t.atom_value().hash()); break;
      case term_type::nil: break;
      case term_type::reference: {
        const auto& r = t.as_ref();
        h = mix(mix(h, r.node.hash()), r.creation);
        std::size_t len = r.len;
        while (len > 1 && r.ids[len - 1] == 0) --len;  // equal refs may differ in trailing zero words
        for (std::size_t i = 0; i < len; ++i) h = mix(h, r.ids[i]);
        break;
      }
      case term_type::port: {
        const auto& p = t.as_port();
        h = mix(mix(mix(h, p.node.hash()), p.id), p.creation);
        break;
      }
      case term_type::pid: {
        const auto& p = t.as_pid();
        h = mix(mix(mix(mix(h, p.node.hash()), p.id), p.serial), p.creation);
        break;
      }
      case term_type::export_: {
        const auto& e = t.as_export();
        h = mix(mix(mix(h, e.module.hash()), e.function.hash()), e.arity);
        break;
      }
      case term_type::fun: {
        const auto& f = t.as_fun();
        h = mix(mix(mix(h, f.module.hash()), f.index), f.free_vars.size());
        for (const auto& v : f.free_vars) stack.emplace_back(&v, by_value);
        break;
      }
      case term_type::tuple:
        h = mix(h, t.tuple_size());
        for (const auto& e : t.elements()) stack.emplace_back(&e, by_value);
        break;
      case term_type::map:
        h = mix(h, t.map_size());
        for (const auto& k : t.map_keys()) stack.emplace_back(&k, false);
        for (const auto& v : t.map_values()) stack.emplace_back(&v, by_value);
        break;
      case term_type::list: {
        const term* cur = &t;
        while (cur->is_cons()) {
          for (const auto& e : cur->list_segment()) stack.emplace_back(&e, by_value);
          cur = &cur->list_segment_tail();
        }
        stack.emplace_back(cur, by_value);
        break;
      }
      case term_type::binary: {
        h = mix(h, t.bit_size());
        auto bytes = t.bytes();
        std::uint64_t x = 0;
        std::size_t i = 0;
        for (; i + 8 <= bytes.size(); i += 8) {
          std::memcpy(&x, bytes.data() + i, 8);
          h = mix(h, x);
        }
        x = 0;
        std::memcpy(&x, bytes.data() + i, bytes.size() - i);
        h = mix(h, x);
        break;
      }
    }
  }
  detail::trim_scratch(stack);
  return static_cast<std::size_t>(h);
}

}  // namespace

std::size_t hash_exact(const term& t) noexcept { return hash_term(t, false); }
std::size_t hash_equal(const term& t) noexcept { return hash_term(t, true); }

}  // namespace cnode::etf
