// One Raft group's durable state in a directory: the write-ahead log (segments `wal-<seq>-<first index>.log`, format
// in raft/wal.hpp) and snapshots (`snapshot-<index>-<term>.snap`). Single-threaded: one owner calls it (directly, or
// through raft/group_commit.hpp's writer thread). What it reads back at open is what a caller acknowledged after a
// sync() returned success; a crash mid-write loses only the write that had not returned.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "raft/core.hpp"
#include "raft/wal.hpp"

namespace cnode::raft {

// What core::restore takes.
struct recovered {
  hard_state state;                     // commit is at least the snapshot's index
  std::shared_ptr<const snapshot> snap;  // the newest snapshot, or null
  std::vector<entry> log;               // the entries after the snapshot, contiguous
};

// Why open failed: the code, the file and the byte offset in it (where a file was the problem).
struct storage_failure {
  std::error_code ec;
  std::filesystem::path file;
  std::optional<std::uint64_t> offset;
  explicit operator bool() const noexcept { return static_cast<bool>(ec); }
  std::string message() const;  // e.g. "/d/wal-...log at byte 4128: corrupt record before the end of the log"
};

struct storage_options {
  std::uint64_t segment_bytes = std::uint64_t{64} << 20;  // a new segment once the current one has this many
};

struct storage_stats {
  std::uint64_t fdatasyncs = 0;  // of segments (a snapshot's own fsync is not counted)
  std::uint64_t records = 0;     // one per sync() that had something to write
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;       // written to segments
  std::uint64_t segments = 0;    // live segment files
};

class storage {
 public:
  // Opens DIR (created with its parents when missing) and reads everything back into `out`. A torn tail (the last
  // write, cut by a crash) is dropped and cut from the file; anything else wrong — a damaged record with data after
  // it, an unknown format version, a gap, an unreadable directory, a directory another storage has open — fails
  // with the file and offset, and nothing is changed.
  static std::unique_ptr<storage> open(const std::filesystem::path& dir, recovered& out, storage_failure& why,
                                       const storage_options& opts = {});
  static std::unique_ptr<storage> open(const std::filesystem::path& dir, recovered& out, std::error_code& ec,
                                       const storage_options& opts = {});
  ~storage();
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;

  // Buffers a hard state (when set) and entries. Entries must be contiguous and start after the snapshot, at most one
  // past the last index; starting at or below the last index replaces the suffix from there (Raft's truncation on
  // conflict). Throws std::invalid_argument (nothing buffered) when they break these rules.
  void append(const std::optional<hard_state>& hs, const std::vector<entry>& es);
  // Writes what is buffered as one record (one write) and fdatasyncs it; the directory is fsynced when a segment was
  // created. Nothing buffered: nothing done. After a failed write or sync every call fails (storage_error::failed).
  std::error_code sync();
  // Makes `s` durable (written to a temporary file, fsynced, renamed, directory fsynced), then marks it in the log
  // (synced) and applies Raft's rule (§7): entries after the snapshot are kept when the log holds the snapshot's
  // last entry with its term, otherwise the whole log is dropped. Then older snapshot files and the segments the
  // snapshot wholly covers are removed. Buffered appends are synced first. A snapshot not newer than the current one
  // is already covered: nothing is done (success). An index of 0 is std::invalid_argument.
  std::error_code save_snapshot(const snapshot& s);

  index_t first_index() const noexcept { return base_index_ + 1; }  // of the log after the snapshot
  index_t last_index() const noexcept { return base_index_ + terms_.size(); }
  index_t snapshot_index() const noexcept { return base_index_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }
  storage_stats stats() const noexcept;
  std::error_code failed() const noexcept { return failed_; }

 private:
  struct segment {
    std::uint64_t seq = 0;
    index_t first_index = 0;
    std::filesystem::path path;
  };
  storage() = default;
  std::error_code write_record(std::vector<std::uint8_t>& payload);
  std::error_code fail(std::error_code ec);
  void apply_snapshot_rule(index_t index, term_t term);
  void remove_covered();

  std::filesystem::path dir_;
  storage_options opts_;
  int dir_fd_ = -1, lock_fd_ = -1, seg_fd_ = -1;  // seg_fd_: the newest segment, opened for writing on first use
  std::vector<segment> segments_;
  std::filesystem::path snapshot_file_;  // the newest
  std::uint64_t seg_size_ = 0;  // bytes in the newest segment
  std::uint64_t next_record_seq_ = 1;
  index_t base_index_ = 0;  // the snapshot's index (0: none)
  term_t base_term_ = 0;
  std::vector<term_t> terms_;  // of entries base_index_+1 .. last_index()
  index_t durable_last_ = 0;   // last_index() as of the last successful write
  hard_state hs_, durable_hs_;
  std::vector<std::uint8_t> pending_;  // the payload of the next record
  std::uint64_t pending_entries_ = 0;
  std::error_code failed_;
  storage_stats stats_;
};

}  // namespace cnode::raft
