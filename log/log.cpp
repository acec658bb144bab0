#include "log/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <string>

namespace cnode::log {

std::atomic<level>& threshold() {
  static std::atomic<level> l{level::info};
  return l;
}

std::atomic<format>& output_format() {
  static std::atomic<format> f{format::text};
  return f;
}

bool parse_level(std::string_view s, level& out) {
  if (s == "error") out = level::error;
  else if (s == "warning" || s == "warn") out = level::warning;
  else if (s == "info") out = level::info;
  else if (s == "debug") out = level::debug;
  else return false;
  return true;
}

bool parse_format(std::string_view s, format& out) {
  if (s == "text") out = format::text;
  else if (s == "json") out = format::json;
  else return false;
  return true;
}

std::string_view to_string(level l) {
  static constexpr std::string_view names[] = {"error", "warning", "info", "debug"};
  return names[static_cast<int>(l)];
}

namespace {

// The length of the valid UTF-8 sequence at s[i], or 0 (an overlong form, a surrogate, a stray byte).
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
  for (std::size_t k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d >> 6) != 0x2) return 0;
    cp = (cp << 6) | (d & 0x3f);
  }
  static constexpr std::uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_length(s, i);
    if (n == 0) {
      // Not UTF-8 (a peer's binary, a latin-1 name): the byte as the code point of the same number, so the
      // document stays valid JSON.
      out += fmt::format("\\u{:04x}", c);
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
    ++i;
  }
  out += '"';
  return out;
}

namespace {

std::string utc_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms);
}

void write_all(const std::string& line) {
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr closed or broken: the node goes on without its log
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void emit(std::string_view component, level l, std::string_view message) {
  std::string line;
  if (output_format().load(std::memory_order_relaxed) == format::json) {
    line = fmt::format("{{\"time\":\"{}\",\"level\":\"{}\",\"component\":{},\"message\":{}}}\n", utc_timestamp(),
                       to_string(l), json_string(component), json_string(message));
  } else {
    line = fmt::format("{} {}: {}\n", component, to_string(l), message);
  }
  write_all(line);
}

std::optional<std::string> limiter::step(entry& e, std::chrono::steady_clock::time_point now, const char* what) {
  std::string suffix;
  if (now - e.start >= window_) {
    if (e.left_out)
      suffix = fmt::format(" (and {} more {} in the last {} s)", e.left_out, what,
                           std::chrono::duration_cast<std::chrono::seconds>(now - e.start).count());
    e = entry{now, 0, 0};
  }
  if (e.lines >= burst_) {
    ++e.left_out;
    return std::nullopt;
  }
  ++e.lines;
  return suffix;
}

std::optional<std::string> limiter::admit(std::string_view key) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(mu_);
  auto it = keys_.find(std::string(key));
  if (it == keys_.end()) {
    if (keys_.size() >= max_keys_) {
      // Forget the windows that are over; if every key is live, fold this one into a shared key.
      for (auto i = keys_.begin(); i != keys_.end();)
        i = now - i->second.start >= window_ && i->second.left_out == 0 ? keys_.erase(i) : std::next(i);
      if (keys_.size() >= max_keys_) return step(shared_, now, "lines of this kind");
    }
    it = keys_.emplace(std::string(key), entry{now, 0, 0}).first;
  }
  return step(it->second, now, "like it");
}

}  // namespace cnode::log
