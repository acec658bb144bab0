// The EPMD layer's log calls, written through the one log of every layer (log/log.hpp) as "epmd <level>: ..."
// lines. log_level::none silences everything (cnode-epmd --log-level none).
#pragma once

#include <atomic>
#include <optional>
#include <string_view>

#include <fmt/core.h>

#include "log/log.hpp"

namespace cnode::epmd {

enum class log_level { none = 0, error = 1, warning = 2, info = 3, debug = 4 };

inline std::atomic<bool>& log_silenced() {
  static std::atomic<bool> off{false};
  return off;
}

inline cnode::log::level to_shared(log_level level) { return static_cast<cnode::log::level>(static_cast<int>(level) - 1); }

inline void set_log_level(log_level level) {
  log_silenced().store(level == log_level::none, std::memory_order_relaxed);
  if (level != log_level::none) cnode::log::threshold().store(to_shared(level), std::memory_order_relaxed);
}

inline bool log_enabled(log_level level) {
  return level != log_level::none && !log_silenced().load(std::memory_order_relaxed) &&
         cnode::log::enabled(to_shared(level));
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
  return level == log_level::none ? std::string_view("none") : cnode::log::to_string(to_shared(level));
}

template <class... Args>
void log(log_level level, fmt::format_string<Args...> format, Args&&... args) {
  if (!log_enabled(level)) return;
  cnode::log::emit("epmd", to_shared(level), fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace cnode::epmd
