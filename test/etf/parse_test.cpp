// Parsing: literals against terms built directly, errors with their positions, print -> parse round trips of random
// terms, and 1 000 000-deep nesting.
#include <doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "etf/format.hpp"
#include "etf/parse.hpp"

using namespace cnode::etf;

namespace {

term p(std::string_view text, const parse_options& opts = {}) {
  parse_result r = parse(text, opts);
  INFO(text, " -> ", describe(r));
  REQUIRE(r);
  return r.value;
}

term bin(std::initializer_list<int> l, std::uint8_t last_bits = 8) {
  std::vector<std::uint8_t> v;
  for (int x : l) v.push_back(static_cast<std::uint8_t>(x));
  return term::bitstring(v, last_bits);
}

term a(const char* s) { return term(atom(s)); }

// The shape of a failure: error, line, column.
struct failed {
  parse_error error;
  std::size_t line, column;
};
failed f(std::string_view text) {
  parse_result r = parse(text);
  REQUIRE_FALSE(r);
  CHECK(r.ec.category() == parse_category());
  return {static_cast<parse_error>(r.ec.value()), r.line, r.column};
}
#define CHECK_FAILS(text, err, l, c)          \
  do {                                        \
    failed x_ = f(text);                      \
    CHECK(x_.error == parse_error::err);      \
    CHECK(x_.line == (l));                    \
    CHECK(x_.column == (c));                  \
  } while (0)

}  // namespace

TEST_CASE("numbers") {
  CHECK(p("0") == term(0));
  CHECK(p("-5") == term(-5));
  CHECK(p("- 5") == term(-5));
  CHECK(p("+5") == term(5));
  CHECK(p("1_000_000") == term(1000000));
  CHECK(p("16#FF") == term(255));
  CHECK(p("16#ff_ff") == term(65535));
  CHECK(p("2#1010") == term(10));
  CHECK(p("36#Zz") == term(1295));
  CHECK(p("002#11") == term(3));
  CHECK(p("9223372036854775807") == term(INT64_MAX));
  CHECK(p("-9223372036854775808") == term(INT64_MIN));
  CHECK(p("9223372036854775808") == term::from_big(big_int(1) << 63));
  CHECK(p("16#10000000000000000000000000000000") == term::from_big(big_int(1) << 124));
  CHECK(p("-123456789012345678901234567890") == term::from_big(-(big_int(123456789012345678u) * 1000000000000u + 901234567890u)));
  CHECK(p("$a") == term('a'));
  CHECK(p("$\\n") == term('\n'));
  CHECK(p("$ ") == term(' '));
  CHECK(p("$\\x{263A}") == term(0x263A));
  CHECK(p("$☺") == term(0x263A));
  CHECK(p("$\\^A") == term(1));
  CHECK(p("$\\101") == term(65));
  CHECK(p("$\\s") == term(' '));
  CHECK(p("-$a") == term(-97));
  CHECK(p("1.0e10") == term(1.0e10));
  CHECK(p("1.5E-3") == term(1.5e-3));
  CHECK(p("1.5e+3") == term(1500.0));
  CHECK(p("1_0.2_5") == term(10.25));
  CHECK(p("0.1") == term(0.1));
  CHECK(p("5.0e-324") == term(5.0e-324));
  CHECK(p("1.0e-400") == term(0.0));  // list_to_float gives 0.0 below the smallest subnormal
  term nz = p("-0.0");
  CHECK(std::signbit(nz.float_value()));
  CHECK(p("1.7976931348623157e308") == term(1.7976931348623157e308));
}

TEST_CASE("atoms and strings") {
  CHECK(p("hello") == a("hello"));
  CHECK(p("a@b_C9") == a("a@b_C9"));
  CHECK(p("'hello world'") == a("hello world"));
  CHECK(p("'end'") == a("end"));
  CHECK(p("ça") == a("ça"));
  CHECK(p("'Ωmega'") == a("Ωmega"));
  CHECK(p("'a\\'b\\\\c'") == a("a'b\\c"));
  CHECK(p("'\\x{1F600}'") == a("😀"));
  CHECK(p("'a\uFFFE'") == a("a\uFFFE"));  // erl_scan refuses this; we read what we print
  CHECK(p("''") == a(""));
  CHECK(p("true") == term(true));
  CHECK(p("\"abc\"") == term::string("abc"));
  CHECK(p("\"\"") == term());
  CHECK(p("\"a\" \"b\"  \"c\"") == term::string("abc"));
  CHECK(p("\"\\x{263A}\\n\\101\\^A\\e\\d\\s\\x41\\z\"") ==
        term::list({term(0x263A), term('\n'), term(65), term(1), term(27), term(127), term(' '), term(0x41), term('z')}));
  CHECK(p("\"\\1234\"") == term::list({term(0123), term('4')}));  // at most three octal digits
  CHECK(p("\"héllo\"") == term::string("héllo"));
  CHECK(p("\"line\nbreak\"") == term::string("line\nbreak"));
}

