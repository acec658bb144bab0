// The cnode-etf commands. Each returns the process exit status and reports problems on stderr itself.
#pragma once

#include <string_view>

namespace cnode::etf::tool {

enum exit_status : int { exit_ok = 0, exit_bad_input = 1, exit_usage = 2, exit_io = 3 };

struct options {
  int packet = 0;              // 0: not framed; 1, 2, 4: {packet, N} framing
  int compression_level = -1;  // -1: uncompressed
  bool utf8_atoms = false;
};

int run_print(std::string_view file, const options& opt);      // file "-" is standard input
int run_encode(std::string_view term_text, const options& opt);  // "-" reads the text from standard input
int run_roundtrip(const options& opt);

}  // namespace cnode::etf::tool
