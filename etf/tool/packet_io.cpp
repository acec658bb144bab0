#include "etf/tool/packet_io.hpp"

#include <cerrno>
#include <cstring>

#include <unistd.h>

namespace cnode::etf::tool {

void fd_writer::begin_frame(int packet) {
  packet_ = packet;
  frame_start_ = buf_.size();
  buf_.resize(buf_.size() + static_cast<std::size_t>(packet));
}

void fd_writer::end_frame() {
  std::size_t len = buf_.size() - frame_start_ - static_cast<std::size_t>(packet_);
  if (packet_ < 4 && len >> (8 * packet_) != 0)
    throw io_error{"reply of " + std::to_string(len) + " bytes does not fit a " + std::to_string(packet_) +
                   "-byte length field"};
  if (len > UINT32_MAX) throw io_error{"reply of " + std::to_string(len) + " bytes is larger than 4 GiB"};
  for (int i = 0; i < packet_; ++i)
    buf_[frame_start_ + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(len >> (8 * (packet_ - 1 - i)));
  flush_if_large();
}

void fd_writer::flush() {
  std::size_t done = 0;
  while (done < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      buf_.clear();
      throw io_error{std::string("cannot write output: ") + std::strerror(errno)};
    }
    done += static_cast<std::size_t>(n);
  }
  buf_.clear();
}

bool frame_reader::fill() {
  if (begin_ > 0) {  // keep the unread part at the front so that a frame is contiguous
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
  if (out_) out_->flush();
  for (;;) {
    ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error{std::string("cannot read input: ") + std::strerror(errno)};
    }
    end_ += static_cast<std::size_t>(n);
    return n > 0;
  }
}

bool frame_reader::next(std::span<const std::uint8_t>& frame) {
  const std::size_t header = static_cast<std::size_t>(packet_);
  for (;;) {
    std::size_t have = end_ - begin_;
    if (have >= header) {
      std::size_t len = 0;
      for (std::size_t i = 0; i < header; ++i) len = (len << 8) | buf_[begin_ + i];
      if (have - header >= len) {
        frame = {buf_.data() + begin_ + header, len};
        begin_ += header + len;
        return true;
      }
      // Grow for the announced frame only as its bytes arrive: a bogus length must not allocate 4 GiB up front.
    }
    if (!fill()) {
      if (end_ == begin_) return false;
      throw io_error{"input ends inside a frame (" + std::to_string(end_ - begin_) + " bytes left over)", true};
    }
  }
}

std::vector<std::uint8_t> read_all(int fd) {
  std::vector<std::uint8_t> out(std::size_t{1} << 16);
  std::size_t size = 0;
  for (;;) {
    if (size == out.size()) out.resize(out.size() * 2);
    ssize_t n = ::read(fd, out.data() + size, out.size() - size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error{std::string("cannot read input: ") + std::strerror(errno)};
    }
    if (n == 0) break;
    size += static_cast<std::size_t>(n);
  }
  out.resize(size);
  return out;
}

}  // namespace cnode::etf::tool