TEST_CASE("containers") {
  CHECK(p("[]") == term());
  CHECK(p("[ ]") == term());
  CHECK(p("[1,2,3]") == term::list({term(1), term(2), term(3)}));
  CHECK(p("[a|b]") == term::cons(a("a"), a("b")));
  CHECK(p("[1,2|[3]]") == term::list({term(1), term(2), term(3)}));
  CHECK(p("{}") == term::tuple(std::span<const term>{}));
  CHECK(p("{a,{b,[]}}") == term::tuple({a("a"), term::tuple({a("b"), term()})}));
  CHECK(p("#{}") == term::map({}));
  CHECK(p("#{a => 1, \"b\" => [x]}") == term::map({{a("a"), term(1)}, {term::string("b"), term::list({a("x")})}}));
  CHECK(p("#{a => 1, a => 2}") == term::map({{a("a"), term(2)}}));
  CHECK(p("# {k=>#{}}") == term::map({{a("k"), term::map({})}}));
  CHECK(p("fun lists:map/2") == term::export_({atom("lists"), atom("map"), 2}));
  CHECK(p("fun 'a b':'end'/0") == term::export_({atom("a b"), atom("end"), 0}));
  CHECK(p(" {a} . ") == term::tuple({a("a")}));
  CHECK(p("% comment\n[1, % two\n 2].% end") == term::list({term(1), term(2)}));
}

