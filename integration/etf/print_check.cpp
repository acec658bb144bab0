// etf-print-check: the C++ side of test_print_parse.py.
//
//   etf-print-check              frames (4-byte big-endian length + ETF) on stdin; prints each decoded term on one
//                                line with etf::print, then `@@END <count>`
//   etf-print-check --parse F    frames on stdin and one line of Erlang text per frame in F: parses each line with
//                                etf::parse and compares it (=:=) with the decoded frame; prints `@@MISMATCH ...`
//                                for every difference, then `@@END <count> <mismatches> <skipped>`; a line that
//                                starts with `%` (an Erlang comment) stands for a term not to check
//
// A frame that does not decode prints `@@DECODE_ERROR <index> <offset> <message>` in place of its line.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "etf/codec.hpp"
#include "etf/format.hpp"
#include "etf/parse.hpp"

namespace {

bool read_exact(std::FILE* in, std::vector<std::uint8_t>& buf, std::size_t n) {
  buf.resize(n);
  return n == 0 || std::fread(buf.data(), 1, n, in) == n;
}

// The next frame; false at a clean end of input. A stream cut inside a frame is reported and ends the run.
bool next_frame(std::vector<std::uint8_t>& frame) {
  std::uint8_t len[4];
  std::size_t got = std::fread(len, 1, 4, stdin);
  if (got == 0) return false;
  if (got != 4) throw std::runtime_error("input ends inside a length field");
  const std::size_t n = (std::size_t{len[0]} << 24) | (std::size_t{len[1]} << 16) | (std::size_t{len[2]} << 8) | len[3];
  if (!read_exact(stdin, frame, n)) throw std::runtime_error("input ends inside a frame");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cnode::etf;
  std::ifstream text;
  const bool parse_mode = argc == 3 && std::strcmp(argv[1], "--parse") == 0;
  if (parse_mode) {
    text.open(argv[2], std::ios::binary);
    if (!text) {
      std::fprintf(stderr, "etf-print-check: cannot open %s\n", argv[2]);
      return 2;
    }
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: etf-print-check [--parse TEXTFILE] < frames\n");
    return 2;
  }
  std::vector<std::uint8_t> frame;
  std::string out, line;
  std::size_t count = 0, mismatches = 0, skipped = 0;
  try {
    while (next_frame(frame)) {
      decode_result d = decode(frame);
      if (!d) {
        out += fmt::format("@@DECODE_ERROR {} {} {}\n", count, d.offset, d.ec.message());
        ++mismatches;
      } else if (!parse_mode) {
        print(d.value, out);
        out += '\n';
      } else {
        if (!std::getline(text, line)) throw std::runtime_error("fewer text lines than frames");
        parse_result p;
        if (line.starts_with('%')) {
          ++skipped;
        } else if (p = parse(line); !p) {
          out += fmt::format("@@MISMATCH {} parse error {} in: {}\n", count, describe(p), line);
          ++mismatches;
        } else if (!(p.value == d.value)) {
          out += fmt::format("@@MISMATCH {} parsed {} for: {}\n", count, to_string(p.value), line);
          ++mismatches;
        }
      }
      ++count;
      if (out.size() >= (1u << 20)) {
        std::fwrite(out.data(), 1, out.size(), stdout);
        out.clear();
      }
    }
  } catch (const std::exception& e) {
    out += fmt::format("@@INPUT_ERROR {}\n", e.what());
    ++mismatches;
  }
  out += parse_mode ? fmt::format("@@END {} {} {}\n", count, mismatches, skipped) : fmt::format("@@END {}\n", count);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return mismatches ? 1 : 0;
}
