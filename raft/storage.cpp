#include "raft/storage.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <stdexcept>

#include <fmt/format.h>

namespace cnode::raft {
namespace fs = std::filesystem;
namespace {

std::error_code last_errno() { return {errno, std::generic_category()}; }

std::string segment_name(std::uint64_t seq, index_t first) { return fmt::format("wal-{:020}-{:020}.log", seq, first); }
std::string snapshot_name(index_t index, term_t term) { return fmt::format("snapshot-{:020}-{:020}.snap", index, term); }

// "PREFIX<20 digits>-<20 digits>SUFFIX" -> the two numbers.
bool parse_name(const std::string& n, std::string_view prefix, std::string_view suffix, std::uint64_t& a,
                std::uint64_t& b) {
  if (n.size() != prefix.size() + 41 + suffix.size() || !n.starts_with(prefix) || !n.ends_with(suffix)) return false;
  const char* p = n.data() + prefix.size();
  if (p[20] != '-') return false;
  auto num = [](const char* s, std::uint64_t& v) {
    v = 0;
    for (int i = 0; i < 20; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      const std::uint64_t d = static_cast<std::uint64_t>(s[i] - '0');
      if (v > (UINT64_MAX - d) / 10) return false;
      v = v * 10 + d;
    }
    return true;
  };
  return num(p, a) && num(p + 21, b);
}

std::error_code read_file(const fs::path& p, std::vector<std::uint8_t>& out) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return last_errno();
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    auto ec = last_errno();
    ::close(fd);
    return ec;
  }
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto ec = last_errno();
      ::close(fd);
      return ec;
    }
    if (n == 0) break;  // shrank while we read
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  ::close(fd);
  return {};
}

std::error_code fsync_fd(int fd) { return ::fsync(fd) == 0 ? std::error_code{} : last_errno(); }

std::error_code fsync_dir(const fs::path& d) {
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return last_errno();
  auto ec = fsync_fd(fd);
  ::close(fd);
  return ec;
}

// Writes all of `iov` at `offset`, resuming after short writes.
std::error_code write_all(int fd, std::vector<iovec> iov, std::uint64_t offset) {
  std::size_t first = 0;
  while (first < iov.size()) {
    const ssize_t n = ::pwritev(fd, iov.data() + first, static_cast<int>(std::min<std::size_t>(iov.size() - first, IOV_MAX)),
                                static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return last_errno();
    offset += static_cast<std::uint64_t>(n);
    for (std::size_t left = static_cast<std::size_t>(n); left > 0 && first < iov.size();) {
      if (left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      } else {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
        left = 0;
      }
    }
    while (first < iov.size() && iov[first].iov_len == 0) ++first;
  }
  return {};
}

// The log as the segments describe it, rebuilt record by record.
struct replay {
  index_t base = 0;
  std::optional<term_t> base_term;  // unknown at the start of the oldest segment left after compaction
  std::vector<entry> log;           // base+1 ..
  hard_state hs;
  index_t newest_mark = 0;

  index_t last() const { return base + log.size(); }
  // Raft §7: keep the entries after the snapshot if the log holds its last entry with its term; else drop them all.
  void snapshot_rule(index_t index, term_t term) {
    const bool holds = (index == base && (!base_term || *base_term == term)) ||
                       (index > base && index <= last() && log[index - base - 1].term == term);
    if (holds) log.erase(log.begin(), log.begin() + static_cast<std::ptrdiff_t>(index - base));
    else log.clear();
    base = index;
    base_term = term;
  }
  bool apply(wal::op& o) {
    if (auto* e = std::get_if<entry>(&o)) {
      if (e->index != last() + 1) return false;
      log.push_back(std::move(*e));
    } else if (auto* hs_op = std::get_if<hard_state>(&o)) {
      hs = std::move(*hs_op);
    } else if (auto* t = std::get_if<wal::truncate_from>(&o)) {
      if (t->index == 0 || t->index > last() + 1) return false;
      if (t->index <= base) {  // below where the oldest segment left starts: what it replaces is compacted anyway
        base = t->index - 1;
        base_term.reset();
        log.clear();
      } else {
        log.resize(t->index - base - 1);
      }
    } else {
      const auto& m = std::get<wal::snapshot_mark>(o);
      newest_mark = std::max(newest_mark, m.index);
      if (m.index >= base) snapshot_rule(m.index, m.term);
    }
    return true;
  }
};

}  // namespace

std::string storage_failure::message() const {
  if (file.empty()) return ec.message();
  if (offset) return fmt::format("{} at byte {}: {}", file.string(), *offset, ec.message());
  return fmt::format("{}: {}", file.string(), ec.message());
}

