// Raft's messages between members, as terms: {'$raft', Group, FromNode, Msg} with Msg a tuple of the message's
// fields (see wire.cpp). Decoding is total: a peer's garbage is dropped, never a crash.
#pragma once

#include <optional>
#include <string>

#include "raft/core.hpp"

namespace cnode::raft {

term encode(const message& m);
std::optional<message> decode(const term& t, const std::string& from, const std::string& to);

}  // namespace cnode::raft
