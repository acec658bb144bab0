#include "etf/parse.hpp"
#include "etf/utf8.hpp"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include <fmt/format.h>

namespace cnode::etf {

namespace {

class parse_category_impl : public std::error_category {
 public:
  const char* name() const noexcept override { return "cnode.etf.parse"; }
  std::string message(int ev) const override {
    switch (static_cast<parse_error>(ev)) {
      case parse_error::ok: return "ok";
      case parse_error::unexpected_end: return "the text ends inside a term";
      case parse_error::unexpected_token: return "syntax error";
      case parse_error::illegal_character: return "illegal character";
      case parse_error::bad_escape: return "bad escape sequence";
      case parse_error::bad_integer: return "bad integer";
      case parse_error::bad_float: return "bad float (no exponent digits, or too large)";
      case parse_error::bad_atom: return "atom longer than 255 characters";
      case parse_error::atom_table_full: return "atom table full";
      case parse_error::reserved_word: return "reserved word where an atom is expected (quote it)";
      case parse_error::variable: return "variable where a literal term is expected";
      case parse_error::not_a_literal: return "not a literal term";
      case parse_error::bad_binary: return "bad binary segment";
      case parse_error::bad_pid: return "bad pid, port or reference";
      case parse_error::too_deep: return "nesting too deep";
      case parse_error::trailing_input: return "text after the term";
    }
    return "unknown parse error";
  }
};

enum class tok : std::uint8_t {
  end, integer, float_, char_, atom, reserved, var, string,
  lbracket, rbracket, lbrace, rbrace, lparen, rparen, lbin, rbin, lt, gt,
  comma, bar, dot, hash, arrow, colon, slash, minus, plus, other,
};

struct token {
  tok kind = tok::end;
  std::size_t pos = 0;  // byte offset of its first character
  std::size_t end = 0;  // byte offset after it
  term value;           // integer, float_, char_
  std::string text;     // atom, reserved, var: UTF-8
  std::vector<std::uint32_t> chars;  // string
};

// Thrown inside the parser only, and caught by parse_prefix(): the error and where it happened.
struct failure {
  parse_error error;
  std::size_t pos;
};

bool is_digit(std::uint32_t c) noexcept { return c >= '0' && c <= '9'; }
bool is_unicode(std::uint32_t c) noexcept {  // erl_scan's ?UNICODE
  return c < 0xD800 || (c > 0xDFFF && c < 0xFFFE) || (c > 0xFFFF && c <= 0x10FFFF);
}
bool atom_start(std::uint32_t c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7); }
bool var_start(std::uint32_t c) noexcept {
  return (c >= 'A' && c <= 'Z') || c == '_' || (c >= 0xC0 && c <= 0xDE && c != 0xD7);
}
bool name_char(std::uint32_t c) noexcept {
  return atom_start(c) || var_start(c) || is_digit(c) || c == '@';
}
int digit_value(std::uint32_t c) noexcept {
  if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'z') return static_cast<int>(c - 'a' + 10);
  if (c >= 'A' && c <= 'Z') return static_cast<int>(c - 'A' + 10);
  return 99;
}

// Digits (without separators) of `base` as an integer term; chunked so that long literals stay near-linear.
term digits_to_integer(std::string_view digits, int base) {
  std::uint64_t limit = UINT64_MAX / static_cast<unsigned>(base);
  std::uint64_t small = 0;
  std::size_t i = 0;
  for (; i < digits.size() && small <= limit - 1; ++i) {
    std::uint64_t next = small * static_cast<unsigned>(base) + static_cast<unsigned>(digit_value(digits[i]));
    if (small > limit || next > static_cast<std::uint64_t>(INT64_MAX)) break;
    small = next;
  }
  if (i == digits.size()) return term(static_cast<std::int64_t>(small));
  big_int v = small;
  while (i < digits.size()) {
    std::uint64_t chunk = 0, scale = 1;
    while (i < digits.size() && scale <= UINT64_MAX / 36 / static_cast<unsigned>(base)) {
      chunk = chunk * static_cast<unsigned>(base) + static_cast<unsigned>(digit_value(digits[i++]));
      scale *= static_cast<unsigned>(base);
    }
    v = v * scale + chunk;
  }
  return term::from_big(std::move(v));
}

term negate(const term& t) {
  if (t.is_float()) return term(-t.float_value());
  if (t.is_small() && t.small() != INT64_MIN) return term(-t.small());
  return term::from_big(-t.big());
}

