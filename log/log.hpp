// The one log of every layer: one line per event on stderr, a threshold set by --log-level, as text
// ("cnode info: ready a@host ...") or as JSON lines for log shippers (--log-format json). Each line is written with
// one write(2), so lines from several threads never interleave; a closed or broken stderr is ignored (the node
// keeps running).
#pragma once

#include <atomic>
#include <string_view>

#include <fmt/core.h>

namespace cnode::log {

enum class level { error = 0, warning = 1, info = 2, debug = 3 };
enum class format { text, json };

std::atomic<level>& threshold();
std::atomic<format>& output_format();
bool parse_level(std::string_view s, level& out);
bool parse_format(std::string_view s, format& out);
std::string_view to_string(level l);

inline bool enabled(level l) { return l <= threshold().load(std::memory_order_relaxed); }

// Writes one line for `component` ("cnode", "epmd", ...), whatever the threshold.
void emit(std::string_view component, level l, std::string_view message);

// The JSON string literal for s (quotes included), as the JSON format writes it.
std::string json_string(std::string_view s);

template <typename... Args>
void write_as(std::string_view component, level l, fmt::format_string<Args...> f, Args&&... args) {
  if (!enabled(l)) return;
  emit(component, l, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void write(level l, fmt::format_string<Args...> f, Args&&... args) {
  write_as("cnode", l, f, std::forward<Args>(args)...);
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
