// Shared by the raft_storage tests: a temporary directory, entries, and file surgery.
#pragma once

#include <doctest.h>

#include <signal.h>
#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "raft/storage.hpp"

namespace cnode::raft::test {

namespace fs = std::filesystem;

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string t = (fs::temp_directory_path() / "cnode-raft-storage-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

inline entry make_entry(index_t i, term_t t, std::size_t value_bytes = 16) {
  entry e;
  e.index = i;
  e.term = t;
  const std::string key = fmt::format("k{}", i);  // not "k" + to_string(i): GCC 12's bogus -Wrestrict
  e.data = etf::term::tuple({etf::term(etf::atom("put")), etf::term::binary(key),
                             etf::term::binary(std::string(value_bytes, static_cast<char>('a' + i % 26)))});
  return e;
}

inline std::vector<entry> make_entries(index_t from, index_t to, term_t t, std::size_t value_bytes = 16) {
  std::vector<entry> v;
  for (index_t i = from; i <= to; ++i) v.push_back(make_entry(i, t, value_bytes));
  return v;
}

inline std::vector<std::uint8_t> slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

inline void spit(const fs::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline std::vector<fs::path> files(const fs::path& dir, std::string_view prefix) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(prefix)) v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

// A file size limit while it lives: writes past it come up short, then fail with EFBIG, as on a full disk.
struct file_size_limit {
  struct rlimit old {};
  void (*old_handler)(int) = nullptr;
  explicit file_size_limit(std::uint64_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
  }
  ~file_size_limit() {
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
  }
  file_size_limit(const file_size_limit&) = delete;
  file_size_limit& operator=(const file_size_limit&) = delete;
};

inline std::unique_ptr<storage> must_open(const fs::path& dir, recovered& r, const storage_options& o = {}) {
  storage_failure why;
  auto s = storage::open(dir, r, why, o);
  INFO(why.message());
  REQUIRE(s);
  return s;
}

}  // namespace cnode::raft::test
