#include "dist/cookie.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>


#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "dist/digest.hpp"
#include "dist/error.hpp"

namespace cnode::dist {

const std::string& cookie_jar::for_node(std::string_view node) const {
  if (auto it = per_node.find(node); it != per_node.end()) return it->second;
  return cookie;
}

namespace {

cookie_result fail(std::error_code ec, std::string message, const std::filesystem::path& path = {}) {
  cookie_result r;
  r.ec = ec;
  r.message = std::move(message);
  r.path = path;
  return r;
}

std::string errno_name(int e) {
  // erl prints the POSIX atom (enoent, eacces); strerror text is close enough and always available.
  return std::generic_category().message(e);
}

}  // namespace

cookie_result check_cookie(std::string_view text) {
  // auth.erl check_cookie/2: printable ASCII, then only trailing CR/LF/space.
  std::size_t i = 0;
  while (i < text.size() && text[i] >= ' ' && text[i] <= '~') ++i;
  std::string cookie(text.substr(0, i));
  for (std::size_t j = i; j < text.size(); ++j) {
    if (text[j] != '\n' && text[j] != '\r' && text[j] != ' ')
      return fail(error::bad_cookie_characters, "Bad characters in cookie");
  }
  if (cookie.empty()) return fail(error::cookie_too_short, "Too short cookie string");
  cookie_result r;
  r.cookie = std::move(cookie);
  return r;
}

cookie_result read_cookie_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    return fail(std::error_code(e, std::generic_category()),
                "Error when reading " + path.string() + ": " + errno_name(e), path);
  }
  if (!S_ISREG(st.st_mode)) {
    const char* type = S_ISDIR(st.st_mode) ? "directory" : S_ISLNK(st.st_mode) ? "symlink" : "other";
    return fail(error::cookie_file_access, "Cookie file " + path.string() + " is of type " + type, path);
  }
  if ((st.st_mode & 077) != 0)
    return fail(error::cookie_file_access, "Cookie file " + path.string() + " must be accessible by owner only",
                path);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int e = errno;
    return fail(error::cookie_file_io, "Error when reading " + path.string() + ": " + errno_name(e), path);
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto r = check_cookie(text);
  r.path = path;
  return r;
}

std::string generate_cookie() {
  std::string cookie;
  while (cookie.size() < 20) {
    unsigned char buf[32];
    random_bytes(buf, sizeof buf);
    for (unsigned char b : buf) {
      // 26 * 9 = 234: rejecting 234..255 keeps the letters uniform.
      if (b < 234 && cookie.size() < 20) cookie += static_cast<char>('A' + b % 26);
    }
  }
  return cookie;
}

cookie_result create_cookie_file(const std::filesystem::path& path) {
  const std::string cookie = generate_cookie();
  // Created owner-only from the start, so there is no moment where another user could read it.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int e = errno;
    return fail(error::cookie_file_io, "Failed to create cookie file '" + path.string() + "': " + errno_name(e),
                path);
  }
  std::size_t done = 0;
  while (done < cookie.size()) {
    const ssize_t n = ::write(fd, cookie.data() + done, cookie.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      return fail(error::cookie_file_io,
                  "Failed to write to cookie file '" + path.string() + "': " + errno_name(e), path);
    }
    done += static_cast<std::size_t>(n);
  }
  // erl rounds the file times down to midnight so they say less about the seed (auth.erl make_info).
  std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  local.tm_hour = local.tm_min = local.tm_sec = 0;
  const std::time_t midnight = std::mktime(&local);
  const struct timespec times[2] = {{midnight, 0}, {midnight, 0}};
  ::futimens(fd, times);
  if (::fchmod(fd, 0400) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(error::cookie_file_io, "Failed to change mode: " + errno_name(e), path);
  }
  ::close(fd);
  cookie_result r;
  r.cookie = cookie;
  r.path = path;
  r.created = true;
  return r;
}

cookie_result load_cookie(std::optional<std::string> explicit_cookie) {
  if (explicit_cookie) {
    cookie_result r;
    if (explicit_cookie->empty()) return fail(error::cookie_too_short, "Too short cookie string");
    r.cookie = std::move(*explicit_cookie);
    return r;
  }
  const char* home = std::getenv("HOME");
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  std::filesystem::path xdg_path;
  if (xdg != nullptr && *xdg != '\0')
    xdg_path = std::filesystem::path(xdg) / "erlang" / ".erlang.cookie";
  else if (home != nullptr && *home != '\0')
    xdg_path = std::filesystem::path(home) / ".config" / "erlang" / ".erlang.cookie";

  auto enoent = [](const cookie_result& r) { return r.ec == std::errc::no_such_file_or_directory; };
  if (home != nullptr && *home != '\0') {
    const auto home_path = std::filesystem::path(home) / ".erlang.cookie";
    auto r = read_cookie_file(home_path);
    if (!enoent(r)) return r;
    if (!xdg_path.empty()) {
      auto x = read_cookie_file(xdg_path);
      if (!enoent(x)) return x;
    }
    return create_cookie_file(home_path);
  }
  if (xdg_path.empty()) return fail(error::no_home, "No home for cookie file");
  auto x = read_cookie_file(xdg_path);
  if (!enoent(x)) return x;
  std::error_code ec;
  std::filesystem::create_directories(xdg_path.parent_path(), ec);
  return create_cookie_file(xdg_path);
}

}  // namespace cnode::dist
