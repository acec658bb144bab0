// ETF encoding in the forms OTP 25's term_to_binary writes. Iterative (an explicit stack of terms still to write),
// written through a per-thread chunk into the caller's buffer, which grows only by what is written: no allocation
// per term, and no cost for what the buffer already holds.
#include <bit>
#include <cstring>
#include <memory>
#include <type_traits>
#include <system_error>

#include <zlib.h>

#include "etf/codec.hpp"

namespace cnode::etf {
namespace {

class encoder {
 public:
  encoder(std::vector<std::uint8_t>& out, const encode_options& o)
      : out_(out), o_(o), stack_(work().stack), scratch_(work().scratch) {
    stack_.clear();
    scratch_.clear();
    std::uint8_t* b = chunk();
    cur_ = b;
    end_ = b + chunk_size;
  }
  ~encoder() {
    detail::trim_scratch(stack_);
    detail::trim_scratch(scratch_);
  }
  encoder(const encoder&) = delete;
  encoder& operator=(const encoder&) = delete;

  void run(const term& root);
  // Absolute position in out once everything written so far has been flushed.
  std::size_t pos() const noexcept { return out_.size() + static_cast<std::size_t>(cur_ - chunk()); }
  void finish() { flush(); }

 private:
  // Writes go to a per-thread chunk (uninitialised memory, never zero-filled) and are appended to out in one insert
  // when the chunk is full and at the end. out thus grows only by what is written, with std::vector's amortised
  // growth, and is never shrunk: encoding into a buffer that already holds earlier frames costs nothing for those.
  static constexpr std::size_t chunk_size = std::size_t{64} << 10;
  static std::uint8_t* chunk() noexcept {
    thread_local std::unique_ptr<std::uint8_t[]> c(new std::uint8_t[chunk_size]);
    return c.get();
  }
  void flush() {
    std::uint8_t* b = chunk();
    if (cur_ != b) out_.insert(out_.end(), b, cur_);
    cur_ = b;
  }
  std::uint8_t* take(std::size_t n) {
    if (static_cast<std::size_t>(end_ - cur_) >= n) [[likely]] {
      std::uint8_t* p = cur_;
      cur_ += n;
      return p;
    }
    return take_slow(n);
  }
  [[gnu::noinline]] std::uint8_t* take_slow(std::size_t n) {
    flush();
    if (n <= chunk_size) {
      std::uint8_t* p = cur_;
      cur_ += n;
      return p;
    }
    // Larger than a chunk (a big integer, a long string): written in place in out, zero-filled only where written.
    const std::size_t at = out_.size();
    out_.resize(at + n);
    return out_.data() + at;
  }
  // Bytes copied as they are (binary payloads): a large payload goes straight into out, copied once.
  void put_bytes(const std::uint8_t* d, std::size_t n) {
    if (static_cast<std::size_t>(end_ - cur_) >= n) {
      if (n) std::memcpy(cur_, d, n);
      cur_ += n;
      return;
    }
    flush();
    out_.insert(out_.end(), d, d + n);
  }
  std::uint8_t* at(std::size_t abs) noexcept {
    return abs >= out_.size() ? chunk() + (abs - out_.size()) : out_.data() + abs;
  }
  void put8(std::uint8_t v) { *take(1) = v; }
  static void be16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
  }
  static void be32(std::uint8_t* p, std::uint32_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
  }
  static void be64(std::uint8_t* p, std::uint64_t v) {
    be32(p, static_cast<std::uint32_t>(v >> 32));
    be32(p + 4, static_cast<std::uint32_t>(v));
  }
  void put32(std::uint32_t v) { be32(take(4), v); }

  void write_one(const term& t);
  bool write_immediate(const term& t);  // false, writing nothing, for a boxed term
  [[gnu::always_inline]] inline void write_small(std::int64_t v);
  void write_big(const big_int& v);
  void write_atom(const atom& a);
  void write_pid(const pid_value& p);

