#include "etf/error.hpp"

namespace cnode::etf {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "etf"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::ok: return "success";
      case error::truncated: return "input ends inside a term";
      case error::bad_version: return "not an external term (version byte is not 131)";
      case error::unknown_tag: return "unknown tag";
      case error::invalid_atom: return "invalid atom text (bad encoding or longer than 255 characters)";
      case error::atom_table_full: return "atom table full";
      case error::atom_cache_miss: return "atom cache reference to an unknown entry";
      case error::bad_length: return "length field larger than the input allows";
      case error::bad_bit_length: return "bitstring with an invalid number of bits in its last byte";
      case error::bad_float: return "invalid float";
      case error::bad_reference: return "reference with an invalid number of id words";
      case error::bad_map: return "map with a duplicate key";
      case error::bad_fun: return "malformed fun";
      case error::bad_compression: return "compressed data does not inflate to its announced size";
      case error::compressed_too_large: return "compressed term's uncompressed size exceeds the limit";
      case error::trailing_bytes: return "bytes left after the term";
      case error::too_deep: return "term nested deeper than the limit";
      case error::not_encodable: return "term cannot be encoded";
    }
    return "unknown etf error";
  }
};

}  // namespace

const std::error_category& etf_category() noexcept {
  static const category c;
  return c;
}

const char* error_atom(error e) noexcept {
  switch (e) {
    case error::ok: return "ok";
    case error::truncated: return "truncated";
    case error::bad_version: return "bad_version";
    case error::unknown_tag: return "unknown_tag";
    case error::invalid_atom: return "invalid_atom";
    case error::atom_table_full: return "atom_table_full";
    case error::atom_cache_miss: return "atom_cache_miss";
    case error::bad_length: return "bad_length";
    case error::bad_bit_length: return "bad_bit_length";
    case error::bad_float: return "bad_float";
    case error::bad_reference: return "bad_reference";
    case error::bad_map: return "bad_map";
    case error::bad_fun: return "bad_fun";
    case error::bad_compression: return "bad_compression";
    case error::compressed_too_large: return "compressed_too_large";
    case error::trailing_bytes: return "trailing_bytes";
    case error::too_deep: return "too_deep";
    case error::not_encodable: return "not_encodable";
  }
  return "unknown";
}

}  // namespace cnode::etf
