// Printing: every rule against what a live OTP 25.2.3 printed. The table was produced once with
//   erl +pc unicode: {ok,T} = erl_parse:parse_term(Tokens of Source), io_lib:format("~0tp", [T])
// for each Source; etf::parse builds the term here (its own tests check it against terms built directly).
#include <doctest.h>

#include <fmt/format.h>

#include "etf/format.hpp"
#include "etf/parse.hpp"

using namespace cnode::etf;

namespace {

struct printed_case {
  const char* source;
  const char* erl;  // io_lib:format("~0tp", [Term]) on OTP 25.2.3 with +pc unicode
};

const printed_case erl_printed[] = {
    {R"~(0)~", R"~(0)~"},
    {R"~(-1)~", R"~(-1)~"},
    {R"~(123456789012345678901234567890)~", R"~(123456789012345678901234567890)~"},
    {R"~(-123456789012345678901234567890)~", R"~(-123456789012345678901234567890)~"},
    {R"~(9223372036854775807)~", R"~(9223372036854775807)~"},
    {R"~(9223372036854775808)~", R"~(9223372036854775808)~"},
    {R"~(-9223372036854775808)~", R"~(-9223372036854775808)~"},
    {R"~(16#FF)~", R"~(255)~"},
    {R"~(2#1010)~", R"~(10)~"},
    {R"~(36#zz)~", R"~(1295)~"},
    {R"~(1_000_000)~", R"~(1000000)~"},
    {R"~($a)~", R"~(97)~"},
    {R"~($\n)~", R"~(10)~"},
    {R"~($\x{263A})~", R"~(9786)~"},
    {R"~(-$a)~", R"~(-97)~"},
    {R"~(0.1)~", R"~(0.1)~"},
    {R"~(1.0e-300)~", R"~(1.0e-300)~"},
    {R"~(-0.0)~", R"~(-0.0)~"},
    {R"~(0.0)~", R"~(0.0)~"},
    {R"~(1.7976931348623157e308)~", R"~(1.7976931348623157e308)~"},
    {R"~(5.0e-324)~", R"~(5.0e-324)~"},
    {R"~(1.0e10)~", R"~(1.0e10)~"},
    {R"~(1.0e15)~", R"~(1.0e15)~"},
    {R"~(1.0e16)~", R"~(1.0e16)~"},
    {R"~(1.0e22)~", R"~(1.0e22)~"},
    {R"~(123456789012345678.0)~", R"~(1.2345678901234568e17)~"},
    {R"~(0.0001)~", R"~(0.0001)~"},
    {R"~(0.00001)~", R"~(1.0e-5)~"},
    {R"~(1.5e-3)~", R"~(0.0015)~"},
    {R"~(1000.0)~", R"~(1.0e3)~"},
    {R"~(100.0)~", R"~(100.0)~"},
    {R"~(1200.0)~", R"~(1.2e3)~"},
    {R"~(12345678900.0)~", R"~(12345678900.0)~"},
    {R"~(9007199254740992.0)~", R"~(9.007199254740992e15)~"},
    {R"~(9007199254740993.0)~", R"~(9.007199254740992e15)~"},
    {R"~(1234567890123456.0)~", R"~(1234567890123456.0)~"},
    {R"~(0.00123456789)~", R"~(0.00123456789)~"},
    {R"~(0.000123456789)~", R"~(1.23456789e-4)~"},
    {R"~(2.2250738585072014e-308)~", R"~(2.2250738585072014e-308)~"},
    {R"~(12.5)~", R"~(12.5)~"},
    {R"~(-3.25)~", R"~(-3.25)~"},
    {R"~(1.0e100)~", R"~(1.0e100)~"},
    {R"~(6.02214076e23)~", R"~(6.02214076e23)~"},
    {R"~(3.141592653589793)~", R"~(3.141592653589793)~"},
    {R"~(2.718281828459045)~", R"~(2.718281828459045)~"},
    {R"~(0.30000000000000004)~", R"~(0.30000000000000004)~"},
    {R"~(hello)~", R"~(hello)~"},
    {R"~('and')~", R"~('and')~"},
    {R"~('end')~", R"~('end')~"},
    {R"~('receive')~", R"~('receive')~"},
    {R"~('fun')~", R"~('fun')~"},
    {R"~('maybe')~", R"~(maybe)~"},
    {R"~('else')~", R"~(else)~"},
    {R"~('cond')~", R"~('cond')~"},
    {R"~('hello world')~", R"~('hello world')~"},
    {R"~('Abc')~", R"~('Abc')~"},
    {R"~(a@b)~", R"~(a@b)~"},
    {R"~('a.b')~", R"~('a.b')~"},
    {R"~('é')~", R"~(é)~"},
    {R"~('éa')~", R"~(éa)~"},
    {R"~('ça')~", R"~(ça)~"},
    {R"~('Ñ')~", R"~('Ñ')~"},
    {R"~('a\nb')~", R"~('a\nb')~"},
    {R"~('\'')~", R"~('\'')~"},
    {R"~('\\')~", R"~('\\')~"},
    {R"~('')~", R"~('')~"},
    {R"~('Ωmega')~", R"~('Ωmega')~"},
    {R"~('ωmega')~", R"~('ωmega')~"},
    {R"~('_a')~", R"~('_a')~"},
    {R"~(a_)~", R"~(a_)~"},
    {R"~(a1)~", R"~(a1)~"},
    {R"~('1a')~", R"~('1a')~"},
    {R"~('a\x{7f}')~", R"~('a\d')~"},
    {R"~('a\x{80}')~", R"~('a\200')~"},
    {R"~('a\x{9f}b')~", R"~('a\237b')~"},
    {R"~('\e\d\t\r\v\f\b\s')~", R"~('\e\d\t\r\v\f\b ')~"},
    {R"~('a"b')~", R"~('a"b')~"},
    {R"~('\x{1F600}')~", R"~('😀')~"},
    {R"~(true)~", R"~(true)~"},
    {R"~([])~", R"~([])~"},
    {R"~([1,2,3])~", R"~([1,2,3])~"},
    {R"~("abc")~", R"~("abc")~"},
    {R"~("")~", R"~([])~"},
    {R"~([97,98|c])~", R"~([97,98|c])~"},
    {R"~([a|"bc"])~", R"~([a,98,99])~"},
    {R"~("héllo\n")~", R"~("héllo\n")~"},
    {R"~("\x{263A}")~", R"~("☺")~"},
    {R"~([97,127])~", R"~([97,127])~"},
    {R"~([7])~", R"~([7])~"},
    {R"~([8,9,10,11,12,13,27])~", R"~("\b\t\n\v\f\r\e")~"},
    {R"~("\e")~", R"~("\e")~"},
    {R"~([97,16#D800])~", R"~([97,55296])~"},
    {R"~([97,16#FFFE])~", R"~([97,65534])~"},
    {R"~([97,16#FFFD])~", R"~("a�")~"},
    {R"~([97,16#10FFFF])~", R"~("a􏿿")~"},
    {R"~([97,16#110000])~", R"~([97,1114112])~"},
    {R"~([$a,-1])~", R"~([97,-1])~"},
    {R"~([$a,1.0])~", R"~([97,1.0])~"},
    {R"~("\"\\")~", R"~("\"\\")~"},
    {R"~("a'b")~", R"~("a'b")~"},
    {R"~([[]])~", R"~([[]])~"},
    {R"~([[],[[]]])~", R"~([[],[[]]])~"},
    {R"~([1|2])~", R"~([1|2])~"},
    {R"~([1,2|3])~", R"~([1,2|3])~"},
    {R"~([a|<<"b">>])~", R"~([a|<<"b">>])~"},
    {R"~([160])~", R"~(" ")~"},
    {R"~([159])~", R"~([159])~"},
    {R"~({})~", R"~({})~"},
    {R"~({a})~", R"~({a})~"},
    {R"~({a,'B',[]})~", R"~({a,'B',[]})~"},
    {R"~({{{}}})~", R"~({{{}}})~"},
    {R"~(#{})~", R"~(#{})~"},
    {R"~(#{a => 1})~", R"~(#{a => 1})~"},
    {R"~(#{a => 1,"b" => [x]})~", R"~(#{a => 1,"b" => [x]})~"},
    {R"~(#{1 => a,2.0 => b,c => d})~", R"~(#{1 => a,2.0 => b,c => d})~"},
    {R"~(#{{a,b} => #{c => d}})~", R"~(#{{a,b} => #{c => d}})~"},
    {R"~(<<>>)~", R"~(<<>>)~"},
    {R"~(<<"abc">>)~", R"~(<<"abc">>)~"},
    {R"~(<<1,2,3>>)~", R"~(<<1,2,3>>)~"},
    {R"~(<<1,2:3>>)~", R"~(<<1,2:3>>)~"},
    {R"~(<<1:1>>)~", R"~(<<1:1>>)~"},
    {R"~(<<"abc",2:3>>)~", R"~(<<97,98,99,2:3>>)~"},
    {R"~(<<"héllo"/utf8>>)~", R"~(<<"héllo"/utf8>>)~"},
    {R"~(<<233>>)~", R"~(<<"é">>)~"},
    {R"~(<<"a\nb">>)~", R"~(<<"a\nb">>)~"},
    {R"~(<<"\"\\">>)~", R"~(<<"\"\\">>)~"},
    {R"~(<<226,152,186>>)~", R"~(<<"☺"/utf8>>)~"},
    {R"~(<<"☺"/utf8>>)~", R"~(<<"☺"/utf8>>)~"},
    {R"~(<<195,169,1>>)~", R"~(<<195,169,1>>)~"},
    {R"~(<<239,191,190>>)~", R"~(<<239,191,190>>)~"},
    {R"~(<<194,128>>)~", R"~(<<194,128>>)~"},
    {R"~(<<"é",0>>)~", R"~(<<233,0>>)~"},
    {R"~(<<127>>)~", R"~(<<127>>)~"},
    {R"~(<<"a",127>>)~", R"~(<<97,127>>)~"},
    {R"~(<<0>>)~", R"~(<<0>>)~"},
    {R"~(<<7>>)~", R"~(<<7>>)~"},
    {R"~(<<27>>)~", R"~(<<"\e">>)~"},
    {R"~(<<"\e">>)~", R"~(<<"\e">>)~"},
    {R"~(<<160>>)~", R"~(<<" ">>)~"},
    {R"~(<<159>>)~", R"~(<<159>>)~"},
    {R"~(<<255>>)~", R"~(<<"ÿ">>)~"},
    {R"~(<<"a",255>>)~", R"~(<<"aÿ">>)~"},
    {R"~(<<237,160,128>>)~", R"~(<<237,160,128>>)~"},
    {R"~(<<244,144,128,128>>)~", R"~(<<244,144,128,128>>)~"},
    {R"~(<<240,159,152,128>>)~", R"~(<<"😀"/utf8>>)~"},
    {R"~(<<"Ω"/utf8,233>>)~", R"~(<<"Î©é">>)~"},
    {R"~(fun lists:map/2)~", R"~(fun lists:map/2)~"},
    {R"~(fun 'a b':'c d'/0)~", R"~(fun 'a b':'c d'/0)~"},
    {R"~(fun erlang:'+'/2)~", R"~(fun erlang:'+'/2)~"},
    {R"~({[1,2],"ab",<<"ab">>,#{"k" => <<"v">>}})~", R"~({[1,2],"ab",<<"ab">>,#{"k" => <<"v">>}})~"},
};

term bytes_term(std::initializer_list<int> l, std::uint8_t last_bits = 8) {
  std::vector<std::uint8_t> v;
  for (int x : l) v.push_back(static_cast<std::uint8_t>(x));
  return term::bitstring(v, last_bits);
}

}  // namespace

