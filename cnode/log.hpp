// The node's log: one line per event on stderr, with a level set by --log-level.
#pragma once

#include <atomic>
#include <string_view>

#include <fmt/core.h>

namespace cnode::log {

enum class level { error = 0, warning = 1, info = 2, debug = 3 };

inline std::atomic<level>& threshold() {
  static std::atomic<level> l{level::info};
  return l;
}
inline bool parse_level(std::string_view s, level& out) {
  if (s == "error") out = level::error;
  else if (s == "warning" || s == "warn") out = level::warning;
  else if (s == "info") out = level::info;
  else if (s == "debug") out = level::debug;
  else return false;
  return true;
}
inline bool enabled(level l) { return l <= threshold().load(std::memory_order_relaxed); }

template <typename... Args>
void write(level l, fmt::format_string<Args...> f, Args&&... args) {
  if (!enabled(l)) return;
  static constexpr const char* names[] = {"error", "warning", "info", "debug"};
  fmt::print(stderr, "cnode {}: {}\n", names[static_cast<int>(l)], fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) { write(level::error, f, std::forward<Args>(args)...); }
template <typename... Args>
void warning(fmt::format_string<Args...> f, Args&&... args) { write(level::warning, f, std::forward<Args>(args)...); }
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) { write(level::info, f, std::forward<Args>(args)...); }
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) { write(level::debug, f, std::forward<Args>(args)...); }

}  // namespace cnode::log
