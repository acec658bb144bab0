// The processes every BEAM node has that a peer talks to: net_kernel (is_auth, so ping works), rex (features,
// and rpc in later layers), and cnode's own echo service.
#pragma once

#include "cnode/distribution.hpp"
#include "cnode/node.hpp"

namespace cnode {

// Spawns and registers net_kernel, rex and echo.
void start_builtins(node& n, distribution& d);

}  // namespace cnode