std::unique_ptr<storage> storage::open(const fs::path& dir, recovered& out, std::error_code& ec,
                                       const storage_options& opts) {
  storage_failure why;
  auto s = open(dir, out, why, opts);
  ec = why.ec;
  return s;
}

std::unique_ptr<storage> storage::open(const fs::path& dir, recovered& out, storage_failure& why,
                                       const storage_options& opts) {
  out = {};
  why = {};
  auto fail = [&](std::error_code ec, const fs::path& file, std::optional<std::uint64_t> offset = std::nullopt) {
    why.ec = ec;
    why.file = file;
    why.offset = offset;
    out = {};
    return std::unique_ptr<storage>();
  };
  std::unique_ptr<storage> st(new storage);
  st->dir_ = dir;
  st->opts_ = opts;

  std::error_code ec;
  const auto status = fs::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) return fail(ec, dir);
  if (!fs::exists(status)) {
    fs::create_directories(dir, ec);
    if (ec) return fail(ec, dir);
    const fs::path parent = fs::absolute(dir, ec).parent_path();
    if (!ec && !parent.empty()) ec = fsync_dir(parent);
    if (ec) return fail(ec, parent);
  } else if (!fs::is_directory(status)) {
    return fail(std::make_error_code(std::errc::not_a_directory), dir);
  }
  st->dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (st->dir_fd_ < 0) return fail(last_errno(), dir);
  const fs::path lock = dir / "LOCK";
  st->lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (st->lock_fd_ < 0) return fail(last_errno(), lock);
  if (::flock(st->lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return fail(errno == EWOULDBLOCK ? make_error_code(storage_error::in_use) : last_errno(), lock);

  // The files.
  struct snap_file {
    index_t index;
    term_t term;
    fs::path path;
  };
  std::vector<snap_file> snaps;
  std::vector<fs::path> temporaries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::uint64_t a = 0, b = 0;
    if (parse_name(name, "wal-", ".log", a, b)) st->segments_.push_back({a, b, it->path()});
    else if (parse_name(name, "snapshot-", ".snap", a, b)) snaps.push_back({a, b, it->path()});
    else if (name.starts_with("snapshot-") && name.ends_with(".snap.tmp")) temporaries.push_back(it->path());
  }
  if (ec) return fail(ec, dir);
  auto& segs = st->segments_;
  std::sort(segs.begin(), segs.end(), [](const segment& x, const segment& y) { return x.seq < y.seq; });
  for (std::size_t i = 1; i < segs.size(); ++i)
    if (segs[i].seq != segs[i - 1].seq + 1) return fail(storage_error::missing_data, segs[i].path);
  std::sort(snaps.begin(), snaps.end(),
            [](const snap_file& x, const snap_file& y) { return std::tie(x.index, x.term) < std::tie(y.index, y.term); });

  // The newest snapshot.
  std::vector<std::uint8_t> bytes;
  if (!snaps.empty()) {
    const auto& f = snaps.back();
    if (auto rec = read_file(f.path, bytes)) return fail(rec, f.path);
    auto c = wal::read_snapshot(bytes);
    if (c.ec) return fail(c.ec, f.path, c.offset);
    if (c.snap.meta.index != f.index || c.snap.meta.term != f.term || f.index == 0)
      return fail(storage_error::name_mismatch, f.path, 12);
    out.snap = std::make_shared<const snapshot>(std::move(c.snap));
  }
  const index_t snap_index = out.snap ? out.snap->meta.index : 0;
  const term_t snap_term = out.snap ? out.snap->meta.term : 0;

  // The log, segment by segment.
  replay r;
  std::uint64_t prev_seq = 0, last_size = 0;
  std::optional<std::pair<fs::path, std::uint64_t>> cut;  // a torn tail to cut (size 0: remove the file)
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const bool last = i + 1 == segs.size();
    if (auto rec = read_file(segs[i].path, bytes)) return fail(rec, segs[i].path);
    auto c = wal::read_segment(bytes, last, prev_seq);
    if (c.ec) return fail(c.ec, segs[i].path, c.offset);
    if (c.torn) cut.emplace(segs[i].path, c.valid_bytes);
    if (c.torn && c.valid_bytes == 0) break;  // a creation that never completed: nothing in it
    if (c.header.seq != segs[i].seq || c.header.first_index != segs[i].first_index || c.header.first_index == 0)
      return fail(storage_error::name_mismatch, segs[i].path, 12);
    if (i == 0) r.base = c.header.first_index - 1;
    else if (c.header.first_index != r.last() + 1) return fail(storage_error::bad_sequence, segs[i].path, 20);
    for (auto& rec : c.records) {
      for (auto& o : rec.ops)
        if (!r.apply(o)) return fail(storage_error::bad_sequence, segs[i].path, rec.offset);
      prev_seq = rec.seq;
    }
    last_size = c.valid_bytes;
  }
  if (segs.empty()) r.base = snap_index, r.base_term = snap_term;
  if (r.newest_mark > snap_index)  // the log marks a snapshot that is not here
    return fail(storage_error::missing_data, dir / fmt::format("snapshot-{:020}-*.snap", r.newest_mark));
  if (r.base > snap_index)  // entries between the snapshot and the oldest segment are gone
    return fail(storage_error::missing_data, segs.front().path, 20);
  r.snapshot_rule(snap_index, snap_term);

  // Everything checks out: only now is anything changed on disk.
  if (cut) {
    if (cut->second == 0) {
      if (::unlink(cut->first.c_str()) != 0) return fail(last_errno(), cut->first);
      if (auto e = fsync_fd(st->dir_fd_)) return fail(e, dir);
      segs.pop_back();
      if (!segs.empty()) {
        struct stat sb {};
        if (::stat(segs.back().path.c_str(), &sb) != 0) return fail(last_errno(), segs.back().path);
        last_size = static_cast<std::uint64_t>(sb.st_size);
      }
    } else {
      const int fd = ::open(cut->first.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return fail(last_errno(), cut->first);
      // Made durable at once: a later write must never land after garbage that a crash could bring back.
      std::error_code e;
      if (::ftruncate(fd, static_cast<off_t>(cut->second)) != 0 || ::fdatasync(fd) != 0) e = last_errno();
      ::close(fd);
      if (e) return fail(e, cut->first, cut->second);
    }
  }
  for (const auto& t : temporaries) ::unlink(t.c_str());
  for (std::size_t i = 0; i + 1 < snaps.size(); ++i) ::unlink(snaps[i].path.c_str());  // superseded
  if (!snaps.empty()) st->snapshot_file_ = snaps.back().path;

  st->seg_size_ = last_size;
  st->next_record_seq_ = prev_seq + 1;
  st->base_index_ = r.base;
  st->base_term_ = snap_term;
  st->terms_.reserve(r.log.size());
  for (const auto& e : r.log) st->terms_.push_back(e.term);
  st->durable_last_ = st->last_index();
  st->hs_ = st->durable_hs_ = r.hs;
  out.state = r.hs;
  out.state.commit = std::max(out.state.commit, snap_index);
  out.log = std::move(r.log);
  return st;
}

