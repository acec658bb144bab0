// Buffered, framed I/O on file descriptors for cnode-etf: frames are an N-byte big-endian length (N = 1, 2 or 4,
// as Erlang's {packet, N}) followed by that many bytes.
//
// Output is flushed whenever the reader is about to block, so a peer that waits for replies before it sends more
// (an Erlang port with a window of frames in flight) never deadlocks against our buffering, while a peer that
// streams gets large batched writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cnode::etf::tool {

class fd_writer {
 public:
  explicit fd_writer(int fd) : fd_(fd) {}
  std::vector<std::uint8_t>& buffer() noexcept { return buf_; }
  // Starts a frame: reserves its length field; end_frame() fills it in. Throws io_error for frames too large.
  void begin_frame(int packet);
  void end_frame();
  // Drops what was written into the current frame so far.
  void restart_frame() { buf_.resize(frame_start_ + static_cast<std::size_t>(packet_)); }
  void write(std::span<const std::uint8_t> bytes) { buf_.insert(buf_.end(), bytes.begin(), bytes.end()); }
  void write(std::string_view text) { buf_.insert(buf_.end(), text.begin(), text.end()); }
  void flush_if_large() {
    if (buf_.size() >= flush_threshold) flush();
  }
  void flush();  // throws io_error

 private:
  static constexpr std::size_t flush_threshold = std::size_t{1} << 20;
  int fd_;
  int packet_ = 0;
  std::size_t frame_start_ = 0;
  std::vector<std::uint8_t> buf_;
};

struct io_error {
  std::string what;
  bool bad_input = false;  // the bytes were wrong (a stream cut inside a frame), not the reading of them
};

// Reads frames; next() returns false at the end of input. A stream that ends inside a frame throws io_error.
class frame_reader {
 public:
  frame_reader(int fd, int packet, fd_writer* flush_before_blocking)
      : fd_(fd), packet_(packet), out_(flush_before_blocking), buf_(std::size_t{1} << 20) {}
  bool next(std::span<const std::uint8_t>& frame);

 private:
  bool fill();  // reads more; false at end of input
  int fd_;
  int packet_;
  fd_writer* out_;
  std::vector<std::uint8_t> buf_;
  std::size_t begin_ = 0, end_ = 0;
};

// The whole of a file descriptor's input.
std::vector<std::uint8_t> read_all(int fd);

}  // namespace cnode::etf::tool
