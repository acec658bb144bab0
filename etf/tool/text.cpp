#include "etf/tool/text.hpp"

#include "etf/format.hpp"
#include "etf/parse.hpp"

namespace cnode::etf::tool {

std::string print_text(const term& t) { return to_string(t); }

bool parse_text(std::string_view text, term& out, std::string& message) {
  parse_result r = parse(text);
  if (!r) {
    message = describe(r);
    return false;
  }
  out = std::move(r.value);
  return true;
}

}  // namespace cnode::etf::tool
