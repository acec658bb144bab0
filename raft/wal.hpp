// The on-disk formats of a Raft group's directory, as pure functions over bytes (no I/O): write-ahead log segments
// and snapshot files. raft/storage.hpp does the files, the fsyncs and the recovery on top of these.
//
// A segment is a header and records. One record is what one storage::sync() wrote (one write, one fdatasync): a
// sequence of operations (entries, hard states, truncations, snapshot marks). Since a record is written only after
// the previous one's fdatasync returned, a record followed by another record was durable: its damage is corruption,
// while damage in the last record of the newest segment is a torn tail (a crash mid-write) and is dropped.
//
//   segment header (36 bytes): "cnraftwl" | u32 version | u64 segment seq | u64 first index | u32 reserved (0)
//                              | u32 crc32 of the 32 bytes before
//   record header  (20 bytes): u32 payload length | u64 record seq | u32 crc32(payload) | u32 crc32 of the 16
//                              bytes before
//   payload: operations, each u8 type then
//     1 entry:         u64 index | u64 term | u32 n | n bytes of term_to_binary(data)
//     2 hard state:    u64 term | u64 commit | u8 has_vote | u16 n | n bytes of the voted-for node name
//     3 truncate from: u64 index (entries from there on are gone)
//     4 snapshot mark: u64 index | u64 term (a snapshot at this point became durable; Raft §7's rule on the log)
//   snapshot file: "cnraftsn" | u32 version | u64 index | u64 term | u32 member count | (u16 n | n bytes)* | u64 n
//                  | n bytes of state machine data | u32 crc32 of everything before
// Integers are little-endian; crc32 is zlib's.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "raft/core.hpp"

namespace cnode::raft {

enum class storage_error {
  ok = 0,
  bad_header = 1,       // not a segment/snapshot file of this format (magic or header checksum), or a cut header
  unsupported_version,  // a format version this build does not read
  corrupt_record,       // a record damaged before the end of the log (valid data follows), or malformed contents
  bad_sequence,         // records, segments or entries out of order, or a truncation outside the log
  missing_data,         // a gap: segments missing, the log starting after the snapshot, a snapshot file missing
  name_mismatch,        // a file whose name disagrees with its header
  bad_snapshot,         // a snapshot file whose checksum or contents are wrong
  in_use,               // the directory is locked by another storage (this or another process)
  failed,               // an earlier write or fdatasync failed: nothing more is written until reopened
  invalid_argument,     // an append or snapshot that breaks the log's rules (a gap, below the snapshot)
  stopped,              // group_commit was stopped before this was submitted
};

const std::error_category& storage_category() noexcept;
inline std::error_code make_error_code(storage_error e) noexcept { return {static_cast<int>(e), storage_category()}; }

namespace wal {

constexpr std::uint32_t format_version = 1;
constexpr std::size_t segment_header_size = 36;
constexpr std::size_t record_header_size = 20;

struct truncate_from {
  index_t index = 0;
  friend bool operator==(const truncate_from&, const truncate_from&) = default;
};
struct snapshot_mark {
  index_t index = 0;
  term_t term = 0;
  friend bool operator==(const snapshot_mark&, const snapshot_mark&) = default;
};
using op = std::variant<entry, hard_state, truncate_from, snapshot_mark>;

struct segment_header {
  std::uint64_t seq = 0;    // segments are numbered 1, 2, ... in the order they were created
  index_t first_index = 0;  // the log's last index + 1 when the segment was created
};

std::uint32_t crc32(std::span<const std::uint8_t> bytes) noexcept;

void encode_segment_header(const segment_header& h, std::vector<std::uint8_t>& out);
// Appends one operation to a record's payload. Throws std::system_error (etf::error::not_encodable) for an entry
// whose data cannot be encoded and std::invalid_argument for a voted-for name longer than 65 535 bytes.
void encode_op(const op& o, std::vector<std::uint8_t>& payload);
// The 20 header bytes of a record carrying `payload`.
std::array<std::uint8_t, record_header_size> record_header(std::uint64_t seq, std::span<const std::uint8_t> payload);

struct record {
  std::uint64_t seq = 0;
  std::uint64_t offset = 0;  // of its header in the segment
  std::vector<op> ops;
};

struct segment_contents {
  segment_header header;
  std::vector<record> records;
  // The bytes that hold the header and the good records. When `torn`, the rest is a torn tail to cut away; a torn
  // segment with valid_bytes == 0 is a torn creation (shorter than a header, or nothing but zeros) to remove.
  std::uint64_t valid_bytes = 0;
  bool torn = false;
  std::error_code ec;        // the segment cannot be used; nothing should be guessed
  std::uint64_t offset = 0;  // where (bytes from the start of the segment)
};

// Reads a whole segment. `last`: the newest segment, where a torn tail is allowed. `prev_seq`: the seq of the record
// before this segment's first one (0: unknown, the oldest segment). Total on any bytes: never throws, never reads
// out of bounds, allocates only for what the bytes hold.
segment_contents read_segment(std::span<const std::uint8_t> bytes, bool last, std::uint64_t prev_seq);

// Throws std::invalid_argument for a member name longer than 65 535 bytes.
void encode_snapshot(const snapshot& s, std::vector<std::uint8_t>& out);

struct snapshot_contents {
  snapshot snap;
  std::error_code ec;
  std::uint64_t offset = 0;
};
// Total on any bytes, like read_segment.
snapshot_contents read_snapshot(std::span<const std::uint8_t> bytes);

}  // namespace wal
}  // namespace cnode::raft

template <>
struct std::is_error_code_enum<cnode::raft::storage_error> : std::true_type {};
