// The libei cross-check's corpus: edge values at every encoding boundary plus seeded random terms of every type
// libei supports (no NUL in atoms: libei's atom and node buffers are C strings).
#include "ei_corpus.hpp"

#include <cmath>
#include <cstring>
#include <random>
#include <string>

namespace cnode::etf::ei_check {
namespace {

class generator {
 public:
  explicit generator(std::uint64_t seed) : rng_(seed) {
    for (int i = 0; i < 8; ++i) nodes_.push_back(atom(random_text(1 + pick(20)) + "@" + random_text(1 + pick(10))));
    nodes_.push_back(atom("nonode@nohost"));
  }

  term any(int budget) {
    if (budget <= 1) return leaf();
    switch (pick(9)) {
      case 0: {
        std::vector<term> e;
        int n = pick(std::min(budget, 8) + 1);
        for (int i = 0; i < n; ++i) e.push_back(any(budget / std::max(n, 1)));
        return term::tuple(std::move(e));
      }
      case 1:
      case 2: {
        std::vector<term> e;
        int n = 1 + pick(std::min(budget, 8));
        for (int i = 0; i < n; ++i) e.push_back(any(budget / n));
        if (pick(4) == 0) return term::improper_list(std::move(e), leaf_not_list());
        return term::list(std::move(e));
      }
      case 3: {
        std::vector<std::pair<term, term>> kvs;
        int n = pick(4) == 0 ? 33 + pick(20) : pick(std::min(budget, 10) + 1);
        for (int i = 0; i < n; ++i) kvs.emplace_back(any(budget / (2 * n + 1)), any(budget / (2 * n + 1)));
        return term::map(std::move(kvs));
      }
      case 4:
        return closure(budget);
      default:
        return leaf();
    }
  }

  term leaf() {
    switch (pick(14)) {
      case 0: return term(static_cast<std::int64_t>(pick(256)));
      case 1: return term(static_cast<std::int32_t>(rng_()));
      case 2: return boundary_int();
      case 3: return big();
      case 4: return float_();
      case 5:
      case 6: return term(random_atom());
      case 7: return binary();
      case 8: return bitstring();
      case 9: return term::pid({node(), u32(), u32(), u32()});
      case 10: return term::port({node(), pick(2) ? std::uint64_t{u32()} : rng_(), u32()});
      case 11: return reference();
      case 12: return byte_string();
      default: return term::export_({random_atom(), random_atom(), static_cast<std::uint8_t>(pick(256))});
    }
  }

  // Values at every encoding boundary: SMALL_INTEGER/INTEGER/SMALL_BIG/LARGE_BIG, int64/uint64 edges.
  std::vector<term> edges() {
    std::vector<term> out;
    for (int bits : {7, 8, 27, 28, 31, 32, 59, 60, 63, 64, 65, 2040, 2048})
      for (int d = -2; d <= 2; ++d)
        for (int sign : {1, -1}) out.push_back(term::from_big(sign * ((big_int(1) << bits) + d)));
    out.push_back(term(INT64_MIN));
    out.push_back(term(INT64_MAX));
    out.push_back(term::from_big(big_int(UINT64_MAX)));  // not term(UINT64_MAX): see the report on term.hpp
    big_int huge = 1;
    for (int i = 0; i < 1000; ++i) huge *= 10;
    out.push_back(term::from_big(huge - 1));
    out.push_back(term::from_big(1 - huge));
    for (double d : {0.0, -0.0, 5e-324, -5e-324, 2.2250738585072009e-308, 2.2250738585072014e-308,
                     1.7976931348623157e308, -1.7976931348623157e308, 0.1, 1.0e15, 1.0e16})
      out.push_back(term(d));
    out.push_back(term(atom("")));
    out.push_back(term(atom(std::string(255, 'a'))));
    std::string wide;
    for (int i = 0; i < 255; ++i) wide += "\xf0\x9f\x98\x80";  // 255 four-byte code points
    out.push_back(term(atom(wide)));
    out.push_back(term::binary(std::string_view()));
    for (std::uint8_t bits = 1; bits <= 7; ++bits) out.push_back(term::bitstring(std::vector<std::uint8_t>{0xff}, bits));
    std::vector<term> s(65535, term(97)), s2(65536, term(97));
    out.push_back(term::list(std::move(s)));
    out.push_back(term::list(std::move(s2)));
    out.push_back(term::tuple(std::vector<term>(256, term(1))));
    for (std::uint8_t len = 1; len <= 5; ++len) {
      ref_value r;
      r.node = atom("a@b");
      r.len = len;
      r.creation = 0xffffffff;
      for (int i = 0; i < len; ++i) r.ids[i] = 0xfffffff0u + static_cast<std::uint32_t>(i);
      out.push_back(term::reference(r));
    }
    for (std::uint64_t id : {std::uint64_t{0}, std::uint64_t{0x0fffffff}, std::uint64_t{0x10000000},
                             std::uint64_t{0xffffffff}, ~std::uint64_t{0}})
      out.push_back(term::port({atom("p@h"), id, 7}));
    out.push_back(closure(20));
    return out;
  }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }
  std::uint32_t u32() { return pick(3) == 0 ? static_cast<std::uint32_t>(rng_()) : static_cast<std::uint32_t>(pick(1000)); }
  atom node() { return nodes_[static_cast<std::size_t>(pick(static_cast<int>(nodes_.size())))]; }

