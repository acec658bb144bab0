// The BEAM as a benchmark peer: the corpus bytes go to files, etf_bench.erl times binary_to_term/term_to_binary
// on them inside the BEAM (erlang:monotonic_time around a loop in a compiled module), and prints the figures.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "bench.hpp"

namespace cnode::etf::bench {

namespace {

std::string run(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run: " + cmd);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  if (status != 0) throw std::runtime_error("failed (status " + std::to_string(status) + "): " + cmd + "\n" + out);
  return out;
}

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "bench-etf-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

std::map<std::string, beam_figures> run_beam(const std::vector<item>& corpus) {
  temp_dir dir;
  std::string names;
  for (const item& it : corpus) {
    std::ofstream f(dir.path / it.name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(it.bytes.data()), static_cast<std::streamsize>(it.bytes.size()));
    names += " " + it.name;
  }
  const std::string d = dir.path.string();
  run("erlc -o '" + d + "' '" CNODE_BENCH_ETF_ERL "' 2>&1");
  std::istringstream out(run("erl -noshell -pa '" + d + "' -run etf_bench main '" + d + "'" + names + " 2>&1"));
  std::map<std::string, beam_figures> figures;
  std::string name;
  beam_figures f;
  while (out >> name >> f.decode_ns >> f.encode_ns) figures[name] = f;
  return figures;
}

}  // namespace cnode::etf::bench
