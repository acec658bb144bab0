// cnode-etf: the External Term Format codec from a shell. See usage() and etf/README.tool.md.
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "etf/tool/commands.hpp"

namespace {

constexpr const char* usage_text = R"(usage: cnode-etf COMMAND [ARGS]

Commands:
  print [FILE] [--packet N]
      Reads one term in the External Term Format (ETF, what term_to_binary/1 returns) from FILE, or from standard
      input when FILE is absent or -, and prints it as Erlang text. With --packet N (1, 2 or 4), reads a stream of
      frames (an N-byte big-endian length, then a term) and answers each with a frame holding the text.
  encode [TERM] [--compressed[=LEVEL]] [--utf8-atoms]
      Parses TERM (Erlang text such as '{ok, [1,2,3], #{a => <<"b">>}}'; read from standard input when absent or -)
      and writes its ETF bytes to standard output, as term_to_binary/1,2 would. On a terminal it shows the bytes as
      <<131,...>> instead. --compressed uses zlib level 6, --compressed=LEVEL a level 0..9.
  roundtrip --packet N [--compressed[=LEVEL]] [--utf8-atoms]
      Reads frames as above and answers each with a frame holding the term re-encoded, in order. A frame that does
      not decode is answered with {error, Reason, Offset} (Reason an atom such as truncated, Offset the byte at
      which decoding failed) and the stream goes on. The end of input ends it. Meant for an Erlang port:
        open_port({spawn_executable, "cnode-etf"}, [{args, ["roundtrip", "--packet", "4"]}, {packet, 4}, binary])
  help, --help, -h
      Shows this text.

Exit status: 0 success; 1 the input is not a valid term (the message names the problem and the byte offset);
2 wrong usage; 3 a file or stream could not be read or written.
)";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "cnode-etf: %s\nTry 'cnode-etf --help'.\n", msg.c_str());
  return cnode::etf::tool::exit_usage;
}

// --name=value or --name value; returns false when arg is not --name.
bool take_option(std::vector<std::string_view>& args, std::size_t& i, std::string_view name, std::string_view& value,
                 bool value_optional, bool& has_value) {
  std::string_view a = args[i];
  if (a.substr(0, name.size()) != name) return false;
  if (a.size() == name.size()) {
    if (!value_optional && i + 1 < args.size()) {
      value = args[++i];
      has_value = true;
    } else {
      has_value = false;
    }
    return true;
  }
  if (a[name.size()] != '=') return false;
  value = a.substr(name.size() + 1);
  has_value = true;
  return true;
}

bool parse_int(std::string_view s, int lo, int hi, int& out) {
  if (s.empty() || s.size() > 3) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cnode::etf::tool;
  // A reader that goes away should end us with a message, not a silent SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("missing command (print, encode or roundtrip)");
  std::string_view cmd = args[0];
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::fputs(usage_text, stdout);
    return exit_ok;
  }
  if (cmd != "print" && cmd != "encode" && cmd != "roundtrip")
    return usage_error("unknown command '" + std::string(cmd) + "' (expected print, encode or roundtrip)");

  options opt;
  std::vector<std::string_view> positional;
  bool options_done = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i], value;
    bool has_value = false;
    // A term may start with '-' (-5, -1.5e3): only '-' followed by a letter or another '-' is an option.
    bool looks_like_option = a.size() > 1 && a[0] == '-' && (a[1] == '-' || std::isalpha(static_cast<unsigned char>(a[1])));
    if (options_done || !looks_like_option) {
      positional.push_back(a);
    } else if (a == "--") {
      options_done = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(usage_text, stdout);
      return exit_ok;
    } else if (take_option(args, i, "--packet", value, false, has_value)) {
      if (!has_value || !parse_int(value, 1, 4, opt.packet) || opt.packet == 3)
        return usage_error("--packet takes 1, 2 or 4");
    } else if (take_option(args, i, "--compressed", value, true, has_value)) {
      opt.compression_level = 6;  // term_to_binary's [compressed]
      if (has_value && !parse_int(value, 0, 9, opt.compression_level))
        return usage_error("--compressed=LEVEL takes a zlib level 0..9");
    } else if (a == "--utf8-atoms") {
      opt.utf8_atoms = true;
    } else {
      return usage_error("unknown option '" + std::string(a) + "' for " + std::string(cmd));
    }
  }
  if (positional.size() > 1)
    return usage_error(std::string(cmd) + " takes at most one argument, got " + std::to_string(positional.size()));
  std::string_view arg = positional.empty() ? std::string_view("-") : positional[0];

  if (cmd == "print") {
    if (opt.compression_level >= 0 || opt.utf8_atoms) return usage_error("print takes no encoding options");
    return run_print(arg, opt);
  }
  if (cmd == "encode") {
    if (opt.packet) return usage_error("encode takes no --packet");
    return run_encode(arg, opt);
  }
  if (!positional.empty()) return usage_error("roundtrip reads standard input and takes no argument");
  if (!opt.packet) return usage_error("roundtrip needs --packet 4 (or 1, 2)");
  return run_roundtrip(opt);
}
