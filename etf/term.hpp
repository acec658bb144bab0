// The Erlang term: one 16-byte value type for every term the External Term Format can carry.
//
// Immediates (small integers that fit in int64, floats, atoms, []) live inside the value. Everything else is an
// immutable, reference-counted node, so copying a term is cheap and terms can be shared across threads. A list is
// stored as one node holding its elements and its tail; a term handle to it carries an offset, so tail() is O(1) and
// decoding a list allocates once. Destruction is iterative: a 1 000 000-deep term is freed without recursion.
#pragma once

#include <atomic>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/multiprecision/cpp_int.hpp>

#include "etf/atom.hpp"

namespace cnode::etf {

using big_int = boost::multiprecision::cpp_int;

// The kinds of term, in Erlang's term order between classes (number < atom < reference < fun < port < pid < tuple
// < map < nil < list < bitstring); integer/big_integer/float_ are all "number", fun/export_ both "fun".
enum class term_type : std::uint8_t {
  integer,
  big_integer,
  float_,
  atom,
  reference,
  fun,
  export_,
  port,
  pid,
  tuple,
  map,
  nil,
  list,
  binary,
};

std::string_view to_string(term_type t) noexcept;

namespace detail {
struct node;
void release(node* n) noexcept;
inline void retain(node* n) noexcept;
}  // namespace detail

class term;

// An immutable byte buffer shared between a decoded term and the large binaries that refer into it.
class shared_bytes {
 public:
  shared_bytes() = default;
  explicit shared_bytes(std::vector<std::uint8_t> bytes);
  static shared_bytes copy(std::span<const std::uint8_t> bytes);
  shared_bytes(const shared_bytes& o) noexcept;
  shared_bytes(shared_bytes&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
  shared_bytes& operator=(shared_bytes o) noexcept {
    std::swap(n_, o.n_);
    return *this;
  }
  ~shared_bytes();
  inline const std::uint8_t* data() const noexcept;
  inline std::size_t size() const noexcept;
  std::span<const std::uint8_t> span() const noexcept { return {data(), size()}; }
  detail::node* node() const noexcept { return n_; }

 private:
  detail::node* n_ = nullptr;
};

struct pid_value {
  atom node;
  std::uint32_t id = 0;
  std::uint32_t serial = 0;
  std::uint32_t creation = 0;
  friend bool operator==(const pid_value&, const pid_value&) = default;
};

struct port_value {
  atom node;
  std::uint64_t id = 0;
  std::uint32_t creation = 0;
  friend bool operator==(const port_value&, const port_value&) = default;
};

struct ref_value {
  static constexpr std::size_t max_words = 5;
  atom node;
  std::uint32_t creation = 0;
  std::uint8_t len = 0;  // number of id words in use, 1..5
  std::uint32_t ids[max_words] = {};
  std::span<const std::uint32_t> words() const noexcept { return {ids, len}; }
  friend bool operator==(const ref_value& a, const ref_value& b) noexcept;
};

struct export_value {
  atom module;
  atom function;
  std::uint8_t arity = 0;
  friend bool operator==(const export_value&, const export_value&) = default;
};

// A NEW_FUN_EXT fun, kept structurally so that it re-encodes byte-identically.
struct fun_value;

class term {
 public:
  // [] (nil).
  constexpr term() noexcept : type_(term_type::nil), aux_(0), i_(0) {}
  term(const term& o) noexcept : type_(o.type_), aux_(o.aux_), i_(o.i_) {
    if (is_boxed())
      detail::retain(p_);
    else if (aux_)  // a dynamic atom (aux_ is 0 for every other immediate)
      detail::atom_retain(a_.entry());
  }
  term(term&& o) noexcept : type_(o.type_), aux_(o.aux_), i_(o.i_) {
    o.type_ = term_type::nil;
    o.aux_ = 0;
  }
  term& operator=(const term& o) noexcept {
    term tmp(o);
    swap(tmp);
    return *this;
  }
  term& operator=(term&& o) noexcept {
    term tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~term() {
    if (is_boxed())
      detail::release(p_);
    else if (aux_)
      detail::atom_release(a_.entry());
  }
  void swap(term& o) noexcept {
    std::swap(type_, o.type_);
    std::swap(aux_, o.aux_);
    std::swap(i_, o.i_);
  }

  // ---- construction ----
  // Integers of every C++ integer type; the value decides whether it is stored inline or as a big integer.
  template <typename I>
    requires(std::is_integral_v<I> && !std::is_same_v<I, bool>)
  term(I v) noexcept(sizeof(I) < 8 || std::is_signed_v<I>) : type_(term_type::nil), aux_(0), i_(0) {
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= 8) {
      if (v > static_cast<std::uint64_t>(INT64_MAX)) {
        *this = from_big(big_int(v));
        return;
      }
    }
    type_ = term_type::integer;
    aux_ = 0;
    i_ = static_cast<std::int64_t>(v);
  }
  term(double d) noexcept : type_(term_type::float_), aux_(0), f_(d) {}
  term(const atom& a) noexcept : type_(term_type::atom), aux_(detail::atom_hold(a.entry())), a_(a.entry(), atom::adopt) {}
  explicit term(bool b) noexcept : term(b ? atom::true_() : atom::false_()) {}

