// The operations surface: an HTTP server (Boost.Beast) with GET /status (JSON), GET /metrics (Prometheus text
// format 0.0.4: the runtime's counters and every service's metrics) and GET /health (200 when the distribution
// listens and the EPMD registration holds, else 503). Off unless --http-port is given.
#pragma once

#include <memory>
#include <string>

#include "cnode/service.hpp"

namespace cnode::ops {

std::unique_ptr<cnode::service> make_service();

// The Prometheus text exposition (version 0.0.4) of what is written to it, families in first-seen order, every
// sample of a family together whatever order they came in.
class text_sink final : public metrics_sink {
 public:
  text_sink();
  ~text_sink() override;
  void counter(std::string_view name, std::string_view help, double value, const labels& l = {}) override;
  void gauge(std::string_view name, std::string_view help, double value, const labels& l = {}) override;
  void histogram(std::string_view name, std::string_view help,
                 const std::vector<std::pair<double, std::uint64_t>>& buckets, double sum, std::uint64_t count,
                 const labels& l = {}) override;
  std::string text() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// A term as JSON: maps as objects (keys written as their text), lists and tuples as arrays, atoms (but true, false
// and nil/undefined) and binaries as strings, pids/refs/ports as their printed form.
std::string to_json(const term& t);

}  // namespace cnode::ops