// IEEE 754 binary16 of d, rounded to nearest even (what the BEAM writes for <<F:16/float>>).
std::uint16_t to_half(double d) {
  const std::uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  double a = std::fabs(d);
  if (std::isnan(d)) return sign | 0x7E00;
  if (a >= 65520.0) return sign | 0x7C00;
  if (a < 0x1p-14) return sign | static_cast<std::uint16_t>(std::nearbyint(a * 0x1p24));
  int e;
  double f = std::frexp(a, &e);  // a = f × 2^e, f in [0.5, 1)
  int exp = e - 1;
  auto m = static_cast<std::uint32_t>(std::nearbyint((f * 2 - 1) * 1024));
  if (m == 1024) m = 0, ++exp;
  if (exp > 15) return sign | 0x7C00;
  return sign | static_cast<std::uint16_t>((exp + 15) << 10) | static_cast<std::uint16_t>(m);
}

// v modulo 2^bits, as the non-negative two's complement pattern of its low bits.
big_int low_bits(big_int v, std::size_t bits) {
  big_int mod = big_int(1) << bits;
  v %= mod;
  if (v < 0) v += mod;
  return v;
}

// Bits appended most significant first, as a binary is built.
class bit_writer {
 public:
  void put(std::uint64_t v, std::size_t bits) {  // the low `bits` bits of v (bits ≤ 64)
    for (std::size_t i = bits; i-- > 0;) put_bit((v >> i) & 1);
  }
  void put_big(const big_int& v, std::size_t bits) {  // the low `bits` bits of v ≥ 0
    for (std::size_t i = bits; i-- > 0;) put_bit(boost::multiprecision::bit_test(v, static_cast<unsigned>(i)));
  }
  void put_bit(bool b) {
    if (bits_ % 8 == 0) bytes_.push_back(0);
    if (b) bytes_.back() |= static_cast<std::uint8_t>(0x80 >> (bits_ % 8));
    ++bits_;
  }
  term finish() const {
    std::uint8_t last = bits_ % 8 == 0 ? 8 : static_cast<std::uint8_t>(bits_ % 8);
    return term::bitstring(bytes_, last);
  }

 private:
  std::vector<std::uint8_t> bytes_;
  std::size_t bits_ = 0;
};

// One pending container of the explicit parsing stack.
// Elements wait on one shared value stack, so opening a container allocates nothing.
struct frame {
  enum kind_t : std::uint8_t { list, list_tail, tuple, map_key, map_value } kind;
  std::size_t start;  // where its elements (map: keys and values alternating) begin on the value stack
};

// Moves values[start..] out, leaving values as it was before them.
std::vector<term> take(std::vector<term>& values, std::size_t start) {
  std::vector<term> out(std::make_move_iterator(values.begin() + static_cast<std::ptrdiff_t>(start)),
                        std::make_move_iterator(values.end()));
  values.resize(start);
  return out;
}

class parser {
 public:
  parser(std::string_view text, const parse_options& opts) : s_(text), opts_(opts) {}

  // Skips white space and comments; true when nothing but those is left.
  bool at_end() {
    if (la_) return la_->kind == tok::end;
    skip_space();
    return pos_ >= s_.size();
  }

  term parse_term() {
    std::vector<frame> stack;
    std::vector<term> values;
    term value;
    for (;;) {
      token t = lex();
      switch (t.kind) {
        case tok::lbracket: {
          token n = lex();
          if (n.kind == tok::rbracket) {
            value = term();
            break;
          }
          unread(std::move(n));
          push(stack, frame::list, values.size(), t.pos);
          continue;
        }
        case tok::lbrace: {
          token n = lex();
          if (n.kind == tok::rbrace) {
            value = term::tuple(std::span<const term>{});
            break;
          }
          unread(std::move(n));
          push(stack, frame::tuple, values.size(), t.pos);
          continue;
        }
        case tok::hash: {
          token n = lex();
          if (n.kind == tok::lbrace) {
            token m = lex();
            if (m.kind == tok::rbrace) {
              value = term::map({});
              break;
            }
            unread(std::move(m));
            push(stack, frame::map_key, values.size(), t.pos);
            continue;
          }
          value = hash_form(t, n);
          break;
        }
        default: value = scalar(std::move(t)); break;
      }
      // A complete value: hand it to the innermost open container, closing as many as the text closes.
      for (;;) {
        if (stack.empty()) return value;
        frame& f = stack.back();
        token n = lex();
        bool closed = false;
        switch (f.kind) {
          case frame::list:
            values.push_back(std::move(value));
            if (n.kind == tok::bar) {
              f.kind = frame::list_tail;
            } else if (n.kind == tok::rbracket) {
              value = term::list(take(values, f.start));
              closed = true;
            } else {
              expect(n, tok::comma);
            }
            break;
          case frame::list_tail:
            expect(n, tok::rbracket);
            value = term::improper_list(take(values, f.start), std::move(value));
            closed = true;
            break;
          case frame::tuple:
            values.push_back(std::move(value));
            if (n.kind == tok::rbrace) {
              value = term::tuple(take(values, f.start));
              closed = true;
            } else {
              expect(n, tok::comma);
            }
            break;
          case frame::map_key:
            values.push_back(std::move(value));
            expect(n, tok::arrow);
            f.kind = frame::map_value;
            break;
          case frame::map_value:
            values.push_back(std::move(value));
            if (n.kind == tok::rbrace) {
              std::vector<std::pair<term, term>> kvs((values.size() - f.start) / 2);
              for (std::size_t i = 0; i < kvs.size(); ++i) {
                kvs[i].first = std::move(values[f.start + 2 * i]);
                kvs[i].second = std::move(values[f.start + 2 * i + 1]);
              }
              values.resize(f.start);
              value = term::map(std::move(kvs));
              closed = true;
            } else {
              expect(n, tok::comma);
              f.kind = frame::map_key;
            }
            break;
        }
        if (!closed) break;
        stack.pop_back();
      }
    }
  }

