#include "etf/atom.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <unordered_map>
#include <utility>

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

// Unreferenced dynamic atoms a shard keeps before freeing the oldest (64 shards: 2 048 in all).
constexpr std::size_t linger_per_shard = 32;

struct shard {
  std::mutex m;
  std::unordered_map<std::string_view, detail::atom_entry*> names;
  std::array<detail::atom_entry*, linger_per_shard> ring{};  // entries with lingering set, or nullptr
  std::size_t ring_next = 0;
};

struct table {
  static constexpr std::size_t shards = 64;
  std::array<shard, shards> s;
  std::atomic<std::size_t> count{0};
  std::atomic<std::size_t> dynamic{0};   // entries without the permanent bit
  std::atomic<std::size_t> promoted{0};  // dynamic entries made permanent by their uses (not by C++ code)
  std::atomic<std::size_t> limit{1u << 20};
};

table& the_table() {
  static table* t = new table;  // never destroyed: atoms outlive every static that may hold one
  return *t;
}

enum class origin { program, wire };

// Under sh.m: takes e (unreferenced, dynamic) out of the table and frees it.
void unlink(table& t, shard& sh, detail::atom_entry* e) noexcept {
  sh.names.erase(e->view());
  // After a flood the buckets would stay at the flood's size: shrink when an eighth of them is in use.
  if (sh.names.bucket_count() > 1024 && sh.names.size() * 8 < sh.names.bucket_count()) {
    try {
      sh.names.rehash(0);
    } catch (...) {
    }
  }
  t.count.fetch_sub(1, std::memory_order_relaxed);
  t.dynamic.fetch_sub(1, std::memory_order_relaxed);
  ::operator delete(e);
}

// Under sh.m: an entry leaves the ring; freed if still unreferenced (not looked up again, not made permanent).
void leave_ring(table& t, shard& sh, detail::atom_entry* e) noexcept {
  e->lingering = false;
  if (e->refs.load(std::memory_order_relaxed) == 0) unlink(t, sh, e);
}

// Under sh.m: frees every unreferenced atom of the shard's ring.
void flush_ring(table& t, shard& sh) noexcept {
  for (auto& slot : sh.ring) {
    if (slot) leave_ring(t, sh, std::exchange(slot, nullptr));
  }
}

