#include "etf/atom.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <unordered_map>

namespace cnode::etf {
namespace {

// FNV-1a over the UTF-8 bytes: cheap for short names, good enough spread for the sharded table.
std::size_t hash_bytes(std::string_view s) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h ^ (h >> 29));
}

// Validates UTF-8 as the BEAM does for atoms (no overlongs, no surrogates, ≤ U+10FFFF); counts code points and
// whether all are < 256.
bool scan_utf8(std::string_view s, std::size_t& length, bool& latin1) noexcept {
  length = 0;
  latin1 = true;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    std::uint32_t c = *p;
    std::size_t n;
    if (c < 0x80) {
      n = 1;
    } else if ((c & 0xE0) == 0xC0) {
      n = 2;
      c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3;
      c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4;
      c &= 0x07;
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) < n) return false;
    for (std::size_t i = 1; i < n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      c = (c << 6) | (p[i] & 0x3F);
    }
    static constexpr std::uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min_for_len[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
    if (c >= 256) latin1 = false;
    ++length;
    p += n;
  }
  return true;
}

struct shard {
  std::mutex m;
  std::unordered_map<std::string_view, detail::atom_entry*> names;
};

struct table {
  static constexpr std::size_t shards = 64;
  std::array<shard, shards> s;
  std::atomic<std::size_t> count{0};
  std::atomic<std::size_t> limit{1u << 20};
  std::atomic<std::uint32_t> next_index{0};
};

table& the_table() {
  static table* t = new table;  // never destroyed: atoms outlive every static that may hold one
  return *t;
}

const detail::atom_entry* intern(std::string_view utf8, std::size_t h, std::size_t length, bool latin1,
                                 atom_status* status) noexcept {
  table& t = the_table();
  shard& sh = t.s[h % table::shards];
  std::lock_guard lock(sh.m);
  if (auto it = sh.names.find(utf8); it != sh.names.end()) return it->second;
  if (t.count.load(std::memory_order_relaxed) >= t.limit.load(std::memory_order_relaxed)) {
    if (status) *status = atom_status::table_full;
    return nullptr;
  }
  void* mem = ::operator new(sizeof(detail::atom_entry) + utf8.size(), std::nothrow);
  if (!mem) {
    if (status) *status = atom_status::table_full;
    return nullptr;
  }
  auto* e = static_cast<detail::atom_entry*>(mem);
  e->index = t.next_index.fetch_add(1, std::memory_order_relaxed);
  e->size = static_cast<std::uint16_t>(utf8.size());
  e->length = static_cast<std::uint16_t>(length);
  e->latin1 = latin1;
  e->hash = h;
  std::memcpy(e->text, utf8.data(), utf8.size());
  try {
    sh.names.emplace(e->view(), e);
  } catch (...) {
    ::operator delete(mem);
    if (status) *status = atom_status::table_full;
    return nullptr;
  }
  t.count.fetch_add(1, std::memory_order_relaxed);
  return e;
}

// A per-thread direct-mapped cache in front of the locked table: decoding the same atoms over and over (the common
// case on a distribution connection) takes no lock.
struct cache_slot {
  const detail::atom_entry* e = nullptr;
};
constexpr std::size_t cache_size = 1024;
thread_local std::array<cache_slot, cache_size> tl_cache;

const detail::atom_entry* lookup(std::string_view utf8, atom_status* status) noexcept {
  if (utf8.size() > atom::max_length * 4) {
    if (status) *status = atom_status::too_long;
    return nullptr;
  }
  const std::size_t h = hash_bytes(utf8);
  cache_slot& slot = tl_cache[h & (cache_size - 1)];
  if (slot.e && slot.e->hash == h && slot.e->view() == utf8) return slot.e;
  std::size_t length;
  bool latin1;
  if (!scan_utf8(utf8, length, latin1)) {
    if (status) *status = atom_status::invalid_utf8;
    return nullptr;
  }
  if (length > atom::max_length) {
    if (status) *status = atom_status::too_long;
    return nullptr;
  }
  const detail::atom_entry* e = intern(utf8, h, length, latin1, status);
  if (e) slot.e = e;
  return e;
}

const detail::atom_entry* must(std::string_view utf8) {
  atom_status st = atom_status::ok;
  const detail::atom_entry* e = lookup(utf8, &st);
  if (e) return e;
  if (st == atom_status::table_full) throw std::length_error("atom table full");
  throw std::invalid_argument(st == atom_status::too_long ? "atom longer than 255 characters"
                                                          : "atom is not valid UTF-8");
}

}  // namespace

atom::atom() noexcept : e_(nullptr) {
  static const detail::atom_entry* empty = must("");
  e_ = empty;
}

atom::atom(std::string_view utf8) : e_(must(utf8)) {}

std::optional<atom> atom::from_utf8(std::string_view utf8, atom_status* status) noexcept {
  if (const detail::atom_entry* e = lookup(utf8, status)) return atom(e);
  return std::nullopt;
}

std::optional<atom> atom::from_latin1(std::string_view latin1, atom_status* status) noexcept {
  bool ascii = true;
  for (unsigned char c : latin1) ascii &= c < 0x80;
  if (ascii) return from_utf8(latin1, status);
  if (latin1.size() > max_length) {
    if (status) *status = atom_status::too_long;
    return std::nullopt;
  }
  char buf[max_length * 2];
  std::size_t n = 0;
  for (unsigned char c : latin1) {
    if (c < 0x80) {
      buf[n++] = static_cast<char>(c);
    } else {
      buf[n++] = static_cast<char>(0xC0 | (c >> 6));
      buf[n++] = static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return from_utf8(std::string_view(buf, n), status);
}

std::optional<atom> atom::existing(std::string_view utf8) noexcept {
  table& t = the_table();
  shard& sh = t.s[hash_bytes(utf8) % table::shards];
  std::lock_guard lock(sh.m);
  if (auto it = sh.names.find(utf8); it != sh.names.end()) return atom(it->second);
  return std::nullopt;
}

std::strong_ordering operator<=>(atom a, atom b) noexcept {
  if (a.e_ == b.e_) return std::strong_ordering::equal;
  return a.text() <=> b.text();
}

void atom::set_limit(std::size_t max_atoms) noexcept { the_table().limit.store(max_atoms); }
std::size_t atom::count() noexcept { return the_table().count.load(); }
std::size_t atom::limit() noexcept { return the_table().limit.load(); }

atom atom::true_() noexcept {
  static const atom a(must("true"));
  return a;
}
atom atom::false_() noexcept {
  static const atom a(must("false"));
  return a;
}
atom atom::undefined() noexcept {
  static const atom a(must("undefined"));
  return a;
}
atom atom::ok() noexcept {
  static const atom a(must("ok"));
  return a;
}
atom atom::error() noexcept {
  static const atom a(must("error"));
  return a;
}
atom atom::nonode() noexcept {
  static const atom a(must("nonode@nohost"));
  return a;
}

}  // namespace cnode::etf