  // After a term: its terminating `.` if there is one. Returns the offset after what was consumed.
  std::size_t finish_term() {
    token n = lex();
    if (n.kind == tok::dot) return n.end;
    unread(std::move(n));
    return last_end_;
  }

  token lex() {
    token t;
    if (la_) {
      t = std::move(*la_);
      la_.reset();
    } else {
      t = scan();
      t.end = pos_;
    }
    prev_end_ = last_end_;
    last_end_ = t.end;
    return t;
  }
  // Gives back the token lex() just returned.
  void unread(token t) {
    last_end_ = prev_end_;
    la_ = std::move(t);
  }
  const std::string_view& text() const { return s_; }

 private:
  [[noreturn]] void fail(parse_error e, std::size_t pos) const { throw failure{e, pos}; }

  void expect(const token& t, tok kind) const {
    if (t.kind != kind) fail(t.kind == tok::end ? parse_error::unexpected_end : parse_error::unexpected_token, t.pos);
  }

  void push(std::vector<frame>& stack, frame::kind_t kind, std::size_t start, std::size_t pos) const {
    if (stack.size() >= opts_.max_depth) fail(parse_error::too_deep, pos);
    stack.push_back(frame{kind, start});
  }

  // A value that opens no container.
  term scalar(token t) {
    switch (t.kind) {
      case tok::integer:
      case tok::float_:
      case tok::char_: return std::move(t.value);
      case tok::atom: return term(make_atom(t.text, t.pos));
      case tok::string: {
        std::vector<std::uint32_t> chars = std::move(t.chars);
        more_strings(chars);
        std::vector<term> elems(chars.begin(), chars.end());
        return term::list(std::move(elems));
      }
      case tok::minus:
      case tok::plus: {
        token n = lex();
        if (n.kind != tok::integer && n.kind != tok::float_ && n.kind != tok::char_)
          fail(n.kind == tok::end ? parse_error::unexpected_end : parse_error::not_a_literal, t.pos);
        return t.kind == tok::minus ? negate(n.value) : std::move(n.value);
      }
      case tok::lbin: return binary();
      case tok::lt: return pid(t.pos);
      case tok::reserved:
        if (t.text == "fun") return fun(t.pos);
        fail(parse_error::reserved_word, t.pos);
      case tok::var: fail(parse_error::variable, t.pos);
      case tok::end: fail(parse_error::unexpected_end, t.pos);
      default: fail(parse_error::unexpected_token, t.pos);
    }
  }

  void more_strings(std::vector<std::uint32_t>& chars) {
    for (;;) {
      token n = lex();
      if (n.kind != tok::string) {
        unread(std::move(n));
        return;
      }
      chars.insert(chars.end(), n.chars.begin(), n.chars.end());
    }
  }

  atom make_atom(std::string_view utf8, std::size_t pos) const {
    atom_status st = atom_status::ok;
    auto a = atom::from_utf8(utf8, &st);
    if (!a) fail(st == atom_status::table_full ? parse_error::atom_table_full : parse_error::bad_atom, pos);
    return *a;
  }

  // fun M:F/A
  term fun(std::size_t pos) {
    token m = lex();
    if (m.kind == tok::lparen) fail(parse_error::not_a_literal, pos);
    token c = lex();
    if (m.kind != tok::atom) fail(bad(m), m.pos);
    if (c.kind != tok::colon) fail(parse_error::not_a_literal, pos);  // fun f/1: a local fun
    token f = lex();
    if (f.kind != tok::atom) fail(bad(f), f.pos);
    token sl = lex();
    expect(sl, tok::slash);
    token a = lex();
    if (a.kind != tok::integer || !a.value.is_small() || a.value.small() < 0 || a.value.small() > 255)
      fail(a.kind == tok::integer ? parse_error::not_a_literal : bad(a), a.pos);
    return term::export_({make_atom(m.text, m.pos), make_atom(f.text, f.pos), static_cast<std::uint8_t>(a.value.small())});
  }

