// The one log of every layer: one line per event on stderr, a threshold set by --log-level, as text
// ("cnode info: ready a@host ...") or as JSON lines for log shippers (--log-format json). Each line is written with
// one write(2), so lines from several threads never interleave; a closed or broken stderr is ignored (the node
// keeps running).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

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

// Rate limit for lines a peer can make us write (refused handshakes, failed connects): per key, at most `burst`
// lines a window; the rest are counted, and the next line that passes says how many were left out
// (" (and 4999 more like it in the last 10 s)"). The number of keys is bounded.
class limiter {
 public:
  explicit limiter(std::size_t burst = 5, std::chrono::seconds window = std::chrono::seconds(10),
                   std::size_t max_keys = 1024)
      : burst_(burst), window_(window), max_keys_(max_keys) {}
  // nullopt: leave this line out. Otherwise the suffix for the line: "" or " (and N more like it ...)".
  std::optional<std::string> admit(std::string_view key);

 private:
  struct entry {
    std::chrono::steady_clock::time_point start;
    std::size_t lines = 0;
    std::uint64_t left_out = 0;
  };
  std::size_t burst_;
  std::chrono::seconds window_;
  std::size_t max_keys_;
  std::mutex mu_;
  std::unordered_map<std::string, entry> keys_;
  entry shared_;
  std::optional<std::string> step(entry& e, std::chrono::steady_clock::time_point now, const char* what);
};

}  // namespace cnode::log
