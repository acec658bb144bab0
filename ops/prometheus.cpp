// Prometheus' text exposition format, version 0.0.4 (# HELP, # TYPE, then the samples of one family together).
#include <cmath>
#include <map>

#include <fmt/core.h>

#include "ops/ops.hpp"

namespace cnode::ops {

namespace {

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

std::string label_text(const metrics_sink::labels& l, std::string_view extra_name = {}, std::string_view extra = {}) {
  if (l.empty() && extra_name.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : l) {
    if (!first) out += ',';
    first = false;
    out += fmt::format("{}=\"{}\"", k, escape_label(v));
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += fmt::format("{}=\"{}\"", extra_name, extra);
  }
  return out + "}";
}

}  // namespace

struct text_sink::impl {
  struct family {
    std::string help, type;
    std::string samples;
  };
  std::vector<std::string> order;
  std::map<std::string, family, std::less<>> families;

  family& get(std::string_view name, std::string_view help, std::string_view type) {
    auto it = families.find(name);
    if (it == families.end()) {
      order.emplace_back(name);
      it = families.emplace(std::string(name), family{std::string(help), std::string(type), {}}).first;
    }
    return it->second;
  }
};

text_sink::text_sink() : impl_(std::make_unique<impl>()) {}
text_sink::~text_sink() = default;

void text_sink::counter(std::string_view name, std::string_view help, double value, const labels& l) {
  auto& f = impl_->get(name, help, "counter");
  f.samples += fmt::format("{}{} {}\n", name, label_text(l), number(value));
}

void text_sink::gauge(std::string_view name, std::string_view help, double value, const labels& l) {
  auto& f = impl_->get(name, help, "gauge");
  f.samples += fmt::format("{}{} {}\n", name, label_text(l), number(value));
}

void text_sink::histogram(std::string_view name, std::string_view help,
                          const std::vector<std::pair<double, std::uint64_t>>& buckets, double sum,
                          std::uint64_t count, const labels& l) {
  auto& f = impl_->get(name, help, "histogram");
  for (const auto& [le, n] : buckets)
    f.samples += fmt::format("{}_bucket{} {}\n", name, label_text(l, "le", number(le)), n);
  f.samples += fmt::format("{}_bucket{} {}\n", name, label_text(l, "le", "+Inf"), count);
  f.samples += fmt::format("{}_sum{} {}\n", name, label_text(l), number(sum));
  f.samples += fmt::format("{}_count{} {}\n", name, label_text(l), count);
}

std::string text_sink::text() const {
  std::string out;
  for (const auto& name : impl_->order) {
    const auto& f = impl_->families.at(name);
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(f.help), name, f.type);
    out += f.samples;
  }
  return out;
}

}  // namespace cnode::ops