  static parse_error bad(const token& t) {
    if (t.kind == tok::end) return parse_error::unexpected_end;
    if (t.kind == tok::var) return parse_error::variable;
    if (t.kind == tok::reserved) return parse_error::reserved_word;
    return parse_error::unexpected_token;
  }

  // `#` followed by something other than `{`: the shell's #Ref<...>, #Port<...>, or a non-literal.
  term hash_form(const token& hash, const token& n) {
    if (n.kind == tok::var && n.pos == hash.pos + 1 && pos_ < s_.size() && s_[pos_] == '<' && !la_) {
      if (n.text == "Ref" || n.text == "Port") {
        ++pos_;
        atom node = node_part(hash.pos);
        std::vector<std::uint64_t> words;
        do {
          expect_char('.', hash.pos);
          words.push_back(uint_part(hash.pos));
        } while (pos_ < s_.size() && s_[pos_] == '.');
        expect_char('>', hash.pos);
        last_end_ = pos_;
        if (n.text == "Port") {
          if (words.size() != 1) fail(parse_error::bad_pid, hash.pos);
          return term::port({node, words[0], opts_.creation});
        }
        if (words.size() > ref_value::max_words) fail(parse_error::bad_pid, hash.pos);
        ref_value r;
        r.node = node;
        r.creation = opts_.creation;
        r.len = static_cast<std::uint8_t>(words.size());
        for (std::size_t i = 0; i < words.size(); ++i) {
          if (words[i] > UINT32_MAX) fail(parse_error::bad_pid, hash.pos);
          r.ids[words.size() - 1 - i] = static_cast<std::uint32_t>(words[i]);  // printed most significant first
        }
        return term::reference(r);
      }
      if (n.text == "Fun") fail(parse_error::not_a_literal, hash.pos);
    }
    if (n.kind == tok::atom || n.kind == tok::var) fail(parse_error::not_a_literal, hash.pos);  // a record
    fail(bad(n), n.pos);
  }

  // <Node.Id.Serial>, read character by character: `0.1` must not become a float.
  term pid(std::size_t pos) {
    if (la_) fail(parse_error::unexpected_token, pos);
    atom node = node_part(pos);
    expect_char('.', pos);
    std::uint64_t id = uint_part(pos);
    expect_char('.', pos);
    std::uint64_t serial = uint_part(pos);
    expect_char('>', pos);
    last_end_ = pos_;
    if (id > UINT32_MAX || serial > UINT32_MAX) fail(parse_error::bad_pid, pos);
    return term::pid({node, static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(serial), opts_.creation});
  }

  atom node_part(std::size_t pos) {
    if (pos_ < s_.size() && is_digit(static_cast<unsigned char>(s_[pos_]))) {
      if (uint_part(pos) != 0) fail(parse_error::bad_pid, pos);  // only the local node has a known number
      return opts_.local_node;
    }
    std::size_t start = pos_;
    std::uint32_t c = peek_char();
    if (c == '\'' || atom_start(c)) {
      token a = scan();
      if (a.kind == tok::atom) return make_atom(a.text, start);
    }
    fail(parse_error::bad_pid, pos);
  }

  std::uint64_t uint_part(std::size_t pos) {
    std::size_t start = pos_;
    std::uint64_t v = 0;
    while (pos_ < s_.size() && is_digit(static_cast<unsigned char>(s_[pos_]))) {
      if (v > (UINT64_MAX - 9) / 10) fail(parse_error::bad_pid, pos);
      v = v * 10 + static_cast<unsigned>(s_[pos_++] - '0');
    }
    if (pos_ == start) fail(pos_ >= s_.size() ? parse_error::unexpected_end : parse_error::bad_pid, pos);
    return v;
  }

  void expect_char(char c, std::size_t pos) {
    if (pos_ >= s_.size()) fail(parse_error::unexpected_end, pos_);
    if (s_[pos_] != c) fail(parse_error::bad_pid, pos);
    ++pos_;
  }

  term binary();

