// The replica's state on disk (--data-dir DIR: DIR/crdt/state), as bytes in and bytes out; the service does the
// file I/O (write to a temporary file, fsync, rename, fsync the directory).
//
//   0   8  magic "CNCRDT01" (format 1)
//   8   8  payload length, big-endian
//   16  4  CRC-32 (zlib's) of the payload, big-endian
//   20  …  payload: the external term format of {crdt_snapshot, Node, Writer, Group}
//
// Node is the node that wrote it (a snapshot is refused under another name: two nodes would make the same dots),
// Writer the id that made this replica's dots (crdt/store.hpp), Group its objects as codec.hpp encodes them.
// Decoding is total: bytes from disk give a snapshot or a sentence saying what is wrong with them, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "crdt/store.hpp"

namespace cnode::crdt {

struct snapshot {
  etf::atom node;
  replica_id writer;
  delta_group state;
};

std::vector<std::uint8_t> encode_snapshot(const snapshot& s);

struct snapshot_result {
  snapshot value;
  std::string error;  // empty on success
  explicit operator bool() const noexcept { return error.empty(); }
};
snapshot_result decode_snapshot(std::span<const std::uint8_t> bytes);

}  // namespace cnode::crdt
