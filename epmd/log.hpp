// Minimal levelled logging to stderr for the EPMD layer. Deliberately tiny so that a shared logging facility can
// replace it later: every call site goes through epmd::log(level, fmt, args...).
#pragma once

#include <atomic>
#include <optional>
#include <string_view>

#include <fmt/core.h>

namespace cnode::epmd {

enum class log_level { none = 0, error = 1, warning = 2, info = 3, debug = 4 };

inline std::atomic<log_level>& log_threshold() {
  static std::atomic<log_level> level{log_level::warning};
  return level;
}

inline void set_log_level(log_level level) { log_threshold().store(level, std::memory_order_relaxed); }

inline bool log_enabled(log_level level) {
  return level != log_level::none && level <= log_threshold().load(std::memory_order_relaxed);
}

inline std::optional<log_level> parse_log_level(std::string_view s) {
  if (s == "none") return log_level::none;
  if (s == "error") return log_level::error;
  if (s == "warning" || s == "warn") return log_level::warning;
  if (s == "info") return log_level::info;
  if (s == "debug") return log_level::debug;
  return std::nullopt;
}

inline std::string_view to_string(log_level level) {
  switch (level) {
    case log_level::none: return "none";
    case log_level::error: return "error";
    case log_level::warning: return "warning";
    case log_level::info: return "info";
    case log_level::debug: return "debug";
  }
  return "?";
}

template <class... Args>
void log(log_level level, fmt::format_string<Args...> format, Args&&... args) {
  if (!log_enabled(level)) return;
  fmt::print(stderr, "epmd {}: {}\n", to_string(level), fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace cnode::epmd
