// Errors of the term codec: an etf::error code plus, where bytes were being decoded, the byte offset.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace cnode::etf {

enum class error {
  ok = 0,
  truncated = 1,             // the input ends inside a term
  bad_version,               // the first byte is not 131
  unknown_tag,               // a tag byte this format does not define (or a 68/69/70 dist header)
  invalid_atom,              // atom bytes that are not valid UTF-8/Latin-1, or longer than 255 characters
  atom_table_full,           // the atom table's limit is reached
  atom_cache_miss,           // ATOM_CACHE_REF to an index the caller's cache does not hold
  bad_length,                // a length field that cannot be right (negative, larger than the input allows)
  bad_bit_length,            // BIT_BINARY_EXT with 0 or more than 8 bits in the last byte
  bad_float,                 // FLOAT_EXT text that is not a float, or a NaN/infinity
  bad_reference,             // a reference with 0 or more than 5 id words
  bad_map,                   // a map with the same key twice
  bad_fun,                   // NEW_FUN_EXT whose size field disagrees with its contents, or bad fields
  bad_compression,           // zlib data that does not inflate to the announced size
  compressed_too_large,      // the announced uncompressed size exceeds the configured limit
  trailing_bytes,            // bytes left after a complete term where none were expected
  too_deep,                  // nesting deeper than the configured limit
  not_encodable,             // a term the encoder cannot represent (e.g. a tuple of more than 2^32-1 elements)
};

const std::error_category& etf_category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), etf_category()}; }

// The atom Erlang code sees for an error, e.g. `truncated` (used by `{error, Reason, Offset}` replies).
const char* error_atom(error e) noexcept;

}  // namespace cnode::etf

template <>
struct std::is_error_code_enum<cnode::etf::error> : std::true_type {};
