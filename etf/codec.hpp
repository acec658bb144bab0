// The External Term Format codec (erl_ext_dist), OTP 25 forms.
//
// Decoding never throws on bad input, never reads out of bounds, never allocates from a length it has not checked
// against the bytes left, and never inflates compressed data past decode_options::max_inflated_size. Errors carry
// an etf::error and the byte offset at which the problem was found. Encoding appends to one growable buffer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "etf/error.hpp"
#include "etf/term.hpp"

namespace cnode::etf {

constexpr std::uint8_t version_magic = 131;

struct decode_options {
  // Upper bound for COMPRESSED_EXT's uncompressed size (bytes).
  std::size_t max_inflated_size = std::size_t{256} << 20;
  // Nesting deeper than this is refused with error::too_deep (the decoder itself needs no native stack).
  std::size_t max_depth = 16'000'000;
  // Atoms for ATOM_CACHE_REF (tag 82) indices, as resolved from a distribution header by the caller.
  std::span<const atom> atom_cache_refs = {};
  // When false, the input starts directly with a term tag (as after a distribution header).
  bool expect_version = true;
};

struct decode_result {
  term value;
  std::error_code ec;
  // On success: bytes consumed. On failure: offset of the offending byte, from the start of the input.
  std::size_t offset = 0;
  explicit operator bool() const noexcept { return !ec; }
};

// One complete term that must fill `bytes` exactly (trailing bytes are an error).
decode_result decode(std::span<const std::uint8_t> bytes, const decode_options& opts = {});
// One term at the start of `bytes`; result.offset is how many bytes it took.
decode_result decode_prefix(std::span<const std::uint8_t> bytes, const decode_options& opts = {});
// As decode_prefix from buf[start..], but binaries of 64 bytes or more refer into `buf` instead of being copied.
decode_result decode_prefix(const shared_bytes& buf, std::size_t start, const decode_options& opts = {});
// Throwing convenience: std::system_error with the code; what() names the offset.
term decode_or_throw(std::span<const std::uint8_t> bytes, const decode_options& opts = {});

// A binary left out of an encoding (encode_options::externals): its bytes belong at position `at` of the output,
// right after its BINARY_EXT/BIT_BINARY_EXT tag and length. The term keeps them alive.
struct external_binary {
  std::size_t at;
  term binary;
};

// The atom cache references of one distribution message (erl_ext_dist "Distribution Header", ATOM_CACHE_REF): the
// encoder gives the first atom of each cache slot a reference index (its place in `atoms`) and writes ATOM_CACHE_REF
// with it; an atom whose slot another atom of the message took, or past the 255th reference, is written inline (as
// erts' insert_acache_map / get_iix_acache_map do). Which references become new cache entries and which are cached
// is decided later, when the message is ordered on its connection (dist::atom_out_cache): the indices in the terms
// do not depend on it. Reuse one table per thread: clear() costs only the slots used.
class atom_ref_table {
 public:
  static constexpr std::size_t max_refs = 255;  // erts ERTS_MAX_INTERNAL_ATOM_CACHE_ENTRIES
  static constexpr std::size_t cache_size = 2048;
  // Slots used: erts' ERTS_USE_ATOM_CACHE_SIZE (2039, a prime). erts takes the atom's index in its own atom table
  // modulo that; we take the hash of the text (a node's slots are its own choice: the receiver stores what it is told).
  static constexpr std::size_t used_slots = 2039;
  static std::size_t slot_of(const atom& a) noexcept { return a.hash() % used_slots; }

  atom_ref_table() noexcept { index_.fill(-1); }
  // The reference index for a (adding it when its slot is free and there is room), or -1: write it inline.
  int ref_for(const atom& a);
  void clear() noexcept;
  // The atoms by reference index, moved out; the table is cleared.
  std::vector<atom> take() noexcept {
    std::vector<atom> out = std::move(atoms_);
    clear();
    return out;
  }
  std::vector<atom>& atoms() noexcept { return atoms_; }
  const std::vector<atom>& atoms() const noexcept { return atoms_; }

 private:
  std::array<std::int16_t, cache_size> index_;  // slot -> reference index, -1 when free
  std::vector<atom> atoms_;
  std::vector<std::uint16_t> slots_;  // the slots set, by reference index
};

struct encode_options {
  // false: atoms as OTP 25's term_to_binary writes them (ATOM_EXT for Latin-1 atoms, SMALL_ATOM_UTF8_EXT/ATOM_UTF8_EXT
  // otherwise); true: always SMALL_ATOM_UTF8_EXT/ATOM_UTF8_EXT, as OTP 25 sends on a connection with UTF8_ATOMS.
  bool utf8_atoms = false;
  // -1: no compression; 0..9: COMPRESSED_EXT with this zlib level, unless compressing does not make it smaller
  // (term_to_binary's rule).
  int compression_level = -1;
  // Write the 131 version byte first.
  bool version = true;
  // With externals set and external_min > 0: the bytes of every binary of at least external_min bytes are not
  // copied into the output but listed in *externals (appended, in order); the output with each one's bytes inserted
  // at its `at` is exactly the plain encoding. Not inside a fun (its Size field counts them), not when compressing.
  std::size_t external_min = 0;
  std::vector<external_binary>* externals = nullptr;
  // With atom_refs set: atoms as ATOM_CACHE_REF where the table gives them an index (see atom_ref_table); the output
  // is then only valid after a distribution header listing atom_refs->atoms(). Not used while compressing.
  atom_ref_table* atom_refs = nullptr;
};

// Appends the encoding of t to out. Throws std::system_error(error::not_encodable) for unrepresentable terms.
void encode(const term& t, std::vector<std::uint8_t>& out, const encode_options& opts = {});
std::vector<std::uint8_t> encode(const term& t, const encode_options& opts = {});

// Tags (erl_ext_dist).
namespace tag {
constexpr std::uint8_t new_float = 70, bit_binary = 77, compressed = 80, atom_cache_ref = 82, new_pid = 88,
                       new_port = 89, newer_reference = 90, small_integer = 97, integer = 98, float_ = 99,
                       atom = 100, reference = 101, port = 102, pid = 103, small_tuple = 104, large_tuple = 105,
                       nil = 106, string = 107, list = 108, binary = 109, small_big = 110, large_big = 111,
                       new_fun = 112, export_ = 113, new_reference = 114, small_atom = 115, map = 116,
                       atom_utf8 = 118, small_atom_utf8 = 119, v4_port = 120;
}  // namespace tag

}  // namespace cnode::etf