  // Latin-1 letters and multi-byte UTF-8, never NUL (libei's node and atom buffers are C strings).
  std::string random_text(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      std::uint32_t cp;
      switch (pick(6)) {
        case 0: cp = 0xa0 + static_cast<std::uint32_t>(pick(0x60)); break;
        case 1: cp = 0x100 + static_cast<std::uint32_t>(pick(0x700)); break;
        case 2: cp = 0x4e00 + static_cast<std::uint32_t>(pick(0x5000)); break;
        case 3: cp = 0x10000 + static_cast<std::uint32_t>(pick(0xf0000)); break;
        default: cp = 'a' + static_cast<std::uint32_t>(pick(26));
      }
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else if (cp < 0x800) {
        s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      } else if (cp < 0x10000) {
        s.push_back(static_cast<char>(0xe0 | (cp >> 12)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      } else {
        s.push_back(static_cast<char>(0xf0 | (cp >> 18)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      }
    }
    return s;
  }
  atom random_atom() {
    if (atoms_.size() < 300) atoms_.push_back(atom(random_text(pick(16))));
    return atoms_[static_cast<std::size_t>(pick(static_cast<int>(atoms_.size())))];
  }

  term boundary_int() {
    static constexpr int bits[] = {27, 31, 32, 63, 64};
    big_int v = (big_int(1) << bits[pick(5)]) + (pick(5) - 2);
    return term::from_big(pick(2) ? v : big_int(-v));
  }
  term big() {
    big_int v = 1 + pick(9);
    int digits = pick(50) == 0 ? pick(2000) : pick(40);
    for (int i = 0; i < digits; ++i) v = v * 10 + pick(10);
    return term::from_big(pick(2) ? v : big_int(-v));
  }
  term float_() {
    for (;;) {
      std::uint64_t bits = rng_();
      double d;
      std::memcpy(&d, &bits, sizeof d);
      if (std::isfinite(d)) return term(pick(3) == 0 ? static_cast<double>(pick(1000)) / 8 : d);
    }
  }
  term binary() {
    std::vector<std::uint8_t> b(static_cast<std::size_t>(pick(20) == 0 ? 64 + pick(300) : pick(30)));
    for (auto& c : b) c = static_cast<std::uint8_t>(rng_());
    return term::binary(b);
  }
  term bitstring() {
    std::vector<std::uint8_t> b(static_cast<std::size_t>(1 + pick(10)));
    for (auto& c : b) c = static_cast<std::uint8_t>(rng_());
    auto bits = static_cast<std::uint8_t>(1 + pick(7));
    b.back() = static_cast<std::uint8_t>(b.back() & (0xff << (8 - bits)));  // unused low bits are zero
    return term::bitstring(b, bits);
  }
  term byte_string() {
    std::vector<term> e(static_cast<std::size_t>(1 + pick(30)));
    for (auto& c : e) c = term(pick(256));
    return term::list(std::move(e));
  }
  term leaf_not_list() {
    for (;;) {
      term t = leaf();
      if (!t.is_list()) return t;
    }
  }
  term reference() {
    ref_value r;
    r.node = node();
    r.creation = u32();
    r.len = static_cast<std::uint8_t>(1 + pick(5));
    for (int i = 0; i < r.len; ++i) r.ids[i] = u32();
    return term::reference(r);
  }
  term closure(int budget) {
    fun_value v;
    v.arity = static_cast<std::uint8_t>(pick(256));
    for (auto& b : v.uniq) b = static_cast<std::uint8_t>(rng_());
    v.index = u32();
    v.module = random_atom();
    v.old_index = term(pick(1000));
    v.old_uniq = term(static_cast<std::int32_t>(rng_()));
    v.pid = term::pid({node(), u32(), u32(), u32()});
    int n = pick(4);
    for (int i = 0; i < n; ++i) v.free_vars.push_back(any(budget / 4));
    return term::fun(std::move(v));
  }

  std::mt19937_64 rng_;
  std::vector<atom> nodes_;
  std::vector<atom> atoms_;
};

}  // namespace

std::vector<term> ei_corpus(std::uint64_t seed, long count) {
  generator gen(seed);
  std::vector<term> corpus = gen.edges();
  for (long i = 0; i < count; ++i) corpus.push_back(gen.any(1 + static_cast<int>(i % 40)));
  return corpus;
}

}  // namespace cnode::etf::ei_check