  struct item {
    const term* t;
    std::size_t patch_at;  // when t is null: patch a NEW_FUN_EXT Size field here
  };
  std::vector<std::uint8_t>& out_;
  std::uint8_t* cur_;
  std::uint8_t* end_;
  const encode_options& o_;
  // Work stacks reused across calls on a thread: encoding allocates nothing but the output.
  struct stacks {
    std::vector<item> stack;
    std::vector<const term*> scratch;
  };
  static stacks& work() {
    thread_local stacks s;
    return s;
  }
  std::vector<item>& stack_;
  std::vector<const term*>& scratch_;
  // Binaries left out of out (encode_options::externals), none while compressing.
  std::vector<external_binary>* ext_ =
      o_.external_min > 0 && o_.compression_level < 0 ? o_.externals : nullptr;
  std::size_t open_funs_ = 0;
  atom_ref_table* refs_ = o_.compression_level < 0 ? o_.atom_refs : nullptr;
};

inline void encoder::write_small(std::int64_t v) {
  if (v >= 0 && v <= 255) {
    std::uint8_t* p = take(2);
    p[0] = tag::small_integer;
    p[1] = static_cast<std::uint8_t>(v);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    std::uint8_t* p = take(5);
    p[0] = tag::integer;
    be32(p + 1, static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
  } else {
    std::uint64_t mag = v < 0 ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    const std::size_t n = (std::bit_width(mag) + 7) / 8;
    std::uint8_t* p = take(3 + n);
    p[0] = tag::small_big;
    p[1] = static_cast<std::uint8_t>(n);
    p[2] = v < 0 ? 1 : 0;
    for (std::size_t i = 0; i < n; ++i) p[3 + i] = static_cast<std::uint8_t>(mag >> (8 * i));
  }
}

void encoder::write_big(const big_int& v) {
  if constexpr (std::endian::native == std::endian::little) {
    // cpp_int is sign and magnitude, the magnitude as little-endian limbs: the bytes ETF wants, copied as they are.
    const auto& b = v.backend();
    const auto* limbs = b.limbs();
    std::size_t nl = b.size();
    while (nl > 1 && limbs[nl - 1] == 0) --nl;
    using limb = std::remove_cv_t<std::remove_pointer_t<decltype(limbs)>>;
    const std::size_t n = (nl - 1) * sizeof(limb) + (std::bit_width(limbs[nl - 1]) + 7) / 8;
    if (n > UINT32_MAX) throw std::system_error(error::not_encodable, "integer too large");
    std::uint8_t* p;
    if (n < 256) {
      p = take(3 + n);
      p[0] = tag::small_big;
      p[1] = static_cast<std::uint8_t>(n);
      p += 2;
    } else {
      p = take(6 + n);
      p[0] = tag::large_big;
      be32(p + 1, static_cast<std::uint32_t>(n));
      p += 5;
    }
    *p++ = v.sign() < 0 ? 1 : 0;
    std::memcpy(p, limbs, n);
    return;
  }
  const big_int mag = boost::multiprecision::abs(v);
  const std::size_t n = (boost::multiprecision::msb(mag) + 8) / 8;
  std::uint8_t* p;
  if (n < 256) {
    p = take(3 + n);
    p[0] = tag::small_big;
    p[1] = static_cast<std::uint8_t>(n);
    p += 2;
  } else {
    if (n > UINT32_MAX) throw std::system_error(error::not_encodable, "integer too large");
    p = take(6 + n);
    p[0] = tag::large_big;
    be32(p + 1, static_cast<std::uint32_t>(n));
    p += 5;
  }
  *p++ = v.sign() < 0 ? 1 : 0;
  std::uint8_t* end = boost::multiprecision::export_bits(mag, p, 8, false);
  std::memset(end, 0, static_cast<std::size_t>(p + n - end));
}

void encoder::write_atom(const atom& a) {
  if (refs_) {
    const int ix = refs_->ref_for(a);
    if (ix >= 0) {
      std::uint8_t* p = take(2);
      p[0] = tag::atom_cache_ref;
      p[1] = static_cast<std::uint8_t>(ix);
      return;
    }
  }
  const std::string_view s = a.text();
  if (!o_.utf8_atoms && a.latin1()) {
    std::uint8_t* p = take(3 + a.length());
    p[0] = tag::atom;
    be16(p + 1, static_cast<std::uint16_t>(a.length()));
    p += 3;
    if (s.size() == a.length()) {
      std::memcpy(p, s.data(), s.size());
    } else {
      for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
          *p++ = c;
        } else {
          *p++ = static_cast<std::uint8_t>(((c & 0x03) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F));
          ++i;
        }
      }
    }
    return;
  }
  if (s.size() <= 255) {
    std::uint8_t* p = take(2 + s.size());
    p[0] = tag::small_atom_utf8;
    p[1] = static_cast<std::uint8_t>(s.size());
    std::memcpy(p + 2, s.data(), s.size());
  } else {
    std::uint8_t* p = take(3 + s.size());
    p[0] = tag::atom_utf8;
    be16(p + 1, static_cast<std::uint16_t>(s.size()));
    std::memcpy(p + 3, s.data(), s.size());
  }
}

void encoder::write_pid(const pid_value& v) {
  put8(tag::new_pid);
  write_atom(v.node);
  std::uint8_t* p = take(12);
  be32(p, v.id);
  be32(p + 4, v.serial);
  be32(p + 8, v.creation);
}

