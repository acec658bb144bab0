// Reading Erlang term literals from text: what erl_scan + erl_parse:parse_term/1 accept, plus the shell's forms of
// pids, ports and references so that everything etf::print writes reads back.
//
// Accepted: integers (`1_000`, `16#FF`, `$a`, `$\n`, `-5`, `+5`), floats (`1.0e10`, `1.5E-3`, `-0.0`), atoms (bare,
// quoted with every erl_scan escape), strings with escapes (`"\x{263A}"`, `\101`, `\^A`) and adjacent-string
// concatenation (`"a" "b"`), lists (`[a|b]`), tuples, maps `#{k => v}` (a later duplicate key wins, as in Erlang),
// binaries (`<<"text">>`, `<<1,2,3>>`, `<<"héllo"/utf8>>`, `<<1:3>>`, `<<255,1:1>>`, `<<-1:16/little-signed>>`,
// `<<1.5:32/float>>`, `<<"a"/utf16>>`, `<<X:4/unit:8>>`), exports `fun m:f/1`, and
//   `<0.85.0>`, `<a@host.85.0>`            pids: node number 0 is parse_options::local_node, or a node name
//   `#Port<0.7>`, `#Ref<0.3.2.1>`           ports and references (reference words most significant first)
// A term may be followed by a `.` (as erl_parse wants); `%` comments and white space are skipped. Funs
// (`#Fun<...>`, `fun (X) -> X end`), variables, operators and records are not literals and are refused.
//
// One deliberate difference from erl_scan: a raw U+FFFE or U+FFFF inside quotes is accepted (erl_scan refuses it, so
// an atom holding one has no text in Erlang at all; io_lib and etf::print write it raw).
// Positions: line and column as erl_scan counts them (from 1; columns in code points), plus the byte offset.
// Parsing never recurses: a 1 000 000-deep `[[[...]]]` parses with an explicit stack, up to options.max_depth.
// Invalid input never throws through parse(); parse_or_throw() throws std::system_error naming the position.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "etf/term.hpp"

namespace cnode::etf {

enum class parse_error {
  ok = 0,
  unexpected_end = 1,  // the text ends inside a term
  unexpected_token,    // a token that cannot come here (syntax error)
  illegal_character,   // a character no token starts with, or bytes that are not UTF-8
  bad_escape,          // an escape sequence erl_scan rejects (`\x` without hex digits, `\x{110000}`)
  bad_integer,         // a base outside 2..36, or digits not of the base
  bad_float,           // a float literal too large for a double, or an exponent without digits
  bad_atom,            // an atom longer than 255 characters
  atom_table_full,     // the atom table's limit is reached
  reserved_word,       // a reserved word (`end`, `fun`, ...) where an atom is expected: quote it
  variable,            // a variable where a literal term is required
  not_a_literal,       // valid Erlang that denotes no literal term: a fun with a body, `#Fun<...>`, a record
  bad_binary,          // a binary segment Erlang would reject (bad size, type or value)
  bad_pid,             // a malformed pid, port or reference, or a node number other than 0
  too_deep,            // nesting deeper than parse_options::max_depth
  trailing_input,      // text after a complete term (and its optional `.`)
};

const std::error_category& parse_category() noexcept;
inline std::error_code make_error_code(parse_error e) noexcept { return {static_cast<int>(e), parse_category()}; }

struct parse_options {
  // The node that node number 0 in `<0.1.2>`, `#Port<0.1>`, `#Ref<0.1.2.3>` stands for.
  atom local_node = atom::nonode();
  // Creation given to pids, ports and references read from text (the text does not carry one).
  std::uint32_t creation = 0;
  std::size_t max_depth = 16'000'000;
};

struct parse_result {
  term value;
  std::error_code ec;
  // On success: bytes consumed (the whole text for parse()). On failure: where the offending token starts.
  std::size_t offset = 0;
  std::size_t line = 0;    // from 1 (failures only)
  std::size_t column = 0;  // from 1, in code points (failures only)
  explicit operator bool() const noexcept { return !ec; }
};

// One term that, with an optional terminating `.`, white space and comments, makes up all of `text`.
parse_result parse(std::string_view text, const parse_options& opts = {});
// One term at the start of `text` and its `.` if there is one; offset says where the next term may start. Lets a
// caller read `file:consult/1`-style files term by term. At the end of the text (only white space and comments
// left) the result has ec == parse_error::unexpected_end and offset == text.size().
parse_result parse_prefix(std::string_view text, const parse_options& opts = {});
// Throwing convenience: std::system_error whose what() says "line L, column C".
term parse_or_throw(std::string_view text, const parse_options& opts = {});

// "line 3, column 7: unexpected token" for a failed result.
std::string describe(const parse_result& r);

}  // namespace cnode::etf

template <>
struct std::is_error_code_enum<cnode::etf::parse_error> : std::true_type {};
