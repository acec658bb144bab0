// Printing terms in Erlang syntax, as `io_lib:format("~0tp", [T])` prints them on a node started with
// `+pc unicode`: one line, no spaces after commas, ` => ` in maps.
//
// What is printed reads back with erl_scan/erl_parse (erl_parse:parse_term) to an =:= term for everything that has
// a literal syntax:
//   - atoms are quoted exactly when io_lib:write_atom/1 quotes them (OTP 25 reserved words, a first character that
//     is not a lowercase Latin-1 letter, a character that is not a Latin-1 letter, digit, `_` or `@`); inside quotes
//     characters are escaped as io_lib:write_string/2 does (`\n`, `\e`, `\d`, octal `\NNN` for other controls
//     below 160, everything from 160 up written as itself, in UTF-8);
//   - floats shortest-exact with OTP's choice between `0.001` and `1.0e-3` (float_to_list(F, [short]));
//   - a list is printed as a "string" when it is proper, non-empty and every element is a printable Unicode code
//     point (io_lib:printable_unicode_list/1: 32..126, 160..0xD7FF, 0xE000..0xFFFD, 0x10000..0x10FFFF and
//     \n \r \t \v \b \f \e), i.e. as the shell prints with `+pc unicode` (`[7]` and `[128]` stay lists);
//   - a binary is `<<"text">>` when it is printable ASCII/Latin-1 text, `<<"tëxt"/utf8>>` when it is valid UTF-8 of
//     printable code points with at least one non-ASCII one, `<<1,2,3>>` otherwise; bitstrings `<<1,2:3>>`;
//   - maps `#{k => v}` in map key order; improper lists `[1|2]`; exports `fun m:f/1`.
//
// Things with no literal syntax are printed the way the shell shows them: funs `#Fun<m.OldIndex.OldUniq>`, pids
// `<Node.Id.Serial>`, ports `#Port<Node.Id>`, references `#Ref<Node.W3.W2.W1>` (most significant word first, as
// erl prints). The shell writes a node *number* there, which only means something inside one running node; a term
// alone carries the node *name*, so by default that name is printed (quoted like any atom when it needs to be):
// `<a@host.85.0>`, `#Ref<'b@my.host'.1.2.3>`. When print_options::local_node is set, that node prints as `0`, so a
// local pid looks exactly as in the shell: `<0.85.0>`. The creation is not shown (the shell does not show it
// either). etf::parse reads all three forms back (see parse.hpp).
//
// Neither the printer nor the string test recurse: a 1 000 000-deep term prints with an explicit stack.
//
// Through fmt: `fmt::format("{}", t)` prints as above; `{:w}` prints as `~0tw` (no string or text-binary detection:
// lists of integers stay lists, binaries are byte lists). `fmt::format("{}", etf::printed(t, opts))` takes options.
#pragma once

#include <optional>
#include <string>

#include <fmt/format.h>

#include "etf/term.hpp"

namespace cnode::etf {

struct print_options {
  // Pids, ports and references of this node print with node number 0, as the shell prints its own.
  std::optional<atom> local_node;
  // true: `~tp` (strings and text binaries detected); false: `~tw` (lists of integers, binaries as bytes).
  bool strings = true;
};

// Appends the text of t to out.
void print(const term& t, std::string& out, const print_options& opts = {});
std::string to_string(const term& t, const print_options& opts = {});

// An atom as io_lib:write_atom/1 writes it (quoted only when needed), appended to out.
void print_atom(const atom& a, std::string& out);
// A float as float_to_list(F, [short]) writes it, appended to out.
void print_float(double d, std::string& out);

// A term with print options, for fmt: fmt::format("{}", printed(t, {.local_node = me})).
struct printed {
  const term& value;
  print_options options = {};
};

}  // namespace cnode::etf

template <>
struct fmt::formatter<cnode::etf::term> {
  bool strings = true;
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it == 'w') {
      strings = false;
      ++it;
    } else if (it != ctx.end() && *it == 'p') {
      ++it;
    }
    if (it != ctx.end() && *it != '}') throw fmt::format_error("invalid format for an Erlang term: use {}, {:p} or {:w}");
    return it;
  }
  template <typename FormatContext>
  auto format(const cnode::etf::term& t, FormatContext& ctx) const -> decltype(ctx.out()) {
    std::string s;
    cnode::etf::print(t, s, {.local_node = std::nullopt, .strings = strings});
    return std::copy(s.begin(), s.end(), ctx.out());
  }
};

template <>
struct fmt::formatter<cnode::etf::printed> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it != '}') throw fmt::format_error("invalid format for etf::printed: use {}");
    return it;
  }
  template <typename FormatContext>
  auto format(const cnode::etf::printed& p, FormatContext& ctx) const -> decltype(ctx.out()) {
    std::string s;
    cnode::etf::print(p.value, s, p.options);
    return std::copy(s.begin(), s.end(), ctx.out());
  }
};
