// Internal to pg/: the pg service (one per node) and the scopes it runs. The C++ API in pg/pg.hpp finds it through
// the node's service directory.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cnode/distribution.hpp"
#include "cnode/service.hpp"
#include "pg/core.hpp"

namespace cnode::pg::detail {

struct scope_state {
  std::shared_mutex mu;
  std::optional<scope_core> core;  // set while the scope process runs
  term pid;                        // the scope process
};

class pg_service final : public cnode::service {
 public:
  std::string_view name() const override { return "pg"; }
  void add_options(option_list& o) override;
  asio::awaitable<void> start(service_context& ctx) override;
  // A BEAM node's scopes end when it stops, and every peer scope, which monitors them, drops their members at the
  // 'DOWN': the scopes exit `shutdown` here, before the connections close.
  asio::awaitable<void> stop(clock::time_point deadline) override;
  void metrics(metrics_sink& m) const override;
  term status() const override;

  std::optional<term> start_scope(atom scope);
  std::shared_ptr<scope_state> find(atom scope) const;
  std::vector<std::pair<atom, std::shared_ptr<scope_state>>> scopes() const;
  void forget(atom scope, const std::shared_ptr<scope_state>& st);

  node* n = nullptr;
  distribution* d = nullptr;

 private:
  std::vector<std::string> scope_names_{"pg"};
  mutable std::mutex mu_;
  std::unordered_map<atom, std::shared_ptr<scope_state>> scopes_;
};

// The pg service of n, or null when pg does not run there.
pg_service* find_service(node& n);

}  // namespace cnode::pg::detail