TEST_CASE("binaries") {
  CHECK(p("<<>>") == bin({}));
  CHECK(p("<<\"\">>") == bin({}));
  CHECK(p("<<\"abc\">>") == bin({'a', 'b', 'c'}));
  CHECK(p("<<\"a\" \"b\">>") == bin({'a', 'b'}));
  CHECK(p("<<1,2,3>>") == bin({1, 2, 3}));
  CHECK(p("<<256,-1>>") == bin({0, 255}));
  CHECK(p("<<1:3>>") == bin({0x20}, 3));
  CHECK(p("<<255,1:1>>") == bin({255, 0x80}, 1));
  CHECK(p("<<1:0>>") == bin({}));
  CHECK(p("<<\"héllo\"/utf8>>") == bin({'h', 0xC3, 0xA9, 'l', 'l', 'o'}));
  CHECK(p("<<$é/utf8>>") == bin({0xC3, 0xA9}));
  // Erlang's answers (erl_parse:parse_term) for these:
  CHECK(p("<<\"abc\":16>>") == bin({0, 97, 0, 98, 0, 99}));
  CHECK(p("<<1.5:16/float>>") == bin({62, 0}));
  CHECK(p("<<1.0e10:16/float>>") == bin({124, 0}));
  CHECK(p("<<65519.0:16/float>>") == bin({123, 255}));
  CHECK(p("<<3.0e-8:16/float>>") == bin({0, 1}));
  CHECK(p("<<1/float>>") == bin({63, 240, 0, 0, 0, 0, 0, 0}));
  CHECK(p("<<1.5:32/float-little>>") == bin({0, 0, 192, 63}));
  CHECK(p("<<1.0e300:32/float>>") == bin({127, 128, 0, 0}));
  CHECK(p("<<1:12/little>>") == bin({1, 0}, 4));
  CHECK(p("<<-1:12/little>>") == bin({255, 0xF0}, 4));
  CHECK(p("<<255:9/little>>") == bin({255, 0}, 1));
  CHECK(p("<<1:16/little>>") == bin({1, 0}));
  CHECK(p("<<16#263A/utf16>>") == bin({0x26, 0x3A}));
  CHECK(p("<<16#1F600/utf16-little>>") == bin({0x3D, 0xD8, 0x00, 0xDE}));
  CHECK(p("<<\"ab\"/utf32-little>>") == bin({97, 0, 0, 0, 98, 0, 0, 0}));
  CHECK(p("<<1:4/unit:8>>") == bin({0, 0, 0, 1}));
  CHECK(p("<<1:3/unsigned-big-integer>>") == bin({0x20}, 3));
  CHECK(p("<<-1:8/signed-unit:1>>") == bin({255}));
  CHECK(p("<<1/integer-integer>>") == bin({1}));
  CHECK(p("<<16#0102030405060708090A:80>>") == bin({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  CHECK(p("<<-2:80>>") == bin({255, 255, 255, 255, 255, 255, 255, 255, 255, 254}));
  CHECK(p("<<16#0102030405060708090A:80/little>>") == bin({10, 9, 8, 7, 6, 5, 4, 3, 2, 1}));
}

TEST_CASE("pids, ports and references in the shell's forms") {
  parse_options o;
  o.local_node = atom("me@host");
  o.creation = 7;
  CHECK(p("<0.85.0>", o) == term::pid({atom("me@host"), 85, 0, 7}));
  CHECK(p("<a@b.1.2>") == term::pid({atom("a@b"), 1, 2, 0}));
  CHECK(p("<'a@b.c'.1.2>") == term::pid({atom("a@b.c"), 1, 2, 0}));
  CHECK(p("<0.1.2>") == term::pid({atom::nonode(), 1, 2, 0}));
  CHECK(p("#Port<0.4294967298>", o) == term::port({atom("me@host"), 4294967298u, 7}));
  ref_value r;
  r.node = atom("me@host");
  r.creation = 7;
  r.len = 3;
  r.ids[0] = 41839, r.ids[1] = 1211105281, r.ids[2] = 4111052530u;
  CHECK(p("#Ref<0.4111052530.1211105281.41839>", o) == term::reference(r));
  CHECK(p("[<0.1.2>,#Ref<0.1>]") == term::list({term::pid({atom::nonode(), 1, 2, 0}),
                                              term::reference({atom::nonode(), 0, 1, {1}})}));
}

TEST_CASE("errors name what and where") {
  CHECK_FAILS("", unexpected_end, 1, 1);
  CHECK_FAILS("   \n  ", unexpected_end, 2, 3);
  CHECK_FAILS("{a,b", unexpected_end, 1, 5);
  CHECK_FAILS("{a,}", unexpected_token, 1, 4);
  CHECK_FAILS("[a|]", unexpected_token, 1, 4);
  CHECK_FAILS("[1|2|3]", unexpected_token, 1, 5);
  CHECK_FAILS("{a b}", unexpected_token, 1, 4);
  CHECK_FAILS("#{a => 1, b}", unexpected_token, 1, 12);
  CHECK_FAILS("\n\n  {ok, X}", variable, 3, 8);
  CHECK_FAILS("[_]", variable, 1, 2);
  CHECK_FAILS("{a, end}", reserved_word, 1, 5);
  CHECK_FAILS("\"abc", unexpected_end, 1, 1);
  CHECK_FAILS("'abc", unexpected_end, 1, 1);
  CHECK_FAILS("\"a\\x{110000}\"", bad_escape, 1, 3);
  CHECK_FAILS("\"a\\xg\"", bad_escape, 1, 3);
  CHECK_FAILS("37#1", bad_integer, 1, 1);
  CHECK_FAILS("16#", bad_integer, 1, 1);
  CHECK_FAILS("1.0e400", bad_float, 1, 1);
  CHECK_FAILS("[1.5e]", bad_float, 1, 2);
  CHECK_FAILS("{é, ~}", unexpected_token, 1, 5);
  CHECK_FAILS("{é, ☺}", illegal_character, 1, 5);  // outside quotes only Latin-1 makes tokens
  CHECK_FAILS("\xff", illegal_character, 1, 1);
  CHECK_FAILS("fun (X) -> X end", not_a_literal, 1, 1);
  CHECK_FAILS("fun f/1", not_a_literal, 1, 1);
  CHECK_FAILS("#Fun<erl_eval.1.2>", not_a_literal, 1, 1);
  CHECK_FAILS("#rec{a = 1}", not_a_literal, 1, 1);
  CHECK_FAILS("1 + 2", trailing_input, 1, 3);
  CHECK_FAILS("- -5", not_a_literal, 1, 1);
  CHECK_FAILS("<<(1 bsl 70):72>>", unexpected_token, 1, 3);
  CHECK_FAILS("<<1.5>>", bad_binary, 1, 3);
  CHECK_FAILS("<<a>>", bad_binary, 1, 3);
  CHECK_FAILS("<<\"abc\"/binary>>", bad_binary, 1, 9);
  CHECK_FAILS("<<1:64/unit:1024>>", bad_binary, 1, 13);
  CHECK_FAILS("<<1/little-big>>", bad_binary, 1, 12);
  CHECK_FAILS("<<\"a\"/utf8:8>>", unexpected_token, 1, 11);
  CHECK_FAILS("<<1:4/utf8>>", bad_binary, 1, 3);
  CHECK_FAILS("<<16#110000/utf8>>", bad_binary, 1, 3);
  CHECK_FAILS("<<1:24/float>>", bad_binary, 1, 3);
  CHECK_FAILS("<1.2.3>", bad_pid, 1, 1);
  CHECK_FAILS("<0.1>", bad_pid, 1, 1);
  CHECK_FAILS("<0.1.2", unexpected_end, 1, 7);
  CHECK_FAILS("{a}. {b}.", trailing_input, 1, 6);
  CHECK_FAILS("'" + std::string(256, 'x') + "'", bad_atom, 1, 1);
  parse_options shallow;
  shallow.max_depth = 3;
  CHECK(parse("[[[[]]]]", shallow));  // three open lists and a []
  parse_result r = parse("[[[[1]]]]", shallow);
  CHECK(r.ec == parse_error::too_deep);
  CHECK(r.offset == 3);
  CHECK(describe(parse("{a,}")) == "line 1, column 4: syntax error");
  CHECK_THROWS_AS(parse_or_throw("{a,}"), std::system_error);
  CHECK(parse_or_throw("{a}") == term::tuple({a("a")}));
}

TEST_CASE("parse_prefix reads term after term") {
  std::string_view text = "{a, 1}.\n[b]. \"c\"  % last\n";
  std::vector<term> got;
  for (;;) {
    parse_result r = parse_prefix(text);
    if (!r) {
      CHECK(r.ec == parse_error::unexpected_end);
      CHECK(r.offset == text.size());
      break;
    }
    got.push_back(r.value);
    text.remove_prefix(r.offset);
  }
  REQUIRE(got.size() == 3);
  CHECK(got[0] == term::tuple({a("a"), term(1)}));
  CHECK(got[1] == term::list({a("b")}));
  CHECK(got[2] == term::string("c"));
  CHECK(parse_prefix("[1] rest").offset == 3);
}

// ---- print -> parse round trips of random terms ----
namespace {

class random_terms {
 public:
  explicit random_terms(std::uint64_t seed) : rng_(seed) {}

  term any(int depth) {
    switch (pick(depth > 0 ? 14 : 9)) {
      case 0: return term(static_cast<std::int64_t>(rng_()) >> pick(64));
      case 1: {
        big_int v = rng_();
        for (int i = pick(6); i > 0; --i) v = (v << 64) + rng_();
        return term::from_big(pick(2) ? v : big_int(-v));
      }
      case 2: return term(a_float());
      case 3: return term(an_atom());
      case 4: return a_string();
      case 5: return a_binary();
      case 6: return term::pid({node(), static_cast<std::uint32_t>(rng_() >> 33), pick(8192), 0});
      case 7: return term::export_({an_atom(), an_atom(), static_cast<std::uint8_t>(pick(256))});
      case 8: {
        if (pick(2)) return term::port({node(), rng_() >> pick(64), 0});
        ref_value r;
        r.node = node();
        r.len = static_cast<std::uint8_t>(1 + pick(5));
        for (auto& w : r.ids) w = static_cast<std::uint32_t>(rng_());
        for (std::size_t i = r.len; i < ref_value::max_words; ++i) r.ids[i] = 0;
        return term::reference(r);
      }
      case 9:
      case 10: {
        std::vector<term> v(pick(5));
        for (auto& e : v) e = any(depth - 1);
        return term::tuple(std::move(v));
      }
      case 11: {
        std::vector<term> v(pick(5));
        for (auto& e : v) e = any(depth - 1);
        return pick(4) ? term::list(std::move(v)) : term::improper_list(std::move(v), any(depth - 1));
      }
      case 12: {
        std::vector<std::pair<term, term>> kv(pick(5));
        for (auto& [k, v] : kv) k = any(depth - 1), v = any(depth - 1);
        return term::map(std::move(kv));
      }
      default: return term::list({term(static_cast<std::int64_t>(pick(0x110000))), any(depth - 1)});
    }
  }

 private:
  std::uint32_t pick(std::uint64_t n) { return static_cast<std::uint32_t>(rng_() % n); }

  double a_float() {
    for (;;) {
      double d;
      if (pick(3) == 0) {
        d = static_cast<double>(static_cast<std::int64_t>(rng_() >> pick(64))) / std::pow(10.0, pick(12));
      } else {
        std::uint64_t bits = rng_();
        std::memcpy(&d, &bits, sizeof d);
      }
      if (std::isfinite(d)) return d;
    }
  }

  std::uint32_t a_char() {
    static constexpr std::uint32_t interesting[] = {'\'', '"', '\\', '\n', 0, 7, 27, 127, 128, 159, 160, 0xDF, 0xF7,
                                                    0xFF, 0x263A, 0xFFFD, 0xFFFE, 0x1F600, '@', '_', '.', ' ', '$'};
    switch (pick(4)) {
      case 0: return interesting[pick(std::size(interesting))];
      case 1: return 'a' + pick(26);
      case 2: return 0x20 + pick(0x5F);
      default:
        for (;;) {
          std::uint32_t c = pick(0x110000);
          if (c < 0xD800 || c > 0xDFFF) return c;
        }
    }
  }

  atom an_atom() {
    static const char* fixed[] = {"ok", "end", "maybe", "Node", "", "a@b", "nonode@nohost", "ß", "a.b", "_"};
    if (pick(3) == 0) return atom(fixed[pick(std::size(fixed))]);
    std::string s;
    for (int i = pick(12); i > 0; --i) {
      append(s, a_char());
    }
    return atom(s);
  }

  static void append(std::string& s, std::uint32_t c) {
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else if (c < 0x800) {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | (c >> 12));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (c >> 18));
      s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
  }

  term a_string() {
    std::vector<term> v(pick(10));
    for (auto& e : v) e = term(static_cast<std::int64_t>(a_char()));
    return term::list(std::move(v));
  }

  term a_binary() {
    std::vector<std::uint8_t> b(pick(12));
    const int style = pick(3);
    if (style == 0) {
      for (auto& x : b) x = static_cast<std::uint8_t>(rng_());
    } else {
      std::string s;
      for (std::size_t i = 0; i < b.size(); ++i) append(s, style == 1 ? 0x20 + pick(0x5F) : a_char());
      b.assign(s.begin(), s.end());
    }
    return term::bitstring(b, static_cast<std::uint8_t>(b.empty() || pick(3) ? 8 : 1 + pick(8)));
  }

  atom node() {
    static const char* nodes[] = {"a@localhost", "nonode@nohost", "b@host.example.com", "Weird node"};
    return atom(nodes[pick(std::size(nodes))]);
  }

  std::mt19937_64 rng_;
};

}  // namespace

TEST_CASE("print then parse gives the same term (random terms)") {
  // CNODE_TEST_SEED=<n> repeats a run; the seed is shown with any failure.
  const char* fixed = std::getenv("CNODE_TEST_SEED");
  const std::uint64_t seed = fixed ? std::strtoull(fixed, nullptr, 10) : std::random_device{}();
  CAPTURE(seed);
  random_terms gen(seed);
  parse_options po;
  po.local_node = atom("a@localhost");
  for (int i = 0; i < 20000; ++i) {
    term t = gen.any(4);
    for (bool strings : {true, false}) {
      for (bool local : {false, true}) {
        print_options opts;
        opts.strings = strings;
        if (local) opts.local_node = atom("a@localhost");
        std::string text = to_string(t, opts);
        parse_result r = parse(text, local ? po : parse_options{});
        INFO(text);
        REQUIRE_MESSAGE(r, describe(r));
        REQUIRE(r.value == t);
      }
    }
  }
}

TEST_CASE("1 000 000-deep nesting parses without recursion") {
  constexpr std::size_t depth = 1'000'000;
  std::string text(depth, '[');
  text.append(depth, ']');
  term t = p(text);
  std::size_t n = 0;
  for (term cur = t; cur.is_cons(); cur = cur.head()) ++n;
  CHECK(n == depth - 1);  // the innermost [] is nil
  CHECK(to_string(t) == text);

  std::string mixed;
  for (std::size_t i = 0; i < depth / 4; ++i) mixed += "{#{k => [x|";
  mixed += "0";
  for (std::size_t i = 0; i < depth / 4; ++i) mixed += "]},1}";
  term m = p(mixed);
  CHECK(to_string(m) == [&] {
    std::string s;
    for (std::size_t i = 0; i < depth / 4; ++i) s += "{#{k => [x|";
    s += "0";
    for (std::size_t i = 0; i < depth / 4; ++i) s += "]},1}";
    return s;
  }());
}
