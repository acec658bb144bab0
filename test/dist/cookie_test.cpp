// Cookie rules as erl applies them (auth.erl), each case in its own temporary HOME.
#include <doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "dist/cookie.hpp"
#include "dist/error.hpp"

using namespace cnode::dist;
namespace fs = std::filesystem;

namespace {

// Points HOME (and XDG_CONFIG_HOME) at a fresh directory for the lifetime of the object.
struct temp_home {
  fs::path dir;
  std::optional<std::string> old_home, old_xdg;
  temp_home() {
    char tmpl[] = "/tmp/cnode-cookie-XXXXXX";
    dir = ::mkdtemp(tmpl);
    if (const char* h = std::getenv("HOME")) old_home = h;
    if (const char* x = std::getenv("XDG_CONFIG_HOME")) old_xdg = x;
    ::setenv("HOME", dir.c_str(), 1);
    ::unsetenv("XDG_CONFIG_HOME");
  }
  ~temp_home() {
    if (old_home) ::setenv("HOME", old_home->c_str(), 1); else ::unsetenv("HOME");
    if (old_xdg) ::setenv("XDG_CONFIG_HOME", old_xdg->c_str(), 1); else ::unsetenv("XDG_CONFIG_HOME");
    std::error_code ec;
    fs::permissions(dir, fs::perms::owner_all, ec);
    fs::remove_all(dir, ec);
  }
  fs::path cookie_path() const { return dir / ".erlang.cookie"; }
  void write(const fs::path& p, const std::string& content, mode_t mode) const {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    ::chmod(p.c_str(), mode);
  }
};

}  // namespace

TEST_CASE("an explicit cookie wins and touches nothing") {
  temp_home h;
  auto r = load_cookie("explicit");
  CHECK_FALSE(r.ec);
  CHECK(r.cookie == "explicit");
  CHECK_FALSE(fs::exists(h.cookie_path()));
  CHECK(load_cookie(std::string()).ec == error::cookie_too_short);
}

TEST_CASE("a missing cookie file is created as erl creates it") {
  temp_home h;
  auto r = load_cookie();
  REQUIRE_FALSE(r.ec);
  CHECK(r.created);
  CHECK(r.path == h.cookie_path());
  CHECK(r.cookie.size() == 20);
  for (char c : r.cookie) CHECK((c >= 'A' && c <= 'Z'));
  struct stat st {};
  REQUIRE(::stat(h.cookie_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0400);
  CHECK(st.st_size == 20);  // no trailing newline
  // Read back the next time, not recreated.
  auto again = load_cookie();
  CHECK_FALSE(again.created);
  CHECK(again.cookie == r.cookie);
}

TEST_CASE("a cookie file readable by group or others is refused with erl's message") {
  temp_home h;
  h.write(h.cookie_path(), "SECRET", 0644);
  auto r = load_cookie();
  CHECK(r.ec == error::cookie_file_access);
  CHECK(r.message == "Cookie file " + h.cookie_path().string() + " must be accessible by owner only");
  ::chmod(h.cookie_path().c_str(), 0600);
  CHECK(load_cookie().cookie == "SECRET");
  ::chmod(h.cookie_path().c_str(), 0604);
  CHECK(load_cookie().ec == error::cookie_file_access);
}

TEST_CASE("cookie text: trailing newline dropped, bad characters and empty refused") {
  CHECK(check_cookie("ABC\n").cookie == "ABC");
  CHECK(check_cookie("ABC\r\n \n").cookie == "ABC");
  CHECK(check_cookie("AB C").cookie == "AB C");
  CHECK(check_cookie("AB\nC").ec == error::bad_cookie_characters);
  CHECK(check_cookie("AB\x01").ec == error::bad_cookie_characters);
  CHECK(check_cookie("\n").ec == error::cookie_too_short);
  CHECK(check_cookie("").message == "Too short cookie string");
}

TEST_CASE("the XDG location is read when HOME has no cookie file, and a directory is refused") {
  temp_home h;
  h.write(h.dir / ".config" / "erlang" / ".erlang.cookie", "XDGCOOKIE\n", 0400);
  auto r = load_cookie();
  CHECK(r.cookie == "XDGCOOKIE");
  CHECK_FALSE(fs::exists(h.cookie_path()));
  fs::create_directory(h.cookie_path());
  auto d = load_cookie();
  CHECK(d.ec == error::cookie_file_access);
  CHECK(d.message.find("is of type directory") != std::string::npos);
}

TEST_CASE("per-node cookies") {
  cookie_jar jar;
  jar.cookie = "ours";
  jar.per_node["special@h"] = "theirs";
  CHECK(jar.for_node("special@h") == "theirs");
  CHECK(jar.for_node("other@h") == "ours");
}

TEST_CASE("generated cookies are 20 letters and differ") {
  const auto a = generate_cookie(), b = generate_cookie();
  CHECK(a.size() == 20);
  CHECK(a != b);
}
