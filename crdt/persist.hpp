// The CRDT service's files under --data-dir: DIR/crdt/state (the snapshot, crdt/snapshot.hpp) and DIR/crdt/lock
// (held with flock while the service runs, so that two nodes never share one state). Writes are atomic and
// durable: a temporary file, fsync, rename over the old state, fsync of the directory; a crash leaves the old or the
// new state, never a mix. The writes run on a thread of their own, so the service's process never waits for a disk.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crdt/snapshot.hpp"

namespace cnode::crdt {

class state_dir {
 public:
  // Creates the directory if needed and takes its lock; std::runtime_error with a sentence when either fails.
  explicit state_dir(std::filesystem::path dir);
  ~state_dir();
  state_dir(const state_dir&) = delete;
  state_dir& operator=(const state_dir&) = delete;

  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path state_file() const { return dir_ / "state"; }
  // The snapshot, or nullopt when there is no state file. std::runtime_error naming the file and what is wrong
  // with it when it cannot be read or decoded.
  std::optional<snapshot> load() const;
  // Replaces the state file with `bytes`, durably. "" or what failed.
  std::string write(const std::vector<std::uint8_t>& bytes) const;

 private:
  std::filesystem::path dir_;
  int lock_fd_ = -1;
};

// One background thread that writes the latest bytes handed to it and reports each write's outcome. A write handed
// while another runs waits for it (the service hands one per sync round and waits for its outcome before the next).
class background_writer {
 public:
  using done_fn = std::function<void(std::uint64_t generation, const std::string& error)>;
  background_writer(const state_dir& dir, done_fn done);
  ~background_writer();  // finishes the write under way
  void write(std::vector<std::uint8_t> bytes, std::uint64_t generation);

 private:
  void run();
  const state_dir& dir_;
  done_fn done_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::pair<std::vector<std::uint8_t>, std::uint64_t>> job_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cnode::crdt
