// Atoms are interned: one entry per distinct name, as in the BEAM. Equality is a pointer comparison. The table is
// bounded (default 1 048 576 atoms, the BEAM's default); creating an atom past the limit fails instead of growing
// without bound.
//
// Two kinds of entry. A *permanent* atom (made by C++ code: `atom("x")`, `"x"_a`, `from_utf8`, the parser) lives for
// the process's life. A *dynamic* atom is one first learned from a peer (`from_wire_utf8`/`from_wire_latin1`, which
// the decoder and the distribution header use): it is reference-counted by every `atom` and `term` that holds it,
// and when the last one goes it is unlinked from the table and its memory freed, so a flood of fresh atoms from a
// peer leaves nothing behind once its messages are gone. A dynamic atom becomes permanent when C++ code names it,
// or when it has been looked up `promote_after_uses` times (a peer's atoms that keep coming are its vocabulary, not
// a flood), while at most a quarter of the limit has been promoted that way. Permanent atoms cost no reference
// counting: a copy or a destruction reads the entry's permanent bit and stops there.
#pragma once

#include <atomic>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cnode::etf {

class term;

namespace detail {
// atom_entry::refs: this bit for a permanent atom; otherwise the number of references.
inline constexpr std::uint32_t atom_permanent = 1u << 31;

struct atom_entry {
  mutable std::atomic<std::uint32_t> refs;
  std::uint16_t size;     // UTF-8 bytes
  std::uint16_t length;   // code points (≤ 255)
  bool latin1;            // every code point < 256: encodable as ATOM_EXT / SMALL_ATOM_EXT
  std::uint8_t uses;      // lookups of a dynamic atom (under its shard's lock), towards promotion
  bool lingering;         // in its shard's ring of unreferenced dynamic atoms (under the shard's lock)
  std::size_t hash;
  char text[1];           // size bytes of UTF-8, not NUL-terminated
  std::string_view view() const noexcept { return {text, size}; }
  bool permanent() const noexcept { return refs.load(std::memory_order_relaxed) & atom_permanent; }
};

inline void atom_retain(const atom_entry* e) noexcept {
  if (!e->permanent()) e->refs.fetch_add(1, std::memory_order_relaxed);
}
void atom_release_dynamic(const atom_entry* e) noexcept;
inline void atom_release(const atom_entry* e) noexcept {
  if (!e->permanent()) atom_release_dynamic(e);
}
// A reference for a new holder: 1 when one was taken (a dynamic atom), 0 for a permanent atom.
inline std::uint32_t atom_hold(const atom_entry* e) noexcept {
  if (e->permanent()) return 0;
  e->refs.fetch_add(1, std::memory_order_relaxed);
  return 1;
}
struct atom_access;
}  // namespace detail

enum class atom_status { ok, invalid_utf8, too_long, table_full };

namespace detail {
// Interning for the codec, of UTF-8 text or (latin1_text) Latin-1 text a peer sent: the entry, with a reference
// owned by the caller when it is dynamic (hand it to atom_access::adopt or term_access::adopt_atom), or nullptr
// with *status set.
const atom_entry* intern_wire(std::string_view text, bool latin1_text, atom_status* status) noexcept;
}  // namespace detail

class atom {
 public:
  static constexpr std::size_t max_length = 255;  // code points
  // Lookups of a dynamic atom after which it becomes permanent (while the promoted stay under limit() / 4).
  static constexpr unsigned promote_after_uses = 8;

  atom() noexcept;  // ''
  // Throws std::invalid_argument for invalid UTF-8 or more than 255 code points, std::length_error when full.
  // The atom is permanent.
  explicit atom(std::string_view utf8);
  atom(const atom& o) noexcept : e_(o.e_) { detail::atom_retain(e_); }
  atom& operator=(const atom& o) noexcept {
    detail::atom_retain(o.e_);
    const detail::atom_entry* old = e_;
    e_ = o.e_;
    detail::atom_release(old);
    return *this;
  }
  ~atom() { detail::atom_release(e_); }

  // Non-throwing forms for untrusted input; the atom is permanent.
  static std::optional<atom> from_utf8(std::string_view utf8, atom_status* status = nullptr) noexcept;
  static std::optional<atom> from_latin1(std::string_view latin1, atom_status* status = nullptr) noexcept;
  // An atom a peer sent: dynamic when new (reclaimed when its last holder goes), else the existing atom.
  static std::optional<atom> from_wire_utf8(std::string_view utf8, atom_status* status = nullptr) noexcept;
  static std::optional<atom> from_wire_latin1(std::string_view latin1, atom_status* status = nullptr) noexcept;
  // An atom only if it already exists (like erlang:binary_to_existing_atom/2); it stays as it is.
  static std::optional<atom> existing(std::string_view utf8) noexcept;

  std::string_view text() const noexcept { return e_->view(); }
  std::size_t size() const noexcept { return e_->size; }
  std::size_t length() const noexcept { return e_->length; }
  bool latin1() const noexcept { return e_->latin1; }
  std::size_t hash() const noexcept { return e_->hash; }
  bool permanent() const noexcept { return e_->permanent(); }
  // Makes this atom permanent (C++ code that keeps it by name from now on).
  void make_permanent() const noexcept;
  const detail::atom_entry* entry() const noexcept { return e_; }
  // A new handle to an entry that another handle or term keeps alive.
  static atom from_entry(const detail::atom_entry* e) noexcept {
    detail::atom_retain(e);
    return atom(e, adopt);
  }

  friend bool operator==(const atom& a, const atom& b) noexcept { return a.e_ == b.e_; }
  // Atoms order by their text (UTF-8 byte order is code-point order, which is the BEAM's atom order).
  friend std::strong_ordering operator<=>(const atom& a, const atom& b) noexcept;

  // Frees now every dynamic atom that nothing holds. (An unreferenced dynamic atom lingers in the table until 32
  // more have become unreferenced in its shard, or the table is full, so that an atom every message brings
  // anew is found again, and counted towards promotion, instead of being made and freed per message.)
  static void collect() noexcept;

  static void set_limit(std::size_t max_atoms) noexcept;
  static std::size_t count() noexcept;          // atoms in the table
  static std::size_t dynamic_count() noexcept;  // of which dynamic
  static std::size_t limit() noexcept;

  // Frequently used atoms, interned once.
  static const atom& true_() noexcept;
  static const atom& false_() noexcept;
  static const atom& undefined() noexcept;
  static const atom& ok() noexcept;
  static const atom& error() noexcept;
  static const atom& nonode() noexcept;  // nonode@nohost

 private:
  friend class term;
  friend struct detail::atom_access;
  struct adopt_t {};
  static constexpr adopt_t adopt{};
  atom(const detail::atom_entry* e, adopt_t) noexcept : e_(e) {}
  const detail::atom_entry* e_;
};

namespace detail {
struct atom_access {
  // A handle that takes over the reference the caller holds on e (from intern_wire_*).
  static atom adopt(const atom_entry* e) noexcept { return atom(e, atom::adopt); }
  // a = that atom, taking over the reference the caller holds on e.
  static void assign(atom& a, const atom_entry* e) noexcept {
    const atom_entry* old = a.e_;
    a.e_ = e;
    atom_release(old);
  }
};
}  // namespace detail

inline namespace literals {
inline atom operator""_a(const char* s, std::size_t n) { return atom(std::string_view(s, n)); }
}  // namespace literals

}  // namespace cnode::etf

template <>
struct std::hash<cnode::etf::atom> {
  std::size_t operator()(const cnode::etf::atom& a) const noexcept { return a.hash(); }
};
