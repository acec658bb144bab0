#include "crdt/persist.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace cnode::crdt {

namespace {

std::string errno_text(const char* what, const std::filesystem::path& p) {
  return std::string(what) + " " + p.string() + ": " + std::strerror(errno);
}

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

state_dir::state_dir(std::filesystem::path dir) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw std::runtime_error("cannot create " + dir_.string() + ": " + ec.message());
  const auto lock = dir_ / "lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) throw std::runtime_error(errno_text("cannot open", lock));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (e == EWOULDBLOCK)
      throw std::runtime_error(dir_.string() + " is in use by another cnode (its lock file is held)");
    errno = e;
    throw std::runtime_error(errno_text("cannot lock", lock));
  }
}

state_dir::~state_dir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

std::optional<snapshot> state_dir::load() const {
  const auto file = state_file();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw std::runtime_error(errno_text("cannot open", file));
  }
  std::vector<std::uint8_t> bytes;
  struct stat st{};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.reserve(static_cast<std::size_t>(st.st_size));
  std::uint8_t buf[65536];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text("cannot read", file);
      ::close(fd);
      throw std::runtime_error(why);
    }
    if (r == 0) break;
    bytes.insert(bytes.end(), buf, buf + r);
  }
  ::close(fd);
  auto s = decode_snapshot(bytes);
  if (!s)
    throw std::runtime_error(file.string() + " cannot be read back: " + s.error +
                             " (move it away to start this replica empty: its peers give the state back)");
  return std::move(s.value);
}

std::string state_dir::write(const std::vector<std::uint8_t>& bytes) const {
  const auto tmp = dir_ / "state.tmp";
  const auto file = state_file();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_text("cannot create", tmp);
  if (!write_all(fd, bytes.data(), bytes.size()) || ::fsync(fd) != 0) {
    const std::string why = errno_text("cannot write", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return why;
  }
  if (::close(fd) != 0) return errno_text("cannot close", tmp);
  if (::rename(tmp.c_str(), file.c_str()) != 0) return errno_text("cannot rename to", file);
  // The rename itself is durable once the directory is.
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno_text("cannot open", dir_);
  const bool ok = ::fsync(dfd) == 0;
  const std::string why = ok ? std::string() : errno_text("cannot fsync", dir_);
  ::close(dfd);
  return why;
}

background_writer::background_writer(const state_dir& dir, done_fn done)
    : dir_(dir), done_(std::move(done)), thread_([this] { run(); }) {}

background_writer::~background_writer() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void background_writer::write(std::vector<std::uint8_t> bytes, std::uint64_t generation) {
  {
    std::lock_guard lk(mu_);
    job_.emplace(std::move(bytes), generation);
  }
  cv_.notify_all();
}

void background_writer::run() {
  for (;;) {
    std::pair<std::vector<std::uint8_t>, std::uint64_t> job;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || job_; });
      if (!job_) return;  // stopping, nothing left
      job = std::move(*job_);
      job_.reset();
    }
    const std::string err = dir_.write(job.first);
    done_(job.second, err);
  }
}

}  // namespace cnode::crdt
