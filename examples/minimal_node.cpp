// The smallest complete cnode program: a node named `minimal` (on this host), the cookie from ~/.erlang.cookie,
// the distribution registered with EPMD, and the built-in services (net_kernel, rex, echo, :global, pg, and the
// HTTP surface when --http-port is passed on). From iex: Node.ping(:"minimal@yourhost") gives :pong.
//
//   cnode-example-minimal [NAME] [SERVICE OPTIONS...]     e.g. cnode-example-minimal demo --http-port 8080
#include <iostream>

#include "cnode/host.hpp"

int main(int argc, char** argv) {
  cnode::host_config cfg;
  cfg.name = argc > 1 ? argv[1] : "minimal";
  for (int i = 2; i < argc; ++i) cfg.service_args.emplace_back(argv[i]);
  try {
    cnode::host h(cfg);   // every service that was built; stops cleanly on SIGTERM/SIGINT
    return h.run();       // blocks until stopped; 0, or 1 if something could not start
  } catch (const std::exception& e) {
    std::cerr << "cnode-example-minimal: " << e.what() << "\n";
    return 2;
  }
}
