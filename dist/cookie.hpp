#pragma once
// The magic cookie: our own, and per-node overrides (erl -setcookie Node Cookie), read the way auth.erl does.

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace cnode::dist {

// Which cookie to use with which peer. Pure data: the handshake consults it, nothing here touches the disk.
struct cookie_jar {
  std::string cookie;                                          // ours, used for every peer not listed below
  std::map<std::string, std::string, std::less<>> per_node;    // node name -> cookie

  const std::string& for_node(std::string_view node) const;
};

struct cookie_result {
  std::string cookie;     // valid when !ec
  std::error_code ec;     // dist::error::cookie_* or a system error
  std::string message;    // erl's own wording, e.g. "Cookie file /h/.erlang.cookie must be accessible by owner only"
  std::filesystem::path path;  // the file read or created (empty for an explicit cookie)
  bool created = false;   // the file did not exist and was generated
};

// An explicit cookie if given, else the default cookie file: $HOME/.erlang.cookie, then
// $XDG_CONFIG_HOME/erlang/.erlang.cookie (or ~/.config/erlang/...), and when neither exists $HOME/.erlang.cookie is
// created like erl creates it (auth.erl:383).
cookie_result load_cookie(std::optional<std::string> explicit_cookie = std::nullopt);

// Reads one cookie file, refusing it as erl does: not a regular file, or any group/other permission bit set
// (auth.erl:457), non-printable characters, empty. Trailing CR/LF/space are dropped.
cookie_result read_cookie_file(const std::filesystem::path& path);

// Creates `path` holding 20 random letters A-Z, no newline, mode 0400, times rounded down to midnight
// (auth.erl:490). Fails if the file exists.
cookie_result create_cookie_file(const std::filesystem::path& path);

// 20 random uppercase letters from the OpenSSL CSPRNG.
std::string generate_cookie();

// Validates cookie text the way auth.erl check_cookie does; returns the cookie without trailing whitespace.
cookie_result check_cookie(std::string_view text);

}  // namespace cnode::dist
