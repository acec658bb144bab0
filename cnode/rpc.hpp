// rpc and erpc into C++ functions: SPAWN_REQUEST of erpc:execute_call/4 and execute_cast/3 (what OTP 25's rpc and
// erpc send), of any registered {M, F, A}, and the rex server ({'$gen_call', From, {call, M, F, A, GL}},
// {block_call, ...}, {'$gen_cast', {cast, ...}}, the C-node form {Pid, {call, M, F, A, GL}}, features_request).
#pragma once

#include "cnode/distribution.hpp"
#include "cnode/functions.hpp"
#include "cnode/node.hpp"

namespace cnode {

// Installs the spawn-request handler on the distribution and starts (and registers) rex.
void start_rpc(node& n, distribution& d, const function_table& functions);

// What rpc:call returns for an outcome: the value (or thrown value), else {badrpc, {'EXIT', ...}}.
term rpc_result(const call_outcome& o);

}  // namespace cnode