TEST_CASE("printing matches io_lib:format(\"~0tp\") of OTP 25") {
  for (const auto& c : erl_printed) {
    CAPTURE(c.source);
    parse_result r = parse(c.source);
    REQUIRE_MESSAGE(r, describe(r));
    CHECK(to_string(r.value) == c.erl);
    CHECK(fmt::format("{}", r.value) == c.erl);
  }
}

TEST_CASE("floats print as float_to_list(F, [short])") {
  const std::pair<double, const char*> cases[] = {
      {0.1, "0.1"},
      {1.0e-300, "1.0e-300"},
      {-0.0, "-0.0"},
      {0.0, "0.0"},
      {1.7976931348623157e308, "1.7976931348623157e308"},
      {5.0e-324, "5.0e-324"},
      {1.0e10, "1.0e10"},
      {1000.0, "1.0e3"},
      {100.0, "100.0"},
      {0.0001, "0.0001"},
      {0.00012, "1.2e-4"},
      {12345678900.0, "12345678900.0"},
      {9007199254740992.0, "9.007199254740992e15"},
      {1234567890123456.0, "1234567890123456.0"},
      {-2.5, "-2.5"},
      // erl: float_to_list(F, [short]) for these values, which hit the 2^53 special cases of OTP's to_chars.
      {9007199254740994.0, "9.007199254740994e15"},
      {9007199254740990.0, "9007199254740990.0"},
      {9007199254740980.0, "9007199254740980.0"},
      {18014398509481990.0, "1.801439850948199e16"},
      {4503599627370500.0, "4503599627370500.0"},
      {45035996273705000.0, "4.5035996273705e16"},
      {450359962737049.0 * 100, "4.50359962737049e16"},
      {99999999999999990.0, "9.999999999999998e16"},
  };
  for (auto [d, want] : cases) {
    std::string s;
    print_float(d, s);
    CHECK(s == want);
  }
}