  // ---- the scanner ----
  std::uint32_t peek_char() const {
    if (pos_ >= s_.size()) return UINT32_MAX;
    std::size_t p = pos_;
    return decode(p);
  }
  std::uint32_t next_char() {
    if (pos_ >= s_.size()) fail(parse_error::unexpected_end, pos_);
    return decode(pos_);
  }
  // One code point of the UTF-8 text at p, advancing p.
  std::uint32_t decode(std::size_t& p) const {
    const auto* u = reinterpret_cast<const unsigned char*>(s_.data());
    std::uint32_t b = u[p];
    if (b < 0x80) {
      ++p;
      return b;
    }
    int n;
    std::uint32_t c, min;
    if ((b & 0xE0) == 0xC0) {
      n = 1, c = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      n = 2, c = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      n = 3, c = b & 0x07, min = 0x10000;
    } else {
      fail(parse_error::illegal_character, p);
    }
    if (s_.size() - p <= static_cast<std::size_t>(n)) fail(parse_error::illegal_character, p);
    for (int i = 1; i <= n; ++i) {
      if ((u[p + i] & 0xC0) != 0x80) fail(parse_error::illegal_character, p);
      c = (c << 6) | (u[p + i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) fail(parse_error::illegal_character, p);
    p += static_cast<std::size_t>(n) + 1;
    return c;
  }

  void skip_space() {
    while (pos_ < s_.size()) {
      std::size_t p = pos_;
      std::uint32_t c = decode(p);
      if (c == '%') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else if (c <= ' ' || (c >= 0x80 && c <= 0xA0)) {
        pos_ = p;
      } else {
        return;
      }
    }
  }

  token make(tok kind, std::size_t pos) const {
    token t;
    t.kind = kind;
    t.pos = pos;
    return t;
  }

  token scan() {
    skip_space();
    const std::size_t start = pos_;
    if (pos_ >= s_.size()) return make(tok::end, start);
    const std::uint32_t c = next_char();
    auto single = [&](tok k) { return make(k, start); };
    auto followed = [&](char want) {
      if (pos_ < s_.size() && s_[pos_] == want) {
        ++pos_;
        return true;
      }
      return false;
    };
    if (is_digit(c)) return number(start);
    if (atom_start(c) || var_start(c)) {
      token t = make(atom_start(c) ? tok::atom : tok::var, start);
      append_utf8(t.text, c);
      while (pos_ < s_.size() && name_char(peek_char())) append_utf8(t.text, next_char());
      if (t.kind == tok::atom && is_reserved(t.text)) t.kind = tok::reserved;
      return t;
    }
    switch (c) {
      case '\'': {
        std::vector<std::uint32_t> cs = quoted('\'', start);
        token t = make(tok::atom, start);
        if (cs.size() > atom::max_length) fail(parse_error::bad_atom, start);
        for (std::uint32_t ch : cs) append_utf8(t.text, ch);
        return t;
      }
      case '"': {
        token t = make(tok::string, start);
        t.chars = quoted('"', start);
        return t;
      }
      case '$': {
        token t = make(tok::char_, start);
        std::uint32_t ch = next_char();
        if (ch == '\\') ch = escape(start);
        else if (!is_unicode(ch)) fail(parse_error::illegal_character, start);
        t.value = term(static_cast<std::int64_t>(ch));
        return t;
      }
      case '[': return single(tok::lbracket);
      case ']': return single(tok::rbracket);
      case '{': return single(tok::lbrace);
      case '}': return single(tok::rbrace);
      case '(': return single(tok::lparen);
      case ')': return single(tok::rparen);
      case ',': return single(tok::comma);
      case '|': return single(tok::bar);
      case '#': return single(tok::hash);
      case ':': return single(tok::colon);
      case '/': return single(tok::slash);
      case '-': return single(tok::minus);
      case '+': return single(tok::plus);
      case '<': return single(followed('<') ? tok::lbin : tok::lt);
      case '>': return single(followed('>') ? tok::rbin : tok::gt);
      case '=': return single(followed('>') ? tok::arrow : tok::other);
      case '.': {
        // erl_scan's dot: a full stop followed by white space, a comment or the end of the text.
        std::uint32_t n = peek_char();
        bool stop = n == UINT32_MAX || n == '%' || n <= ' ' || (n >= 0x80 && n <= 0xA0);
        return single(stop ? tok::dot : tok::other);
      }
      default:
        // erl_scan makes a one-character token of any other Latin-1 character; beyond, nothing.
        if (c > 0xFF) fail(parse_error::illegal_character, start);
        return single(tok::other);
    }
  }

  static bool is_reserved(std::string_view s) noexcept {
    static constexpr std::string_view words[] = {
        "after", "begin", "case", "try", "cond", "catch", "andalso", "orelse", "end", "fun", "if", "let", "of", "receive",
        "when", "bnot", "not", "div", "rem", "band", "and", "bor", "bxor", "bsl", "bsr", "or", "xor"};
    for (std::string_view w : words)
      if (w == s) return true;
    return false;
  }

  // Digits of `base` with single `_` between two digits (erl_scan's rule); appended to out without separators.
  void digits(std::string& out, int base) {
    while (pos_ < s_.size()) {
      char ch = s_[pos_];
      if (digit_value(static_cast<unsigned char>(ch)) < base) {
        out += ch;
        ++pos_;
      } else if (ch == '_' && !out.empty() && pos_ + 1 < s_.size() &&
                 digit_value(static_cast<unsigned char>(s_[pos_ + 1])) < base && pos_ > 0 &&
                 digit_value(static_cast<unsigned char>(s_[pos_ - 1])) < base) {
        ++pos_;
      } else {
        return;
      }
    }
  }

  token number(std::size_t start) {
    pos_ = start;
    std::string ds;
    digits(ds, 10);
    if (pos_ < s_.size() && s_[pos_] == '#') {
      ++pos_;
      int base = 0;
      for (char ch : ds) base = std::min(base * 10 + (ch - '0'), 99);
      if (base < 2 || base > 36) fail(parse_error::bad_integer, start);
      std::string bd;
      digits(bd, base);
      if (bd.empty()) fail(parse_error::bad_integer, start);
      token t = make(tok::integer, start);
      t.value = digits_to_integer(bd, base);
      return t;
    }
    if (pos_ + 1 < s_.size() && s_[pos_] == '.' && is_digit(static_cast<unsigned char>(s_[pos_ + 1]))) {
      std::string fs = ds;
      ++pos_;
      fs += '.';
      digits(fs, 10);
      long long exp10 = 0;
      if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
        ++pos_;
        fs += 'e';
        if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) fs += s_[pos_++];
        std::string es;
        digits(es, 10);
        if (es.empty()) fail(parse_error::bad_float, start);
        fs += es;
        exp10 = es.size() > 6 ? 1'000'000 : std::stoll(es);
        if (fs[fs.size() - es.size() - 1] == '-') exp10 = -exp10;
      }
      token t = make(tok::float_, start);
      double d = 0;
      auto r = std::from_chars(fs.data(), fs.data() + fs.size(), d);
      if (r.ec == std::errc::result_out_of_range) {
        // list_to_float gives 0.0 for a value too small and fails for one too large.
        const std::size_t dot = ds.size();
        std::size_t lead = ds.find_first_not_of('0');
        long long magnitude;
        if (lead != std::string::npos) {
          magnitude = static_cast<long long>(dot - lead) + exp10;
        } else {
          std::size_t frac_lead = fs.find_first_not_of('0', dot + 1);
          magnitude = exp10 - static_cast<long long>(frac_lead - dot);
        }
        if (magnitude > 0) fail(parse_error::bad_float, start);
        d = 0.0;
      } else if (r.ec != std::errc()) {
        fail(parse_error::bad_float, start);
      }
      t.value = term(d);
      return t;
    }
    token t = make(tok::integer, start);
    t.value = digits_to_integer(ds, 10);
    return t;
  }

