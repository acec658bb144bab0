// Atoms are interned: one entry per distinct name for the life of the process, as in the BEAM. Equality is a pointer
// comparison. The table is bounded (default 1 048 576 atoms, the BEAM's default); creating an atom past the limit
// fails instead of growing without bound, so untrusted input cannot exhaust memory through atoms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cnode::etf {

namespace detail {
struct atom_entry {
  std::uint32_t index;    // creation order; stable for the process's life
  std::uint16_t size;     // UTF-8 bytes
  std::uint16_t length;   // code points (≤ 255)
  bool latin1;            // every code point < 256: encodable as ATOM_EXT / SMALL_ATOM_EXT
  std::size_t hash;
  char text[1];           // size bytes of UTF-8, not NUL-terminated
  std::string_view view() const noexcept { return {text, size}; }
};
}  // namespace detail

enum class atom_status { ok, invalid_utf8, too_long, table_full };

class atom {
 public:
  static constexpr std::size_t max_length = 255;  // code points

  atom() noexcept;  // ''
  // Throws std::invalid_argument for invalid UTF-8 or more than 255 code points, std::length_error when full.
  explicit atom(std::string_view utf8);
  // Non-throwing forms for untrusted input.
  static std::optional<atom> from_utf8(std::string_view utf8, atom_status* status = nullptr) noexcept;
  static std::optional<atom> from_latin1(std::string_view latin1, atom_status* status = nullptr) noexcept;
  // An atom only if it already exists (like erlang:binary_to_existing_atom/2).
  static std::optional<atom> existing(std::string_view utf8) noexcept;

  std::string_view text() const noexcept { return e_->view(); }
  std::size_t size() const noexcept { return e_->size; }
  std::size_t length() const noexcept { return e_->length; }
  bool latin1() const noexcept { return e_->latin1; }
  std::size_t hash() const noexcept { return e_->hash; }
  std::uint32_t index() const noexcept { return e_->index; }
  const detail::atom_entry* entry() const noexcept { return e_; }
  static atom from_entry(const detail::atom_entry* e) noexcept { return atom(e); }

  friend bool operator==(atom a, atom b) noexcept { return a.e_ == b.e_; }
  // Atoms order by their text (UTF-8 byte order is code-point order, which is the BEAM's atom order).
  friend std::strong_ordering operator<=>(atom a, atom b) noexcept;

  static void set_limit(std::size_t max_atoms) noexcept;
  static std::size_t count() noexcept;
  static std::size_t limit() noexcept;

  // Frequently used atoms, interned once.
  static atom true_() noexcept;
  static atom false_() noexcept;
  static atom undefined() noexcept;
  static atom ok() noexcept;
  static atom error() noexcept;
  static atom nonode() noexcept;  // nonode@nohost

 private:
  explicit atom(const detail::atom_entry* e) noexcept : e_(e) {}
  const detail::atom_entry* e_;
};

inline namespace literals {
inline atom operator""_a(const char* s, std::size_t n) { return atom(std::string_view(s, n)); }
}  // namespace literals

}  // namespace cnode::etf

template <>
struct std::hash<cnode::etf::atom> {
  std::size_t operator()(cnode::etf::atom a) const noexcept { return a.hash(); }
};