TEST_CASE("atoms are quoted exactly when io_lib:write_atom/1 quotes them") {
  auto q = [](std::string_view text) {
    std::string s;
    print_atom(atom(text), s);
    return s;
  };
  CHECK(q("ok") == "ok");
  CHECK(q("nonode@nohost") == "nonode@nohost");
  CHECK(q("a.b@host") == "'a.b@host'");
  CHECK(q("Node") == "'Node'");
  CHECK(q("") == "''");
  CHECK(q("after") == "'after'");
  CHECK(q("xor") == "'xor'");
  CHECK(q("maybe") == "maybe");  // not reserved in OTP 25 unless the maybe_expr feature is enabled
  CHECK(q("ß") == "ß");
  CHECK(q("a÷") == "'a÷'");
  CHECK(q("aÀ×") == "'aÀ×'");
  CHECK(q("a\x01") == "'a\\001'");
}

TEST_CASE("bitstrings, binaries and ~w mode") {
  CHECK(to_string(bytes_term({0x80}, 1)) == "<<1:1>>");
  CHECK(to_string(bytes_term({1, 0x40}, 3)) == "<<1,2:3>>");
  CHECK(to_string(bytes_term({'a', 'b'})) == "<<\"ab\">>");
  CHECK(to_string(bytes_term({'a', 'b'}), {.strings = false}) == "<<97,98>>");
  CHECK(fmt::format("{:w}", term::string("ab")) == "[97,98]");
  CHECK(fmt::format("{:p}", term::string("ab")) == "\"ab\"");
  CHECK(fmt::format("{:w}", term(atom("Ω"))) == "'Ω'");
}

