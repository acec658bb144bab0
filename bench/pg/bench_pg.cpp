// A node like `cnode` (built-ins and the pg scope `pg`) plus one function for the benchmark:
// pg_bench:fill(Groups, PerGroup, Procs) spawns Procs idle processes and joins PerGroup of them (round robin) to
// each of Groups groups {bench, I}; it returns the time taken in microseconds.
//   bench_pg NAME@HOST COOKIE EPMD_PORT
#include <chrono>
#include <cstdlib>
#include <thread>

#include "cnode/host.hpp"
#include "cnode/log.hpp"
#include "pg/pg.hpp"

using namespace cnode;

int main(int argc, char** argv) {
  if (argc != 4) {
    fmt::print(stderr, "usage: bench_pg NAME@HOST COOKIE EPMD_PORT\n");
    return 2;
  }
  host_config cfg;
  cfg.name = argv[1];
  cfg.cookie = argv[2];
  cfg.dist.epmd_port = static_cast<std::uint16_t>(std::atoi(argv[3]));
  cfg.threads = 2;
  host h(cfg);
  node& n = h.n();
  h.functions().add("pg_bench", "fill", 3, [&n](process& self, std::vector<term> a) -> asio::awaitable<term> {
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t groups = a[0].small(), per = a[1].small(), procs = a[2].small();
    std::vector<term> pids;
    pids.reserve(procs);
    for (std::int64_t i = 0; i < procs; ++i)
      pids.push_back(n.spawn([](process& p) -> asio::awaitable<void> {
        for (;;) co_await p.receive();
      }));
    std::int64_t next = 0;
    for (std::int64_t g = 0; g < groups; ++g) {
      std::vector<term> members;
      for (std::int64_t j = 0; j < per; ++j) members.push_back(pids[next++ % procs]);
      term group = term::tuple({term(atom("bench")), term(g)});
      term list = term::list(std::move(members));
      co_await pg::join(self, atom("pg"), group, list);
    }
    co_return term(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
                       .count());
  });
  return h.run();
}