  static term from_big(big_int v);  // normalises: a value that fits int64 becomes a small integer
  static term nil() noexcept { return term(); }
  static term tuple(std::span<const term> elems);
  static term tuple(std::vector<term>&& elems);
  static term tuple(std::initializer_list<term> elems) { return tuple(std::span<const term>(elems.begin(), elems.size())); }
  static term list(std::span<const term> elems);  // proper list; empty → []
  static term list(std::vector<term>&& elems);
  static term list(std::initializer_list<term> elems) { return list(std::span<const term>(elems.begin(), elems.size())); }
  // [E1, ..., En | tail]; no elements gives tail itself.
  static term improper_list(std::vector<term>&& elems, term tail);
  static term cons(term head, term tail);
  // A string as Erlang's "..." literal: a list of its Unicode code points (input is UTF-8).
  static term string(std::string_view utf8);
  // Map from key/value pairs; a later duplicate key (by =:=) replaces an earlier one.
  static term map(std::vector<std::pair<term, term>>&& kvs);
  static term map(std::initializer_list<std::pair<term, term>> kvs);
  static term binary(std::span<const std::uint8_t> bytes);
  static term binary(std::string_view bytes);
  // A bitstring: bytes.size() bytes of which the last holds last_bits (1..8) significant high bits.
  static term bitstring(std::span<const std::uint8_t> bytes, std::uint8_t last_bits);
  // A binary that refers into a shared buffer instead of copying.
  static term binary_ref(const shared_bytes& owner, std::size_t offset, std::size_t size, std::uint8_t last_bits = 8);
  static term pid(const pid_value& v);
  static term port(const port_value& v);
  static term reference(const ref_value& v);
  static term export_(const export_value& v);
  static term fun(fun_value&& v);

  // ---- inspection ----
  term_type type() const noexcept { return type_; }
  bool is_integer() const noexcept { return type_ == term_type::integer || type_ == term_type::big_integer; }
  bool is_small() const noexcept { return type_ == term_type::integer; }
  bool is_float() const noexcept { return type_ == term_type::float_; }
  bool is_number() const noexcept { return type_ <= term_type::float_; }
  bool is_atom() const noexcept { return type_ == term_type::atom; }
  bool is_atom(const atom& a) const noexcept { return type_ == term_type::atom && a_ == a; }
  bool is_nil() const noexcept { return type_ == term_type::nil; }
  bool is_cons() const noexcept { return type_ == term_type::list; }
  bool is_list() const noexcept { return type_ == term_type::nil || type_ == term_type::list; }
  bool is_tuple() const noexcept { return type_ == term_type::tuple; }
  bool is_tuple(std::size_t arity) const noexcept { return type_ == term_type::tuple && tuple_size() == arity; }
  bool is_map() const noexcept { return type_ == term_type::map; }
  bool is_bitstring() const noexcept { return type_ == term_type::binary; }
  bool is_binary() const noexcept { return type_ == term_type::binary && last_bits() == 8; }
  bool is_pid() const noexcept { return type_ == term_type::pid; }
  bool is_port() const noexcept { return type_ == term_type::port; }
  bool is_reference() const noexcept { return type_ == term_type::reference; }
  bool is_fun() const noexcept { return type_ == term_type::fun || type_ == term_type::export_; }

  // Accessors: calling one on a term of another type is a programming error (asserted in debug builds).
  std::int64_t small() const noexcept { return i_; }
  big_int big() const;  // any integer as a big_int
  const big_int& big_ref() const noexcept;  // big_integer only
  double float_value() const noexcept { return f_; }
  const atom& atom_value() const noexcept { return a_; }

  std::size_t tuple_size() const noexcept;
  const term& element(std::size_t i) const noexcept;  // 0-based
  std::span<const term> elements() const noexcept;