// Sets the permanent bit; the one caller that sets it takes the entry off the dynamic count.
bool set_permanent(table& t, const detail::atom_entry* e) noexcept {
  if (e->refs.fetch_or(detail::atom_permanent, std::memory_order_relaxed) & detail::atom_permanent) return false;
  t.dynamic.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

// Lookups and the last reference of a dynamic atom meet under its shard's lock: a count goes from 1 to 0 only
// there, from 0 to 1 only there (a lookup that finds an unreferenced atom still lingering), and an entry is freed
// only there, at 0, so the table never hands out an entry that is being freed. Outside the lock a count only moves
// between values >= 1 (a holder copies or drops its handle).
const detail::atom_entry* intern(std::string_view utf8, std::size_t h, std::size_t length, bool latin1, origin o,
                                 atom_status* status) noexcept {
  table& t = the_table();
  shard& sh = t.s[h % table::shards];
  std::lock_guard lock(sh.m);
  if (auto it = sh.names.find(utf8); it != sh.names.end()) {
    detail::atom_entry* e = it->second;
    if (!e->permanent()) {
      if (o == origin::program) {
        set_permanent(t, e);
      } else if (e->uses < 255 && ++e->uses >= atom::promote_after_uses &&
                 t.promoted.load(std::memory_order_relaxed) < t.limit.load(std::memory_order_relaxed) / 4) {
        if (set_permanent(t, e)) t.promoted.fetch_add(1, std::memory_order_relaxed);
      } else {
        e->refs.fetch_add(1, std::memory_order_relaxed);  // the caller's
      }
    }
    return e;
  }
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
  new (&e->refs) std::atomic<std::uint32_t>(o == origin::program ? detail::atom_permanent : 1u);
  e->size = static_cast<std::uint16_t>(utf8.size());
  e->length = static_cast<std::uint16_t>(length);
  e->latin1 = latin1;
  e->uses = 0;
  e->lingering = false;
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
  if (o == origin::wire) t.dynamic.fetch_add(1, std::memory_order_relaxed);
  return e;
}

// A per-thread direct-mapped cache in front of the locked table: decoding the same atoms over and over (the common
// case on a distribution connection) takes no lock. It holds permanent atoms only (a dynamic one may be freed).
struct cache_slot {
  const detail::atom_entry* e = nullptr;
};
constexpr std::size_t cache_size = 1024;
thread_local std::array<cache_slot, cache_size> tl_cache;

// The entry for utf8; when it is dynamic, with a reference for the caller.
const detail::atom_entry* lookup(std::string_view utf8, origin o, atom_status* status) noexcept {
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
  atom_status st = atom_status::ok;
  const detail::atom_entry* e = intern(utf8, h, length, latin1, o, &st);
  if (!e && st == atom_status::table_full) {
    // Unreferenced atoms lingering in any shard make room (taken one shard at a time, no lock held here).
    atom::collect();
    e = intern(utf8, h, length, latin1, o, &st);
  }
  if (!e && status) *status = st;
  if (e && e->permanent()) slot.e = e;
  return e;
}

// Latin-1 text as UTF-8 in buf (at least max_length * 2 bytes); nullopt when too long.
std::optional<std::string_view> latin1_to_utf8(std::string_view latin1, char* buf, atom_status* status) noexcept {
  bool ascii = true;
  for (unsigned char c : latin1) ascii &= c < 0x80;
  if (ascii) return latin1;
  if (latin1.size() > atom::max_length) {
    if (status) *status = atom_status::too_long;
    return std::nullopt;
  }
  std::size_t n = 0;
  for (unsigned char c : latin1) {
    if (c < 0x80) {
      buf[n++] = static_cast<char>(c);
    } else {
      buf[n++] = static_cast<char>(0xC0 | (c >> 6));
      buf[n++] = static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return std::string_view(buf, n);
}

const detail::atom_entry* must(std::string_view utf8) {
  atom_status st = atom_status::ok;
  const detail::atom_entry* e = lookup(utf8, origin::program, &st);
  if (e) return e;
  if (st == atom_status::table_full) throw std::length_error("atom table full");
  throw std::invalid_argument(st == atom_status::too_long ? "atom longer than 255 characters"
                                                          : "atom is not valid UTF-8");
}

}  // namespace

namespace detail {

const atom_entry* intern_wire(std::string_view text, bool latin1_text, atom_status* status) noexcept {
  if (!latin1_text) return lookup(text, origin::wire, status);
  char buf[atom::max_length * 2];
  auto utf8 = latin1_to_utf8(text, buf, status);
  return utf8 ? lookup(*utf8, origin::wire, status) : nullptr;
}

void atom_release_dynamic(const atom_entry* e) noexcept {
  std::uint32_t old = e->refs.load(std::memory_order_relaxed);
  for (;;) {
    if (old & atom_permanent) return;
    if (old == 1) break;  // perhaps the last: decided under the lock
    if (e->refs.compare_exchange_weak(old, old - 1, std::memory_order_release, std::memory_order_relaxed)) return;
  }
  table& t = the_table();
  shard& sh = t.s[e->hash % table::shards];
  std::lock_guard lock(sh.m);
  // Not 1 any more: a lookup took a reference meanwhile, or the atom became permanent.
  if (e->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  auto* me = const_cast<atom_entry*>(e);
  if (me->lingering) return;  // still in the ring from an earlier time at zero
  // Unreferenced now: it lingers in the ring, and the oldest there goes (if nothing took it up again).
  me->lingering = true;
  atom_entry* oldest = std::exchange(sh.ring[sh.ring_next], me);
  sh.ring_next = (sh.ring_next + 1) % linger_per_shard;
  if (oldest) leave_ring(t, sh, oldest);
}

}  // namespace detail

atom::atom() noexcept : e_(nullptr) {
  static const detail::atom_entry* empty = must("");
  e_ = empty;
}

atom::atom(std::string_view utf8) : e_(must(utf8)) {}

std::optional<atom> atom::from_utf8(std::string_view utf8, atom_status* status) noexcept {
  if (const detail::atom_entry* e = lookup(utf8, origin::program, status)) return atom(e, adopt);
  return std::nullopt;
}

std::optional<atom> atom::from_latin1(std::string_view latin1, atom_status* status) noexcept {
  char buf[max_length * 2];
  auto utf8 = latin1_to_utf8(latin1, buf, status);
  if (!utf8) return std::nullopt;
  return from_utf8(*utf8, status);
}

std::optional<atom> atom::from_wire_utf8(std::string_view utf8, atom_status* status) noexcept {
  if (const detail::atom_entry* e = detail::intern_wire(utf8, false, status)) return atom(e, adopt);
  return std::nullopt;
}

std::optional<atom> atom::from_wire_latin1(std::string_view latin1, atom_status* status) noexcept {
  if (const detail::atom_entry* e = detail::intern_wire(latin1, true, status)) return atom(e, adopt);
  return std::nullopt;
}

std::optional<atom> atom::existing(std::string_view utf8) noexcept {
  table& t = the_table();
  shard& sh = t.s[hash_bytes(utf8) % table::shards];
  std::lock_guard lock(sh.m);
  if (auto it = sh.names.find(utf8); it != sh.names.end()) return from_entry(it->second);
  return std::nullopt;
}

void atom::make_permanent() const noexcept {
  if (!e_->permanent()) set_permanent(the_table(), e_);
}

std::strong_ordering operator<=>(const atom& a, const atom& b) noexcept {
  if (a.e_ == b.e_) return std::strong_ordering::equal;
  return a.text() <=> b.text();
}

void atom::collect() noexcept {
  table& t = the_table();
  for (shard& sh : t.s) {
    std::lock_guard lock(sh.m);
    flush_ring(t, sh);
  }
}

void atom::set_limit(std::size_t max_atoms) noexcept { the_table().limit.store(max_atoms); }
std::size_t atom::count() noexcept { return the_table().count.load(); }
std::size_t atom::dynamic_count() noexcept { return the_table().dynamic.load(); }
std::size_t atom::limit() noexcept { return the_table().limit.load(); }

const atom& atom::true_() noexcept {
  static const atom a(must("true"), adopt);
  return a;
}
const atom& atom::false_() noexcept {
  static const atom a(must("false"), adopt);
  return a;
}
const atom& atom::undefined() noexcept {
  static const atom a(must("undefined"), adopt);
  return a;
}
const atom& atom::ok() noexcept {
  static const atom a(must("ok"), adopt);
  return a;
}
const atom& atom::error() noexcept {
  static const atom a(must("error"), adopt);
  return a;
}
const atom& atom::nonode() noexcept {
  static const atom a(must("nonode@nohost"), adopt);
  return a;
}

}  // namespace cnode::etf
