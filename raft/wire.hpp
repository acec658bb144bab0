// Raft's messages between members, as terms: {'$raft', Group, FromNode, Msg} with Msg a tuple of the message's
// fields (see wire.cpp). Decoding is total: a peer's garbage is dropped, never a crash.
#pragma once

#include <optional>
#include <string>

#include "raft/core.hpp"

namespace cnode::raft {

term encode(const message& m);
// snapshot_bytes: where an install_snapshot's state bytes go. Null: copied into m.snap->data. Else the binary term
// that holds them is put there and m.snap->data is left empty (the shell copies them in steps: a snapshot of a large
// state is 100 MB and more).
std::optional<message> decode(const term& t, const std::string& from, const std::string& to,
                              term* snapshot_bytes = nullptr);

}  // namespace cnode::raft