  // The characters of a quoted atom or string, after its opening quote.
  std::vector<std::uint32_t> quoted(char q, std::size_t start) {
    std::vector<std::uint32_t> out;
    for (;;) {
      if (pos_ >= s_.size()) fail(parse_error::unexpected_end, start);
      std::size_t at = pos_;
      std::uint32_t c = next_char();
      if (c == static_cast<std::uint32_t>(q)) return out;
      // erl_scan refuses a raw U+FFFE/U+FFFF here, which leaves atoms holding them with no text at all; io_lib
      // prints them raw, and so do we, so accept them to read such atoms back.
      if (c == '\\') c = escape(at);
      out.push_back(c);
    }
  }

  // After a backslash (erl_scan:scan_escape/2).
  std::uint32_t escape(std::size_t at) {
    std::uint32_t c = next_char();
    auto oct = [&](std::size_t p) { return p < s_.size() && s_[p] >= '0' && s_[p] <= '7'; };
    if (c >= '0' && c <= '7') {
      std::uint32_t v = c - '0';
      for (int i = 0; i < 2 && oct(pos_); ++i) v = v * 8 + static_cast<std::uint32_t>(s_[pos_++] - '0');
      return v;
    }
    if (c == 'x') {
      if (pos_ < s_.size() && s_[pos_] == '{') {
        ++pos_;
        std::uint64_t v = 0;
        std::size_t n = 0;
        while (pos_ < s_.size() && digit_value(static_cast<unsigned char>(s_[pos_])) < 16) {
          v = v * 16 + static_cast<unsigned>(digit_value(static_cast<unsigned char>(s_[pos_++])));
          if (v > 0x10FFFF) v = 0x110000;
          ++n;
        }
        if (pos_ >= s_.size()) fail(parse_error::unexpected_end, at);
        if (s_[pos_] != '}' || n == 0 || !is_unicode(static_cast<std::uint32_t>(v))) fail(parse_error::bad_escape, at);
        ++pos_;
        return static_cast<std::uint32_t>(v);
      }
      if (pos_ + 1 < s_.size() && digit_value(static_cast<unsigned char>(s_[pos_])) < 16 &&
          digit_value(static_cast<unsigned char>(s_[pos_ + 1])) < 16) {
        std::uint32_t v = static_cast<std::uint32_t>(digit_value(static_cast<unsigned char>(s_[pos_])) * 16 +
                                                     digit_value(static_cast<unsigned char>(s_[pos_ + 1])));
        pos_ += 2;
        return v;
      }
      if (pos_ >= s_.size() || (pos_ + 1 >= s_.size() && digit_value(static_cast<unsigned char>(s_[pos_])) < 16))
        fail(parse_error::unexpected_end, at);
      fail(parse_error::bad_escape, at);
    }
    if (c == '^') {
      std::uint32_t n = next_char();
      return n == '\n' ? n : (n & 31);
    }
    switch (c) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case 'v': return '\v';
      case 'b': return '\b';
      case 'f': return '\f';
      case 'e': return 27;
      case 's': return ' ';
      case 'd': return 127;
      default:
        if (!is_unicode(c)) fail(parse_error::illegal_character, at);
        return c;
    }
  }

  std::string_view s_;
  const parse_options& opts_;
  std::size_t pos_ = 0;
  std::size_t last_end_ = 0;  // where the last token returned by lex() ended
  std::size_t prev_end_ = 0;  // last_end_ before that token, for unread()
  std::optional<token> la_;   // one token read ahead; pos_ is then after it
};