  const term& head() const noexcept;  // non-empty list
  term tail() const noexcept;
  // The elements of a list up to its first non-list tail, without copying when the list is one node.
  // Returns false with out partially filled when the list is improper; `tail_out` then holds the tail.
  bool list_to_vector(std::vector<term>& out, term* tail_out = nullptr) const;
  // The elements stored in this list node from this handle on, and the tail after them (which may be another cons).
  std::span<const term> list_segment() const noexcept;
  const term& list_segment_tail() const noexcept;

  std::size_t map_size() const noexcept;
  std::span<const term> map_keys() const noexcept;  // sorted in map key order
  std::span<const term> map_values() const noexcept;
  const term* map_find(const term& key) const noexcept;  // exact (=:=) key match

  std::span<const std::uint8_t> bytes() const noexcept;  // binary/bitstring bytes
  std::size_t byte_size() const noexcept;
  std::uint8_t last_bits() const noexcept;  // 8 for a binary; 1..8 bits of the last byte for a bitstring
  std::size_t bit_size() const noexcept;

  const pid_value& as_pid() const noexcept;
  const port_value& as_port() const noexcept;
  const ref_value& as_ref() const noexcept;
  const export_value& as_export() const noexcept;
  const fun_value& as_fun() const noexcept;

  // The node a pid, port or reference belongs to.
  atom node_of() const noexcept;

  // ---- comparison ----
  // Exact equality (=:=): 1 and 1.0 differ.
  friend bool operator==(const term& a, const term& b) noexcept;
  // Erlang term order, where numbers compare by value (so 1 <=> 1.0 is equivalent, matching ==).
  friend std::weak_ordering operator<=>(const term& a, const term& b) noexcept;

  detail::node* boxed() const noexcept { return p_; }
  bool holds_node() const noexcept { return is_boxed(); }
  std::uint32_t aux() const noexcept { return aux_; }

 private:
  friend struct term_access;
  // One shift and test: every type but the four immediates is a node.
  static constexpr std::uint32_t immediate_types =
      (1u << static_cast<unsigned>(term_type::integer)) | (1u << static_cast<unsigned>(term_type::float_)) |
      (1u << static_cast<unsigned>(term_type::atom)) | (1u << static_cast<unsigned>(term_type::nil));
  bool is_boxed() const noexcept { return !((immediate_types >> static_cast<unsigned>(type_)) & 1u); }
  term(term_type t, std::uint32_t aux, detail::node* p) noexcept : type_(t), aux_(aux), p_(p) {}
  // An atom term that takes over the reference the caller holds on e when it is dynamic (see atom.hpp).
  struct adopt_t {};
  term(adopt_t, const detail::atom_entry* e) noexcept
      : type_(term_type::atom), aux_(e->permanent() ? 0 : 1), a_(e, atom::adopt) {}
  struct permanent_t {};
  term(permanent_t, const detail::atom_entry* e) noexcept : type_(term_type::atom), aux_(0), a_(e, atom::adopt) {}

  term_type type_;
  std::uint32_t aux_;  // list: element offset within its node; atom: 1 when it holds a reference (dynamic)
  union {
    std::int64_t i_;
    double f_;
    atom a_;  // its reference, if any, is managed by term through aux_
    detail::node* p_;
  };
};
static_assert(sizeof(term) == 16);

struct fun_value {
  std::uint8_t arity = 0;
  std::uint8_t uniq[16] = {};
  std::uint32_t index = 0;
  atom module;
  term old_index;
  term old_uniq;
  term pid;
  std::vector<term> free_vars;
  friend bool operator==(const fun_value&, const fun_value&) noexcept;
};

// Erlang's two equalities and term order as free functions.
bool exact_equal(const term& a, const term& b) noexcept;  // =:=
bool equal(const term& a, const term& b) noexcept;        // ==  (1 == 1.0)
// <0, 0, >0 in Erlang term order (numbers by value: compare(1, 1.0) == 0).
int compare(const term& a, const term& b) noexcept;
// Total order used for map keys: term order, but an integer sorts before a float of equal value.
int compare_exact(const term& a, const term& b) noexcept;

// Hashes consistent with =:= (hash_exact, std::hash) and with == (hash_equal: 1 and 1.0 hash alike).
std::size_t hash_exact(const term& t) noexcept;
std::size_t hash_equal(const term& t) noexcept;

struct term_equal_to {
  bool operator()(const term& a, const term& b) const noexcept { return exact_equal(a, b); }
};
struct term_less {
  bool operator()(const term& a, const term& b) const noexcept { return compare_exact(a, b) < 0; }
};

}  // namespace cnode::etf

template <>
struct std::hash<cnode::etf::term> {
  std::size_t operator()(const cnode::etf::term& t) const noexcept { return cnode::etf::hash_exact(t); }
};

#include "etf/term_detail.hpp"
