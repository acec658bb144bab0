// Erlang text for cnode-etf: printing (etf/format.hpp) and parsing (etf/parse.hpp) behind one small interface.
#pragma once

#include <string>
#include <string_view>

#include "etf/term.hpp"

namespace cnode::etf::tool {

std::string print_text(const term& t);
// On failure returns false and a message that names the position of the problem.
bool parse_text(std::string_view text, term& out, std::string& message);

}  // namespace cnode::etf::tool