bool encoder::write_immediate(const term& t) {
  switch (t.type()) {
    case term_type::integer: write_small(t.small()); return true;
    case term_type::atom: write_atom(t.atom_value()); return true;
    case term_type::nil: put8(tag::nil); return true;
    case term_type::float_: {
      std::uint8_t* p = take(9);
      p[0] = tag::new_float;
      be64(p + 1, std::bit_cast<std::uint64_t>(t.float_value()));
      return true;
    }
    default: return false;
  }
}

void encoder::write_one(const term& t) {
  switch (t.type()) {
    case term_type::integer: write_small(t.small()); return;
    case term_type::big_integer: write_big(t.big_ref()); return;
    case term_type::float_: {
      std::uint8_t* p = take(9);
      p[0] = tag::new_float;
      be64(p + 1, std::bit_cast<std::uint64_t>(t.float_value()));
      return;
    }
    case term_type::atom: write_atom(t.atom_value()); return;
    case term_type::nil: put8(tag::nil); return;
    case term_type::binary: {
      const auto bytes = t.bytes();
      if (bytes.size() > UINT32_MAX) throw std::system_error(error::not_encodable, "binary too large");
      const bool bits = t.last_bits() != 8;
      std::uint8_t* p = take(bits ? 6 : 5);
      p[0] = bits ? tag::bit_binary : tag::binary;
      be32(p + 1, static_cast<std::uint32_t>(bytes.size()));
      if (bits) p[5] = t.last_bits();
      if (ext_ && bytes.size() >= o_.external_min && open_funs_ == 0) {
        // Left out: the caller sends these bytes from the binary itself, at this position of out.
        ext_->push_back(external_binary{pos(), t});
        return;
      }
      put_bytes(bytes.data(), bytes.size());
      return;
    }
    case term_type::tuple: {
      const auto elems = t.elements();
      if (elems.size() <= 255) {
        std::uint8_t* p = take(2);
        p[0] = tag::small_tuple;
        p[1] = static_cast<std::uint8_t>(elems.size());
      } else {
        put8(tag::large_tuple);
        put32(static_cast<std::uint32_t>(elems.size()));
      }
      // Leading immediates are written now; from the first compound element on they wait on the stack.
      std::size_t first = 0;
      while (first < elems.size() && write_immediate(elems[first])) ++first;
      for (std::size_t i = elems.size(); i-- > first;) stack_.push_back({&elems[i], 0});
      return;
    }
    case term_type::map: {
      const auto keys = t.map_keys();
      const auto values = t.map_values();
      put8(tag::map);
      put32(static_cast<std::uint32_t>(keys.size()));
      for (std::size_t i = keys.size(); i-- > 0;) {
        stack_.push_back({&values[i], 0});
        stack_.push_back({&keys[i], 0});
      }
      return;
    }
    case term_type::list: {
      // Count the elements across segments, and see whether it is a string (STRING_EXT: a proper list of at most
      // 65535 integers 0..255).
      std::size_t count = 0;
      bool bytes = true;
      const term* cur = &t;
      while (cur->is_cons()) {
        for (const term& e : cur->list_segment()) {
          ++count;
          bytes = bytes && e.is_small() && e.small() >= 0 && e.small() <= 255;
        }
        cur = &cur->list_segment_tail();
      }
      if (bytes && cur->is_nil() && count <= 65535) {
        std::uint8_t* p = take(3 + count);
        p[0] = tag::string;
        be16(p + 1, static_cast<std::uint16_t>(count));
        p += 3;
        for (const term* c = &t; c->is_cons(); c = &c->list_segment_tail())
          for (const term& e : c->list_segment()) *p++ = static_cast<std::uint8_t>(e.small());
        return;
      }
      if (count > UINT32_MAX) throw std::system_error(error::not_encodable, "list too long");
      put8(tag::list);
      put32(static_cast<std::uint32_t>(count));
      // As for tuples: immediates up to the first compound element are written now, the rest (and the tail)
      // wait on the stack.
      const std::size_t base = scratch_.size();
      bool deferred = false;
      for (const term* c = &t; c->is_cons(); c = &c->list_segment_tail())
        for (const term& e : c->list_segment()) {
          if (!deferred && write_immediate(e)) continue;
          deferred = true;
          scratch_.push_back(&e);
        }
      if (!deferred && write_immediate(*cur)) return;
      stack_.push_back({cur, 0});
      for (std::size_t i = scratch_.size(); i-- > base;) stack_.push_back({scratch_[i], 0});
      scratch_.resize(base);
      return;
    }
    case term_type::pid: write_pid(t.as_pid()); return;
    case term_type::port: {
      const auto& v = t.as_port();
      // OTP 25 writes V4_PORT_EXT for ids past the old 28-bit port number range.
      const bool v4 = v.id > 0x0FFFFFFFu;
      put8(v4 ? tag::v4_port : tag::new_port);
      write_atom(v.node);
      std::uint8_t* p = take(v4 ? 12 : 8);
      if (v4) {
        be64(p, v.id);
        p += 8;
      } else {
        be32(p, static_cast<std::uint32_t>(v.id));
        p += 4;
      }
      be32(p, v.creation);
      return;
    }
    case term_type::reference: {
      const auto& v = t.as_ref();
      std::uint8_t* p = take(3);
      p[0] = tag::newer_reference;
      be16(p + 1, v.len);
      write_atom(v.node);
      p = take(4 + 4 * std::size_t{v.len});
      be32(p, v.creation);
      for (std::size_t i = 0; i < v.len; ++i) be32(p + 4 + 4 * i, v.ids[i]);
      return;
    }
    case term_type::export_: {
      const auto& v = t.as_export();
      put8(tag::export_);
      write_atom(v.module);
      write_atom(v.function);
      std::uint8_t* p = take(2);
      p[0] = tag::small_integer;
      p[1] = v.arity;
      return;
    }
    case term_type::fun: {
      const auto& v = t.as_fun();
      put8(tag::new_fun);
      const std::size_t size_at = pos();
      std::uint8_t* p = take(4 + 1 + 16 + 4 + 4);
      p[4] = v.arity;
      std::memcpy(p + 5, v.uniq, 16);
      be32(p + 21, v.index);
      be32(p + 25, static_cast<std::uint32_t>(v.free_vars.size()));
      write_atom(v.module);
      write_one(v.old_index);
      write_one(v.old_uniq);
      write_one(v.pid);
      stack_.push_back({nullptr, size_at});
      ++open_funs_;  // its Size counts every byte of the fun: nothing of it may be left out
      for (std::size_t i = v.free_vars.size(); i-- > 0;) stack_.push_back({&v.free_vars[i], 0});
      return;
    }
  }
}