// <<Segment, ...>> after the opening <<. Segments are literals only, so this needs no stack.
term parser::binary() {
  bit_writer out;
  token t = lex();
  if (t.kind == tok::rbin) return out.finish();
  for (;;) {
    const std::size_t seg_pos = t.pos;
    // The value: a number (maybe signed), a character, or strings.
    std::vector<term> values;
    bool is_string = false;
    if (t.kind == tok::minus || t.kind == tok::plus) {
      token n = lex();
      if (n.kind != tok::integer && n.kind != tok::float_ && n.kind != tok::char_) fail(bad(n), n.pos);
      values.push_back(t.kind == tok::minus ? negate(n.value) : std::move(n.value));
    } else if (t.kind == tok::integer || t.kind == tok::float_ || t.kind == tok::char_) {
      values.push_back(std::move(t.value));
    } else if (t.kind == tok::string) {
      std::vector<std::uint32_t> chars = std::move(t.chars);
      more_strings(chars);
      values.assign(chars.begin(), chars.end());
      is_string = true;
    } else if (t.kind == tok::atom || t.kind == tok::lbin || t.kind == tok::lbracket || t.kind == tok::lbrace) {
      fail(parse_error::bad_binary, t.pos);
    } else {
      fail(bad(t), t.pos);
    }
    // :Size
    token n = lex();
    std::optional<std::uint64_t> size;
    if (n.kind == tok::colon) {
      token sz = lex();
      if (sz.kind != tok::integer) fail(sz.kind == tok::minus ? parse_error::unexpected_token : bad(sz), sz.pos);
      if (!sz.value.is_small() || sz.value.small() > (1 << 24)) fail(parse_error::bad_binary, sz.pos);
      size = static_cast<std::uint64_t>(sz.value.small());
      n = lex();
    }
    // /Type-Specifiers
    enum { t_integer, t_float, t_utf8, t_utf16, t_utf32 } type = t_integer;
    bool type_set = false, little = false, endian_set = false;
    std::optional<std::uint64_t> unit;
    if (n.kind == tok::slash) {
      do {
        token spec = lex();
        if (spec.kind != tok::atom) fail(bad(spec), spec.pos);
        const std::string& w = spec.text;
        if (w == "unit") {
          expect(lex(), tok::colon);
          token u = lex();
          if (u.kind != tok::integer) fail(bad(u), u.pos);
          if (!u.value.is_small() || u.value.small() < 1 || u.value.small() > 256 || unit) fail(parse_error::bad_binary, u.pos);
          unit = static_cast<std::uint64_t>(u.value.small());
        } else if (w == "integer" || w == "float" || w == "utf8" || w == "utf16" || w == "utf32") {
          auto ty = w == "integer" ? t_integer : w == "float" ? t_float : w == "utf8" ? t_utf8 : w == "utf16" ? t_utf16 : t_utf32;
          if (type_set && ty != type) fail(parse_error::bad_binary, spec.pos);
          type = ty, type_set = true;
        } else if (w == "big" || w == "little" || w == "native") {
          bool l = w != "big" && (w == "little" || std::endian::native == std::endian::little);
          if (endian_set && l != little) fail(parse_error::bad_binary, spec.pos);
          little = l, endian_set = true;
        } else if (w == "signed" || w == "unsigned") {
          // Signedness matters only when matching, not when building.
        } else {
          fail(parse_error::bad_binary, spec.pos);  // binary, bytes, bitstring, bits need a binary value
        }
        n = lex();
      } while (n.kind == tok::minus);
    }
    const bool utf = type == t_utf8 || type == t_utf16 || type == t_utf32;
    if (utf && (size || unit)) fail(parse_error::bad_binary, seg_pos);
    if (type == t_float && is_string) fail(parse_error::bad_binary, seg_pos);
    const std::uint64_t bits = size.value_or(type == t_float ? 64 : 8) * unit.value_or(1);
    if (bits > (std::uint64_t{1} << 24)) fail(parse_error::bad_binary, seg_pos);
    for (const term& v : values) {
      if (type == t_float) {
        if (!v.is_number()) fail(parse_error::bad_binary, seg_pos);
        double d = v.is_float() ? v.float_value() : static_cast<double>(v.is_small() ? v.small() : v.big().convert_to<double>());
        std::uint64_t raw;
        if (bits == 64) {
          raw = std::bit_cast<std::uint64_t>(d);
        } else if (bits == 32) {
          raw = std::bit_cast<std::uint32_t>(static_cast<float>(d));
        } else if (bits == 16) {
          raw = to_half(d);
        } else {
          fail(parse_error::bad_binary, seg_pos);
        }
        if (little)
          for (std::size_t i = 0; i < bits / 8; ++i) out.put((raw >> (8 * i)) & 0xFF, 8);
        else
          out.put(raw, bits);
      } else if (utf) {
        if (!v.is_small() || v.small() < 0 || v.small() > 0x10FFFF || (v.small() >= 0xD800 && v.small() <= 0xDFFF))
          fail(parse_error::bad_binary, seg_pos);
        auto c = static_cast<std::uint32_t>(v.small());
        std::vector<std::uint32_t> units;  // code units of the encoding, each with its width
        std::size_t width = 8;
        if (type == t_utf8) {
          std::string u8;
          append_utf8(u8, c);
          for (char ch : u8) units.push_back(static_cast<unsigned char>(ch));
        } else if (type == t_utf16) {
          width = 16;
          if (c < 0x10000) {
            units.push_back(c);
          } else {
            units.push_back(0xD800 + ((c - 0x10000) >> 10));
            units.push_back(0xDC00 + ((c - 0x10000) & 0x3FF));
          }
        } else {
          width = 32;
          units.push_back(c);
        }
        for (std::uint32_t u : units) {
          if (little && width > 8)
            for (std::size_t i = 0; i < width / 8; ++i) out.put((u >> (8 * i)) & 0xFF, 8);
          else
            out.put(u, width);
        }
      } else {
        if (v.is_float()) fail(parse_error::bad_binary, seg_pos);
        if (little) {
          // Whole bytes from the least significant end, then the remaining high bits (the BEAM's layout).
          const big_int b = low_bits(v.big(), bits);
          for (std::uint64_t i = 0; i < bits / 8; ++i) out.put_big(b >> (8 * i), 8);
          if (bits % 8) out.put_big(b >> (8 * (bits / 8)), bits % 8);
        } else if (v.is_small() && bits <= 64) {
          out.put(static_cast<std::uint64_t>(v.small()), bits);
        } else {
          out.put_big(low_bits(v.big(), bits), bits);
        }
      }
    }
    if (n.kind == tok::rbin) return out.finish();
    expect(n, tok::comma);
    t = lex();
  }
}

