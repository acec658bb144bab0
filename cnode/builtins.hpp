// The processes every BEAM node has that a peer talks to: net_kernel (is_auth, so ping works), rex (rpc), and
// cnode's own services: echo, the built-in functions (erlang:node/0, nodes/0,1, registered/0, whereis/1,
// is_process_alive/1, processes/0, cnode:info/0) and the probe (cnode:spawn_probe/1).
#pragma once

#include "cnode/distribution.hpp"
#include "cnode/functions.hpp"
#include "cnode/node.hpp"

namespace cnode {

// Registers the built-in functions in `functions`, then spawns and registers net_kernel, rex and echo.
void start_builtins(node& n, distribution& d, function_table& functions);

// erlang:set_cookie/1,2, get_cookie/0,1, disconnect_node/1, net_kernel:connect_node/1, disconnect/1 and
// net_adm:ping/1, answered as a BEAM node answers them (net_functions.cpp).
void add_net_functions(node& n, distribution& d, function_table& functions);

// erlang:memory/0,1, system_info/1, statistics/1, process_info/1,2 with cnode's own figures (introspection.cpp).
void add_introspection_functions(node& n, function_table& functions);

// The probe: a C++ process driven by GenServer.call from Elixir (see README), forwarding every other message and
// every signal it sees to owner as {probe, ProbePid, Msg}.
term spawn_probe(node& n, const term& owner);

// Layers above the runtime teach the probe more calls through the node's probe registry (node::probe_calls()).

}  // namespace cnode