void encoder::run(const term& root) {
  stack_.push_back({&root, 0});
  while (!stack_.empty()) {
    const item it = stack_.back();
    stack_.pop_back();
    if (it.t) {
      write_one(*it.t);
    } else {
      be32(at(it.patch_at), static_cast<std::uint32_t>(pos() - it.patch_at));
      --open_funs_;
    }
  }
}

void compress_in_place(std::vector<std::uint8_t>& out, std::size_t body_at, int level) {
  const std::size_t body_len = out.size() - body_at;
  if (body_len > UINT32_MAX) return;
  uLongf zlen = compressBound(static_cast<uLong>(body_len));
  std::vector<std::uint8_t> z(zlen);
  if (compress2(z.data(), &zlen, out.data() + body_at, static_cast<uLong>(body_len), level) != Z_OK) return;
  // term_to_binary keeps the uncompressed form unless compressing makes it smaller.
  if (zlen + 5 >= body_len) return;
  out.resize(body_at + 5 + zlen);
  out[body_at] = tag::compressed;
  const auto n = static_cast<std::uint32_t>(body_len);
  out[body_at + 1] = static_cast<std::uint8_t>(n >> 24);
  out[body_at + 2] = static_cast<std::uint8_t>(n >> 16);
  out[body_at + 3] = static_cast<std::uint8_t>(n >> 8);
  out[body_at + 4] = static_cast<std::uint8_t>(n);
  std::memcpy(out.data() + body_at + 5, z.data(), zlen);
}

}  // namespace

int atom_ref_table::ref_for(const atom& a) {
  const std::size_t slot = slot_of(a);
  const int ix = index_[slot];
  if (ix >= 0) return atoms_[static_cast<std::size_t>(ix)] == a ? ix : -1;  // the slot's first atom only
  if (atoms_.size() >= max_refs) return -1;
  const int n = static_cast<int>(atoms_.size());
  index_[slot] = static_cast<std::int16_t>(n);
  slots_.push_back(static_cast<std::uint16_t>(slot));
  atoms_.push_back(a);
  return n;
}

void atom_ref_table::clear() noexcept {
  for (auto s : slots_) index_[s] = -1;
  slots_.clear();
  atoms_.clear();
}

void encode(const term& t, std::vector<std::uint8_t>& out, const encode_options& opts) {
  if (opts.version) out.push_back(version_magic);
  const std::size_t body_at = out.size();
  encoder e(out, opts);
  e.run(t);
  e.finish();
  if (opts.compression_level >= 0) compress_in_place(out, body_at, std::min(opts.compression_level, 9));
}

std::vector<std::uint8_t> encode(const term& t, const encode_options& opts) {
  std::vector<std::uint8_t> out;
  out.reserve(256);
  encode(t, out, opts);
  return out;
}

}  // namespace cnode::etf