storage::~storage() {
  if (seg_fd_ >= 0) ::close(seg_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void storage::append(const std::optional<hard_state>& hs, const std::vector<entry>& es) {
  if (!es.empty()) {
    const index_t first = es.front().index;
    if (first <= base_index_ || first > last_index() + 1)
      throw std::invalid_argument(fmt::format("raft storage: entries from {} with the log at {}..{}", first,
                                              first_index(), last_index()));
    for (std::size_t i = 1; i < es.size(); ++i)
      if (es[i].index != es[i - 1].index + 1)
        throw std::invalid_argument(fmt::format("raft storage: entry {} after {}", es[i].index, es[i - 1].index));
  }
  // Encoded first, so that a throw leaves nothing half buffered.
  std::vector<std::uint8_t> ops;
  if (!es.empty() && es.front().index <= last_index()) wal::encode_op(wal::truncate_from{es.front().index}, ops);
  for (const auto& e : es) wal::encode_op(e, ops);
  if (hs) wal::encode_op(*hs, ops);
  pending_.insert(pending_.end(), ops.begin(), ops.end());
  pending_entries_ += es.size();
  if (!es.empty()) {
    terms_.resize(es.front().index - base_index_ - 1);
    for (const auto& e : es) terms_.push_back(e.term);
  }
  if (hs) hs_ = *hs;
}

std::error_code storage::fail(std::error_code ec) {
  failed_ = ec;
  return ec;
}

std::error_code storage::sync() {
  if (failed_) return make_error_code(storage_error::failed);
  if (pending_.empty()) return {};
  if (auto ec = write_record(pending_)) return ec;
  pending_.clear();
  stats_.entries += pending_entries_;
  pending_entries_ = 0;
  durable_last_ = last_index();
  durable_hs_ = hs_;
  return {};
}

std::error_code storage::write_record(std::vector<std::uint8_t>& payload) {
  const bool create = segments_.empty() || seg_size_ >= opts_.segment_bytes;
  std::vector<std::uint8_t> head;
  std::vector<std::uint8_t> preamble;
  if (create) {
    segment s;
    s.seq = segments_.empty() ? 1 : segments_.back().seq + 1;
    s.first_index = durable_last_ + 1;
    s.path = dir_ / segment_name(s.seq, s.first_index);
    if (seg_fd_ >= 0) ::close(seg_fd_);
    seg_fd_ = ::open(s.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (seg_fd_ < 0) return fail(last_errno());
    segments_.push_back(std::move(s));
    seg_size_ = 0;
    wal::encode_segment_header({segments_.back().seq, segments_.back().first_index}, head);
    // Every segment starts with the hard state, so that dropping older segments never loses it.
    wal::encode_op(durable_hs_, preamble);
  } else if (seg_fd_ < 0) {
    seg_fd_ = ::open(segments_.back().path.c_str(), O_WRONLY | O_CLOEXEC);
    if (seg_fd_ < 0) return fail(last_errno());
  }
  if (!preamble.empty()) payload.insert(payload.begin(), preamble.begin(), preamble.end());
  auto rh = wal::record_header(next_record_seq_, payload);
  std::vector<iovec> iov;
  if (!head.empty()) iov.push_back({head.data(), head.size()});
  iov.push_back({rh.data(), rh.size()});
  if (!payload.empty()) iov.push_back({payload.data(), payload.size()});
  if (auto ec = write_all(seg_fd_, iov, seg_size_)) return fail(ec);
  if (::fdatasync(seg_fd_) != 0) return fail(last_errno());
  ++stats_.fdatasyncs;
  if (create)
    if (auto ec = fsync_fd(dir_fd_)) return fail(ec);
  const std::uint64_t n = head.size() + rh.size() + payload.size();
  seg_size_ += n;
  stats_.bytes += n;
  ++stats_.records;
  ++next_record_seq_;
  return {};
}

void storage::apply_snapshot_rule(index_t index, term_t term) {
  const bool holds = (index == base_index_ && term == base_term_) ||
                     (index > base_index_ && index <= last_index() && terms_[index - base_index_ - 1] == term);
  if (holds) terms_.erase(terms_.begin(), terms_.begin() + static_cast<std::ptrdiff_t>(index - base_index_));
  else terms_.clear();
  base_index_ = index;
  base_term_ = term;
}

std::error_code storage::save_snapshot(const snapshot& s) {
  if (s.meta.index == 0) throw std::invalid_argument("raft storage: a snapshot at index 0");
  if (failed_) return make_error_code(storage_error::failed);
  // E.g. the shell's compaction queued behind an install from the leader that went further.
  if (s.meta.index <= base_index_) return {};
  if (auto ec = sync()) return ec;

  std::vector<std::uint8_t> bytes;
  wal::encode_snapshot(s, bytes);
  const fs::path file = dir_ / snapshot_name(s.meta.index, s.meta.term);
  fs::path tmp = file;
  tmp += ".tmp";
  // A failure up to the rename leaves the log as it was: the snapshot is simply not taken.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return last_errno();
  std::error_code ec = write_all(fd, {{bytes.data(), bytes.size()}}, 0);
  if (!ec) ec = fsync_fd(fd);
  ::close(fd);
  if (!ec && ::rename(tmp.c_str(), file.c_str()) != 0) ec = last_errno();
  if (ec) {
    ::unlink(tmp.c_str());
    return ec;
  }
  if (auto e = fsync_fd(dir_fd_)) return fail(e);  // the rename may or may not be there: stop writing

  wal::encode_op(wal::snapshot_mark{s.meta.index, s.meta.term}, pending_);
  apply_snapshot_rule(s.meta.index, s.meta.term);
  if (auto e = sync()) return e;

  if (!snapshot_file_.empty() && snapshot_file_ != file) ::unlink(snapshot_file_.c_str());
  snapshot_file_ = file;
  remove_covered();
  return {};
}

void storage::remove_covered() {
  // Segment k holds nothing past index first(k+1) - 1 that is still in the log: once that is in the snapshot, k goes.
  std::size_t n = 0;
  while (n + 1 < segments_.size() && segments_[n + 1].first_index <= base_index_ + 1) ++n;
  if (n == 0) return;
  for (std::size_t i = 0; i < n; ++i) ::unlink(segments_[i].path.c_str());
  segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(n));
  (void)fsync_fd(dir_fd_);  // not needed for safety: a segment that comes back only repeats what the next ones say
}

storage_stats storage::stats() const noexcept {
  storage_stats s = stats_;
  s.segments = segments_.size();
  return s;
}

}  // namespace cnode::raft
