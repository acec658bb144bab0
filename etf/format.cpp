#include "etf/format.hpp"
#include "etf/utf8.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

namespace cnode::etf {
namespace {

// One code point of UTF-8 as the BEAM's <<C/utf8>> accepts it (no overlong forms, no surrogates, at most 0x10FFFF);
// returns false at invalid input. Atom text is already valid; binaries may not be.
bool next_utf8(const std::uint8_t*& p, const std::uint8_t* end, std::uint32_t& c) {
  const std::uint8_t b = *p;
  int n;
  std::uint32_t min;
  if (b < 0x80) {
    c = b;
    ++p;
    return true;
  } else if ((b & 0xE0) == 0xC0) {
    n = 1, c = b & 0x1F, min = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    n = 2, c = b & 0x0F, min = 0x800;
  } else if ((b & 0xF8) == 0xF0) {
    n = 3, c = b & 0x07, min = 0x10000;
  } else {
    return false;
  }
  if (end - p <= n) return false;
  for (int i = 1; i <= n; ++i) {
    if ((p[i] & 0xC0) != 0x80) return false;
    c = (c << 6) | (p[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
  p += n + 1;
  return true;
}

// io_lib:printable_unicode_list/1's notion of a printable character.
bool printable_unicode(std::int64_t c) noexcept {
  return (c >= 32 && c <= 126) || (c >= 0xA0 && c < 0xD800) || (c > 0xDFFF && c < 0xFFFE) ||
         (c > 0xFFFF && c <= 0x10FFFF) || (c >= '\b' && c <= '\r') || c == 27;
}

bool printable_latin1(std::uint8_t c) noexcept { return (c >= 32 && c <= 126) || c >= 0xA0 || (c >= '\b' && c <= '\r') || c == 27; }

// io_lib:write_string/2's escaping of one character inside quotes q.
void append_quoted_char(std::string& out, std::uint32_t c, char q) {
  if (c == static_cast<std::uint32_t>(q) || c == '\\') {
    out += '\\';
    out += static_cast<char>(c);
  } else if (c >= 32 && c <= 126) {
    out += static_cast<char>(c);
  } else if (c >= 0xA0) {
    append_utf8(out, c);
  } else {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\v': out += "\\v"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case 27: out += "\\e"; break;
      case 127: out += "\\d"; break;
      default:
        out += '\\';
        out += static_cast<char>('0' + (c >> 6));
        out += static_cast<char>('0' + ((c >> 3) & 7));
        out += static_cast<char>('0' + (c & 7));
    }
  }
}

// erl_scan:f_reserved_word/1 of OTP 25 (no feature keywords are enabled by default there, so `maybe` and `else`
// are plain atoms).
bool reserved_word(std::string_view s) noexcept {
  static constexpr std::array<std::string_view, 27> words = {
      "after", "begin", "case", "try",  "cond", "catch", "andalso", "orelse", "end", "fun", "if",  "let", "of", "receive",
      "when",  "bnot",  "not",  "div",  "rem",  "band",  "and",     "bor",    "bxor", "bsl", "bsr", "or",  "xor"};
  for (std::string_view w : words)
    if (w == s) return true;
  return false;
}

bool atom_start(std::uint32_t c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7); }
bool name_char(std::uint32_t c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '@' ||
         (c >= 0xDF && c <= 0xFF && c != 0xF7) || (c >= 0xC0 && c <= 0xDE && c != 0xD7);
}

bool atom_needs_quotes(std::string_view text) {
  if (text.empty() || reserved_word(text)) return true;
  auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  auto* end = p + text.size();
  std::uint32_t c;
  if (!next_utf8(p, end, c) || !atom_start(c)) return true;
  while (p < end) {
    if (!next_utf8(p, end, c) || !name_char(c)) return true;
  }
  return false;
}

void append_quoted_utf8(std::string& out, std::string_view text, char q) {
  out += q;
  auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  auto* end = p + text.size();
  std::uint32_t c;
  while (p < end) {
    if (!next_utf8(p, end, c)) c = *p++;  // cannot happen for atoms (validated at creation)
    append_quoted_char(out, c, q);
  }
  out += q;
}

template <typename I>
void append_int(std::string& out, I v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_integer(std::string& out, const term& t) {
  if (t.is_small())
    append_int(out, t.small());
  else
    out += t.big_ref().str();
}

// <<1,2,3>> / <<1,2:3>>: io_lib:write_binary/3 without a depth limit.
void append_binary_bytes(std::string& out, const term& t) {
  auto b = t.bytes();
  const std::size_t full = t.last_bits() == 8 ? b.size() : b.size() - 1;
  out += "<<";
  for (std::size_t i = 0; i < full; ++i) {
    if (i) out += ',';
    append_int(out, static_cast<unsigned>(b[i]));
  }
  if (full < b.size()) {
    if (full) out += ',';
    append_int(out, static_cast<unsigned>(b.back() >> (8 - t.last_bits())));
    out += ':';
    append_int(out, static_cast<unsigned>(t.last_bits()));
  }
  out += ">>";
}

// io_lib_pretty's printable_bin/4 in unicode mode without limits: valid UTF-8 decides alone (all printable code
// points or bytes); otherwise printable Latin-1 bytes make text.
void append_binary(std::string& out, const term& t, bool strings) {
  auto b = t.bytes();
  if (b.empty()) {
    out += "<<>>";
    return;
  }
  if (!strings || t.last_bits() != 8) return append_binary_bytes(out, t);
  const std::uint8_t* p = b.data();
  const std::uint8_t* end = p + b.size();
  bool valid = true, printable = true, ascii = true;
  std::uint32_t c;
  while (p < end) {
    if (!next_utf8(p, end, c)) {
      valid = false;
      break;
    }
    if (c >= 0x80) ascii = false;
    if (!printable_unicode(c)) printable = false;
  }
  if (valid) {
    if (!printable) return append_binary_bytes(out, t);
    out += "<<\"";
    p = b.data();
    while (p < end) {
      next_utf8(p, end, c);
      append_quoted_char(out, c, '"');
    }
    out += ascii ? "\">>" : "\"/utf8>>";
    return;
  }
  for (std::uint8_t byte : b)
    if (!printable_latin1(byte)) return append_binary_bytes(out, t);
  out += "<<\"";
  for (std::uint8_t byte : b) append_quoted_char(out, byte, '"');
  out += "\">>";
}

// A proper, non-empty list of printable code points (io_lib:printable_unicode_list/1), walked without copying.
bool printable_list(const term& list) noexcept {
  const term* cur = &list;
  for (;;) {
    for (const term& e : cur->list_segment())
      if (!e.is_small() || !printable_unicode(e.small())) return false;
    const term& tail = cur->list_segment_tail();
    if (tail.is_nil()) return true;
    if (!tail.is_cons()) return false;
    cur = &tail;
  }
}

void append_string(std::string& out, const term& list) {
  out += '"';
  const term* cur = &list;
  for (;;) {
    for (const term& e : cur->list_segment()) append_quoted_char(out, static_cast<std::uint32_t>(e.small()), '"');
    const term& tail = cur->list_segment_tail();
    if (!tail.is_cons()) break;
    cur = &tail;
  }
  out += '"';
}

void append_node(std::string& out, const atom& node, const print_options& opts) {
  if (opts.local_node && *opts.local_node == node)
    out += '0';
  else
    print_atom(node, out);
}

// One pending container of the explicit printing stack.
struct frame {
  enum kind_t : std::uint8_t { tuple, list, list_tail, map } kind;
  bool flag = false;  // list: an element is printed already; map: the key at i is printed, its value is next
  std::size_t i = 0;
  std::span<const term> items;  // tuple elements, the current list segment, map keys
  const term* extra = nullptr;  // list: the tail after the segment; map: the values
};

class printer {
 public:
  printer(std::string& out, const print_options& opts) : out_(out), opts_(opts) {}

  void run(const term& root) {
    open(root);
    while (!stack_.empty()) {
      frame& f = stack_.back();
      switch (f.kind) {
        case frame::tuple:
          if (f.i == f.items.size()) {
            out_ += '}';
            stack_.pop_back();
          } else {
            if (f.i) out_ += ',';
            open(f.items[f.i++]);
          }
          break;
        case frame::list:
          if (f.i < f.items.size()) {
            // Elements after the first are separated by commas, across segments too.
            if (f.flag) out_ += ',';
            f.flag = true;
            open(f.items[f.i++]);
          } else if (f.extra->is_cons()) {
            const term* next = f.extra;
            f.items = next->list_segment();
            f.extra = &next->list_segment_tail();
            f.i = 0;
          } else if (f.extra->is_nil()) {
            out_ += ']';
            stack_.pop_back();
          } else {
            out_ += '|';
            f.kind = frame::list_tail;
            open(*f.extra);
          }
          break;
        case frame::list_tail:
          out_ += ']';
          stack_.pop_back();
          break;
        case frame::map:
          if (f.flag) {
            f.flag = false;
            out_ += " => ";
            open(f.extra[f.i++]);
          } else if (f.i == f.items.size()) {
            out_ += '}';
            stack_.pop_back();
          } else {
            if (f.i) out_ += ',';
            f.flag = true;
            open(f.items[f.i]);
          }
          break;
      }
    }
  }

 private:
  // Prints a scalar completely, or the opening of a container and pushes its frame.
  void open(const term& t) {
    switch (t.type()) {
      case term_type::integer:
      case term_type::big_integer: append_integer(out_, t); break;
      case term_type::float_: print_float(t.float_value(), out_); break;
      case term_type::atom: print_atom(t.atom_value(), out_); break;
      case term_type::nil: out_ += "[]"; break;
      case term_type::binary: append_binary(out_, t, opts_.strings); break;
      case term_type::tuple:
        if (t.tuple_size() == 0) {
          out_ += "{}";
        } else {
          out_ += '{';
          stack_.push_back({frame::tuple, false, 0, t.elements(), nullptr});
        }
        break;
      case term_type::map:
        if (t.map_size() == 0) {
          out_ += "#{}";
        } else {
          out_ += "#{";
          stack_.push_back({frame::map, false, 0, t.map_keys(), t.map_values().data()});
        }
        break;
      case term_type::list:
        if (opts_.strings && printable_list(t)) {
          append_string(out_, t);
        } else {
          out_ += '[';
          stack_.push_back({frame::list, false, 0, t.list_segment(), &t.list_segment_tail()});
        }
        break;
      case term_type::pid: {
        const pid_value& p = t.as_pid();
        out_ += '<';
        append_node(out_, p.node, opts_);
        out_ += '.';
        append_int(out_, p.id);
        out_ += '.';
        append_int(out_, p.serial);
        out_ += '>';
        break;
      }
      case term_type::port: {
        const port_value& p = t.as_port();
        out_ += "#Port<";
        append_node(out_, p.node, opts_);
        out_ += '.';
        append_int(out_, p.id);
        out_ += '>';
        break;
      }
      case term_type::reference: {
        const ref_value& r = t.as_ref();
        out_ += "#Ref<";
        append_node(out_, r.node, opts_);
        for (std::size_t i = r.len; i-- > 0;) {
          out_ += '.';
          append_int(out_, r.ids[i]);
        }
        out_ += '>';
        break;
      }
      case term_type::export_: {
        const export_value& e = t.as_export();
        out_ += "fun ";
        print_atom(e.module, out_);
        out_ += ':';
        print_atom(e.function, out_);
        out_ += '/';
        append_int(out_, static_cast<unsigned>(e.arity));
        break;
      }
      case term_type::fun: {
        // erts prints the old index and old uniq of a fun (erl_printf_term.c), both integers.
        const fun_value& f = t.as_fun();
        out_ += "#Fun<";
        print_atom(f.module, out_);
        out_ += '.';
        if (f.old_index.is_integer()) append_integer(out_, f.old_index);
        out_ += '.';
        if (f.old_uniq.is_integer()) append_integer(out_, f.old_uniq);
        out_ += '>';
        break;
      }
    }
  }

  std::string& out_;
  const print_options& opts_;
  std::vector<frame> stack_;
};

}  // namespace

void print_atom(const atom& a, std::string& out) {
  std::string_view text = a.text();
  if (atom_needs_quotes(text))
    append_quoted_utf8(out, text, '\'');
  else
    out += text;
}

void print_float(double d, std::string& out) {
  if (std::isnan(d)) {
    out += "nan";  // not an Erlang float; only reachable through terms built in C++
    return;
  }
  if (std::isinf(d)) {
    out += d < 0 ? "-inf" : "inf";
    return;
  }
  if (d == 0) {
    out += std::signbit(d) ? "-0.0" : "0.0";
    return;
  }
  if (d < 0) out += '-';
  // Shortest round-trip digits, then OTP's layout (erts/emulator/ryu/to_chars.h, OTP 25).
  char buf[40];
  auto r = std::to_chars(buf, buf + sizeof buf, std::fabs(d), std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  const std::size_t e_pos = s.find('e');
  char digits[20];
  std::size_t n = 0;
  for (char c : s.substr(0, e_pos))
    if (c != '.') digits[n++] = c;
  int sci_exp = 0;
  std::from_chars(s.data() + e_pos + (s[e_pos + 1] == '+' ? 2 : 1), s.data() + s.size(), sci_exp);
  const int len = static_cast<int>(n);
  const int exp = sci_exp - (len - 1);  // value = digits × 10^exp
  std::uint64_t mantissa = 0;
  for (std::size_t i = 0; i < n; ++i) mantissa = mantissa * 10 + static_cast<std::uint64_t>(digits[i] - '0');
  int lower, upper;
  if (len == 1) {
    lower = -4, upper = 2;
  } else if (sci_exp >= 10) {
    lower = -(len + 2), upper = 2;
  } else {
    lower = -(len + 2), upper = 1;
  }
  bool fixed = lower <= exp && exp <= upper;
  // Integers at or beyond 2^53 print in scientific form (to_chars.h's special case).
  if (fixed && ((mantissa >= (1ull << 53) && exp == 0) || (mantissa > (1ull << 52) / 5 && exp == 1) ||
                (mantissa > (1ull << 51) / 25 && exp == 2)))
    fixed = false;
  if (fixed) {
    const int whole = len + exp;
    if (exp >= 0) {
      out.append(digits, n);
      out.append(static_cast<std::size_t>(exp), '0');
      out += ".0";
    } else if (whole > 0) {
      out.append(digits, static_cast<std::size_t>(whole));
      out += '.';
      out.append(digits + whole, n - static_cast<std::size_t>(whole));
    } else {
      out += "0.";
      out.append(static_cast<std::size_t>(-whole), '0');
      out.append(digits, n);
    }
    return;
  }
  out += digits[0];
  out += '.';
  if (n > 1)
    out.append(digits + 1, n - 1);
  else
    out += '0';
  out += 'e';
  append_int(out, sci_exp);
}

void print(const term& t, std::string& out, const print_options& opts) { printer(out, opts).run(t); }

std::string to_string(const term& t, const print_options& opts) {
  std::string s;
  print(t, s, opts);
  return s;
}

}  // namespace cnode::etf