TEST_CASE("pids, ports, refs, funs print as the shell shows them, with the node name unless it is local") {
  const atom here("here@host"), there("there@host.example");
  term p = term::pid({here, 85, 0, 3});
  CHECK(to_string(p) == "<here@host.85.0>");
  CHECK(to_string(p, {.local_node = here}) == "<0.85.0>");
  CHECK(fmt::format("{}", printed{p, {.local_node = here}}) == "<0.85.0>");
  CHECK(to_string(term::pid({there, 1, 2, 3})) == "<'there@host.example'.1.2>");
  CHECK(to_string(term::port({here, 4294967298u, 1})) == "#Port<here@host.4294967298>");
  // erl: binary_to_term of a NEWER_REFERENCE_EXT with words 1,2,3,4,5 prints #Ref<N.5.4.3.2.1>.
  ref_value r;
  r.node = there;
  r.creation = 1;
  r.len = 5;
  for (std::uint32_t i = 0; i < 5; ++i) r.ids[i] = i + 1;
  CHECK(to_string(term::reference(r)) == "#Ref<'there@host.example'.5.4.3.2.1>");
  CHECK(to_string(term::reference(r), {.local_node = there}) == "#Ref<0.5.4.3.2.1>");
  fun_value f;
  f.module = atom("t1");
  f.old_index = term(0);
  f.old_uniq = term(84571859);
  f.pid = p;
  CHECK(to_string(term::fun(std::move(f))) == "#Fun<t1.0.84571859>");
  CHECK(to_string(term::export_({atom("lists"), atom("map"), 2})) == "fun lists:map/2");
}

TEST_CASE("lists spread over several nodes print as one list") {
  term tail = term::improper_list({term(3), term(4)}, term(atom("t")));
  term l = term::improper_list({term(1), term(2)}, tail);
  CHECK(to_string(l) == "[1,2,3,4|t]");
  term s = term::improper_list({term('a')}, term::string("bc"));
  CHECK(to_string(s) == "\"abc\"");
  CHECK(to_string(term::improper_list({term('a')}, term::improper_list({term('b')}, term(1)))) == "[97,98|1]");
}

TEST_CASE("a 1 000 000-deep term prints without recursion") {
  constexpr std::size_t depth = 1'000'000;
  term t;
  for (std::size_t i = 0; i < depth; ++i) t = term::list({t});
  std::string s = to_string(t);
  CHECK(s.size() == 2 * depth + 2);
  CHECK(s.substr(0, 3) == "[[[");
  CHECK(s.substr(s.size() - 3) == "]]]");
  term u = term(1);
  for (std::size_t i = 0; i < depth; ++i) u = (i % 3 == 0)   ? term::tuple({u, term(i)})
                                           : (i % 3 == 1) ? term::map({{term(atom("k")), u}})
                                                          : term::improper_list({u}, term(2));
  std::string v = to_string(u);
  CHECK(v.substr(0, 17) == "{[#{k => {[#{k =>");
  CHECK(v.find("{1,0}") != std::string::npos);
}