void locate(std::string_view text, parse_result& r) {
  r.line = 1;
  r.column = 1;
  for (std::size_t i = 0; i < r.offset && i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++r.line;
      r.column = 1;
    } else if ((c & 0xC0) != 0x80) {
      ++r.column;
    }
  }
}

parse_result run(std::string_view text, const parse_options& opts, bool whole) {
  parse_result r;
  parser p(text, opts);
  try {
    if (p.at_end()) {
      r.ec = parse_error::unexpected_end;
      r.offset = text.size();
      locate(text, r);
      return r;
    }
    r.value = p.parse_term();
    r.offset = p.finish_term();
    if (whole) {
      token n = p.lex();
      if (n.kind != tok::end) throw failure{parse_error::trailing_input, n.pos};
      r.offset = text.size();
    }
  } catch (const failure& f) {
    r.value = term();
    r.ec = f.error;
    r.offset = f.pos;
    locate(text, r);
  }
  return r;
}

}  // namespace

const std::error_category& parse_category() noexcept {
  static const parse_category_impl c;
  return c;
}

parse_result parse(std::string_view text, const parse_options& opts) { return run(text, opts, true); }
parse_result parse_prefix(std::string_view text, const parse_options& opts) { return run(text, opts, false); }

std::string describe(const parse_result& r) {
  if (!r.ec) return "ok";
  return fmt::format("line {}, column {}: {}", r.line, r.column, r.ec.message());
}

term parse_or_throw(std::string_view text, const parse_options& opts) {
  parse_result r = parse(text, opts);
  if (!r) throw std::system_error(r.ec, describe(r));
  return std::move(r.value);
}

}  // namespace cnode::etf
