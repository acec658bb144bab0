// Feeds arbitrary text to the ssl_dist_optfile reader. Invariants: no crash, no hang, and either an error or
// options (never both); every note names a role.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dist/tls.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = cnode::dist::parse_tls_optfile(text, "fuzz");
  for (const auto& note : r.ignored)
    if (!note.starts_with("server ") && !note.starts_with("client ")) __builtin_trap();
  if (!r.error.empty() && !r.error.starts_with("fuzz: ")) __builtin_trap();
  std::string e;
  (void)cnode::dist::parse_tls_versions(text, e);
  return 0;
}
