// ETF decoding. Iterative: compound terms push a frame and the loop fills their slots in order, so nesting depth
// costs heap, not native stack. Every length is checked against the bytes left before anything is allocated
// (each element takes at least one byte), and compressed data is inflated in steps, never past the limit.
#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <numeric>

#include <zlib.h>

#include "etf/codec.hpp"

namespace cnode::etf {
namespace {

constexpr std::size_t ref_binary_min = 64;  // binaries at least this large refer into a shared input buffer

struct frame {
  enum kind_t : std::uint8_t { tuple, list, map, fun } kind;
  bool tail_done = false;
  std::uint32_t next = 0;   // slot being filled
  std::uint32_t count = 0;  // elements (map: pairs)
  detail::node* n = nullptr;
  std::size_t start = 0;     // offset of the tag (map errors) or of the fun's Size field
  std::uint32_t fun_size = 0;
};

// The decoder's atom cache: direct-mapped, indexed by a hash of the length and the first and last 8 bytes.
constexpr std::size_t atom_slots = 512;
const detail::atom_entry*& atom_slot(std::string_view s) noexcept {
  thread_local const detail::atom_entry* slots[atom_slots] = {};
  std::uint64_t a = 0, b = 0;
  const std::size_t n = s.size();
  if (n >= 8) {
    std::memcpy(&a, s.data(), 8);
    std::memcpy(&b, s.data() + n - 8, 8);
  } else {
    for (std::size_t i = 0; i < n; ++i) a |= std::uint64_t{static_cast<unsigned char>(s[i])} << (8 * i);
  }
  const std::uint64_t h = (a ^ n) * 0x9E3779B97F4A7C15ull + b * 0xC2B2AE3D27D4EB4Full;
  return slots[h >> 55];  // top 9 bits: 512 slots
}

[[gnu::always_inline]] inline std::uint16_t be16(const std::uint8_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return std::endian::native == std::endian::little ? __builtin_bswap16(v) : v;
}
[[gnu::always_inline]] inline std::uint32_t be32(const std::uint8_t* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return std::endian::native == std::endian::little ? __builtin_bswap32(v) : v;
}
[[gnu::always_inline]] inline std::uint64_t be64(const std::uint8_t* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return std::endian::native == std::endian::little ? __builtin_bswap64(v) : v;
}

// memcpy for the short payloads of most binaries, without the call: two overlapping loads and stores.
[[gnu::always_inline]] inline void copy_small(std::uint8_t* d, const std::uint8_t* s, std::size_t n) noexcept {
  if (n >= 8 && n <= 16) {
    std::uint64_t a, b;
    std::memcpy(&a, s, 8);
    std::memcpy(&b, s + n - 8, 8);
    std::memcpy(d, &a, 8);
    std::memcpy(d + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    std::uint32_t a, b;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + n - 4, 4);
    std::memcpy(d, &a, 4);
    std::memcpy(d + n - 4, &b, 4);
  } else if (n < 4) {
    if (n != 0) {  // 1..3 bytes: the first, the middle and the last (some of them the same byte)
      d[0] = s[0];
      d[n / 2] = s[n / 2];
      d[n - 1] = s[n - 1];
    }
  } else {
    std::memcpy(d, s, n);
  }
}

// Every slot the decoder fills is filled once, by constructing the value in place (`new (&slot) term(make(...))`,
// initialised straight into the slot: no temporary to move or destroy). The slot holds [] (the root, a fun's free
// variables, the elements of a node after a compound one) or is raw memory of a node just made (a leaf run with
// Unfilled); neither needs destroying first.

// In front of that cache, one keyed by the atom's whole encoding (tag, length and text) when it is at most 16 bytes:
// two masked 8-byte loads and two compares find an atom a stream keeps sending. Permanent atoms only, like the
// cache behind it. Used where at least 16 bytes of input follow the tag (loads stay inside the input).
struct wire_atom_slot {
  std::uint64_t w0 = 0, w1 = 0;  // the encoding, zero past its end; w0 holds the tag, never 0 in a filled slot
  const detail::atom_entry* e = nullptr;
};
constexpr std::size_t wire_atom_slots = 512;
thread_local wire_atom_slot tl_wire_atoms[wire_atom_slots];
struct wire_mask {
  std::uint64_t m0, m1;
};
constexpr wire_mask wire_mask_for(std::size_t n) {
  return {n >= 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * n)) - 1,
          n >= 16 ? ~std::uint64_t{0} : n <= 8 ? 0 : (std::uint64_t{1} << (8 * (n - 8))) - 1};
}
constexpr auto wire_masks = [] {
  std::array<wire_mask, 17> m{};
  for (std::size_t n = 0; n <= 16; ++n) m[n] = wire_mask_for(n);
  return m;
}();
// The encoding's length (tag included) at p, or more than 16 when it does not fit a key.
[[gnu::always_inline]] inline std::size_t wire_atom_len(const std::uint8_t* p) noexcept {
  return (p[0] == tag::small_atom_utf8 || p[0] == tag::small_atom) ? 2 + std::size_t{p[1]}
                                                                    : 3 + ((std::size_t{p[1]} << 8) | p[2]);
}
[[gnu::always_inline]] inline wire_atom_slot& wire_slot(const std::uint8_t* p, std::size_t len, std::uint64_t& w0,
                                                        std::uint64_t& w1) noexcept {
  std::memcpy(&w0, p, 8);
  std::memcpy(&w1, p + 8, 8);
  w0 &= wire_masks[len].m0;
  w1 &= wire_masks[len].m1;
  return tl_wire_atoms[(w0 * 0x9E3779B97F4A7C15ull + w1 * 0xC2B2AE3D27D4EB4Full) >> 55];
}

// Short atom names: a loop beats a call to memcmp.
inline bool same_bytes(const char* a, const char* b, std::size_t n) noexcept {
  if (n > 16) return std::memcmp(a, b, n) == 0;
  unsigned diff = 0;
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

class decoder {
 public:
  decoder(std::span<const std::uint8_t> in, std::size_t pos, const decode_options& o, const shared_bytes* owner,
          detail::node_arena& arena)
      : p_(in.data()), size_(in.size()), pos_(pos), o_(o), owner_(owner), arena_(arena) {}
  // A nested decoder (COMPRESSED_EXT) ends while the outer one has no frame pushed: giving the stack back is safe.
  ~decoder() {
    if (stack_) detail::trim_scratch(*stack_);
  }
  decoder(const decoder&) = delete;
  decoder& operator=(const decoder&) = delete;

  bool run(term& root);
  std::size_t pos() const noexcept { return pos_; }
  error err() const noexcept { return err_; }
  std::size_t err_offset() const noexcept { return err_off_; }

 private:
  std::size_t left() const noexcept { return size_ - pos_; }
  std::uint8_t u8() noexcept { return p_[pos_++]; }
  [[gnu::always_inline]] std::uint16_t u16() noexcept {
    const std::uint16_t v = be16(p_ + pos_);
    pos_ += 2;
    return v;
  }
  [[gnu::always_inline]] std::uint32_t u32() noexcept {
    const std::uint32_t v = be32(p_ + pos_);
    pos_ += 4;
    return v;
  }
  [[gnu::always_inline]] std::uint64_t u64() noexcept {
    const std::uint64_t v = be64(p_ + pos_);
    pos_ += 8;
    return v;
  }
  bool fail(error e, std::size_t off) noexcept {
    err_ = e;
    err_off_ = off;
    return false;
  }
  bool need(std::size_t n) noexcept { return left() >= n || fail(error::truncated, size_); }
  // A length (in units of at least `unit` bytes each) that the input cannot hold: a length field that is negative
  // when read as signed can never be right (bad_length, at the field); otherwise the input was cut short.
  bool too_long(std::size_t n, std::size_t field_at) noexcept {
    return n > INT32_MAX ? fail(error::bad_length, field_at) : fail(error::truncated, size_);
  }

  [[gnu::always_inline]] bool read_one(term*& dest);  // once, in run: inlined there
  [[gnu::always_inline]] int leaf(term& out);
  // Leaves read one after the other into slot(0), slot(1), ... up to slot(n - 1), with the read position in a
  // local: the number read before the first element that is not a leaf (or whose bytes are not all there), or
  // SIZE_MAX when reading one failed.
  //
  // Unfilled: the n slots are raw memory of a node just made (not yet holding []); on any way out of the run
  // (a compound element, a failure, an exception) the slots not read are constructed as [] before anything else can
  // happen, so a node in the tree always has every slot constructed, and a node of leaves alone is written once.
  // With Unfilled, a run that reads every slot and meets no node and no dynamic atom marks `owner` leaf_elems.
  // fill(i, n), when given, constructs [] in slots i..n-1 (a map's keys and values as two plain runs).
  //
  // With Nest (a map's runs), a tuple, a list (LIST_EXT) or a STRING_EXT among the leaves is read in the run too
  // (compound_leaf), a tuple's or list's own elements by a run of leaves, when the depth allows it: no frame and no
  // trip through read_one for the values of a map of records. When that inner run stops before the end (a
  // compound element, an improper or missing tail), the run ends after the slot holding that node and leaves its
  // frame in pend_frame_ and the slot to go on with in pend_dest_: the caller pushes its own frame (at that slot),
  // then that one. Tuples' and lists' own runs do not nest: their element loop stays as tight as it was.
  template <bool Unfilled = false, bool Nest = false, typename Slot, typename Fill = std::nullptr_t>
  [[gnu::always_inline]] std::size_t leaves(Slot slot, std::size_t n, detail::node* owner = nullptr,
                                            Fill fill = nullptr);
  template <bool Nest, typename Slot>
  [[gnu::always_inline]] bool leaves_core(Slot slot, std::size_t n, std::size_t& i, bool& holds,
                                          std::size_t depth_at);
  // A STRING_EXT, SMALL_TUPLE_EXT or LIST_EXT at offset at, for a run (out holds nothing yet): 0 when it is not read
  // that way (too deep, bytes missing, a LIST_EXT of no elements), nothing written; 1 read whole into out, pos_
  // after it; 2 written into out but not finished (pend_frame_, pend_dest_ set, pos_ where to go on); -1 written
  // into out, then failed. Out of line: the element loop of every run stays as tight as it was.
  [[gnu::noinline]] int compound_leaf(std::size_t at, term& out, std::size_t depth_at);
  // The frame a run left (see leaves), pushed; dest is where reading goes on.
  [[gnu::always_inline]] bool push_pending(term*& dest) {
    const frame inner = pend_frame_;
    dest = std::exchange(pend_dest_, nullptr);
    return push(inner);
  }
  [[gnu::always_inline]] void whole_binary(std::size_t n, term& out);
  bool read_atom(atom& out);
  // The atom after its tag (read, at offset at): its entry, with a reference owned by the caller when it is a
  // dynamic atom (term_access::adopt_atom, atom_access::assign take it over); nullptr when it fails.
  const detail::atom_entry* read_atom_body(std::uint8_t tag, std::size_t at);
  // The atom whose tag is at offset at when the wire-encoding cache has it (pos_ then after it), else nullptr.
  [[gnu::always_inline]] const detail::atom_entry* wire_atom(std::size_t at) noexcept {
    if (size_ - at < 16) return nullptr;
    const std::uint8_t* p = p_ + at;
    const std::size_t len = wire_atom_len(p);
    if (len > 16) return nullptr;
    std::uint64_t w0, w1;
    const wire_atom_slot& ws = wire_slot(p, len, w0, w1);
    if (ws.w0 != w0 || ws.w1 != w1) return nullptr;
    pos_ = at + len;
    return ws.e;
  }
  bool read_integer(term& out);  // SMALL_INTEGER_EXT / INTEGER_EXT / bigs (for fun fields)
  bool read_pid(term& out);
  bool read_big(std::uint8_t tag, term& out);
  bool read_compressed(term& out, std::size_t at);
  bool finish_map(frame& f);
  [[gnu::always_inline]] term* slot(frame& f) noexcept;
  // Nodes from the decoder's own arena with its fast path inline (no call, no thread-local lookup): what
  // detail::allocate_node and new_*_node do while the arena is open, elements constructed as [].
  [[gnu::always_inline]] void* node_mem(std::size_t header, std::size_t trailing_bytes) {
    const std::size_t bytes = (8 + header + trailing_bytes + 15) & ~std::size_t{15};
    if (void* m = arena_.try_allocate(bytes)) [[likely]]
      return m;
    return arena_.allocate(bytes);
  }
  // Nodes whose elements the caller constructs (a leaf run with Unfilled, or STRING_EXT's bytes) before anything
  // else can fail or throw.
  [[gnu::always_inline]] detail::tuple_node* new_tuple_unfilled(std::uint32_t n) {
    return new (node_mem(sizeof(detail::tuple_node), sizeof(term) * n)) detail::tuple_node(n);
  }
  [[gnu::always_inline]] detail::list_node* new_list_unfilled(std::uint32_t n) {
    return new (node_mem(sizeof(detail::list_node), sizeof(term) * n)) detail::list_node(n, term());
  }
  [[gnu::always_inline]] detail::map_node* new_map_unfilled(std::uint32_t n) {
    return new (node_mem(sizeof(detail::map_node), sizeof(term) * 2 * std::size_t{n})) detail::map_node(n);
  }

  const std::uint8_t* p_;
  std::size_t size_;
  std::size_t pos_;
  const decode_options& o_;
  const shared_bytes* owner_;
  detail::node_arena& arena_;
  // The frame stack is reused across decodes on a thread (no allocation per call). A nested decode (the inner term
  // of COMPRESSED_EXT) only happens before the outer one has pushed a frame, so sharing it is safe.
  static std::vector<frame>& frames() {
    thread_local std::vector<frame> f;
    return f;
  }
  // Taken on the first push (a term of leaves alone, the usual small term, pushes none and never looks it up).
  std::vector<frame>* stack_ = nullptr;
  frame* frames_ = nullptr;  // stack_'s data
  std::size_t cap_ = 0;      // stack_'s size (0 before the first push)
  std::size_t depth_ = 0;    // frames in use at the bottom of the stack (which only grows, so pushing is a store)
  [[gnu::always_inline]] bool push(const frame& f) {
    if (depth_ == cap_) [[unlikely]] {
      if (!grow()) return false;
    }
    frames_[depth_++] = f;
    return true;
  }
  [[gnu::noinline]] bool grow() {
    if (!stack_) stack_ = &frames();
    if (stack_->size() <= depth_) stack_->resize(std::max<std::size_t>(64, stack_->size() * 2));
    frames_ = stack_->data();
    cap_ = stack_->size();
    return true;
  }
  error err_ = error::ok;
  std::size_t err_off_ = 0;
  bool first_ = true;
  frame pend_frame_{};
  term* pend_dest_ = nullptr;
};

inline term* decoder::slot(frame& f) noexcept {
  switch (f.kind) {
    case frame::tuple: return static_cast<detail::tuple_node*>(f.n)->elems() + f.next;
    case frame::list: {
      auto* l = static_cast<detail::list_node*>(f.n);
      return f.tail_done ? &l->tail : l->elems() + f.next;
    }
    case frame::map: {
      auto* m = static_cast<detail::map_node*>(f.n);
      return (f.next & 1) ? m->values() + f.next / 2 : m->keys() + f.next / 2;
    }
    case frame::fun: return static_cast<detail::fun_node*>(f.n)->v.free_vars.data() + f.next;
  }
  return nullptr;
}

bool decoder::run(term& root) {
  term* dest = &root;
  for (;;) {
    if (!read_one(dest)) return false;
    while (!dest) {
      if (depth_ == 0) return true;
      frame& f = frames_[depth_ - 1];
      const std::uint32_t slots = f.kind == frame::map ? 2 * f.count : f.count;
      term* s;
      if (++f.next < slots) {
        // The elements after a compound one: leaves in a run, then the next compound one (or the end).
        std::size_t k;
        switch (f.kind) {
          case frame::tuple: {
            term* e = static_cast<detail::tuple_node*>(f.n)->elems() + f.next;
            k = leaves([e](std::size_t j) __attribute__((always_inline)) -> term& { return e[j]; }, slots - f.next);
            break;
          }
          case frame::list: {
            term* e = static_cast<detail::list_node*>(f.n)->elems() + f.next;
            k = leaves([e](std::size_t j) __attribute__((always_inline)) -> term& { return e[j]; }, slots - f.next);
            break;
          }
          case frame::map: {
            auto* m = static_cast<detail::map_node*>(f.n);
            term* const keys = m->keys();
            term* const values = m->values();
            const std::size_t from = f.next;
            k = leaves<false, true>(
                [=](std::size_t j) __attribute__((always_inline)) -> term& { return ((from + j) & 1) ? values[(from + j) / 2] : keys[(from + j) / 2]; },
                slots - f.next);
            break;
          }
          default: k = 0; break;
        }
        if (k == SIZE_MAX) return false;
        if (pend_dest_) [[unlikely]] {
          f.next += static_cast<std::uint32_t>(k) - 1;  // at the slot of the node the run left unfinished
          if (!push_pending(dest)) return false;
          break;
        }
        f.next += static_cast<std::uint32_t>(k);
        if (f.next < slots) {
          dest = slot(f);
          break;
        }
        --f.next;  // every element read: on to the end of the frame
        continue;
      } else if (f.kind == frame::list && !f.tail_done) {
        f.tail_done = true;
        s = slot(f);
      } else {
        if (f.kind == frame::map && !finish_map(f)) return false;
        if (f.kind == frame::fun && pos_ - f.start != f.fun_size) return fail(error::bad_fun, f.start);
        --depth_;
        continue;
      }
      // A leaf is read here and the frame moves on; anything else goes through read_one.
      const int r = leaf(*s);
      if (r < 0) return false;
      if (r == 0) dest = s;
    }
  }
}

// Byte strings in the order of memcmp, then shorter first, without a call for the short ones that map keys and
// atom names are: when the common length is 4..16 bytes, two overlapping big-endian loads per side (if the first
// words are equal, the second words' first difference is the strings' first difference).
[[gnu::always_inline]] inline int bytes_compare(const std::uint8_t* a, std::size_t na, const std::uint8_t* b,
                                                std::size_t nb) noexcept {
  const std::size_t n = std::min(na, nb);
  if (n >= 8 && n <= 16) {
    std::uint64_t x = be64(a), y = be64(b);
    if (x == y) {
      x = be64(a + n - 8);
      y = be64(b + n - 8);
    }
    if (x != y) return x < y ? -1 : 1;
  } else if (n >= 4 && n < 8) {
    std::uint32_t x = be32(a), y = be32(b);
    if (x == y) {
      x = be32(a + n - 4);
      y = be32(b + n - 4);
    }
    if (x != y) return x < y ? -1 : 1;
  } else if (n < 4) {
    for (std::size_t i = 0; i < n; ++i)
      if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  } else if (const int c = std::memcmp(a, b, n); c != 0) {
    return c;
  }
  return na < nb ? -1 : na > nb ? 1 : 0;
}

// compare_exact for the common map keys (binaries, atoms, small integers of the same kind), inline. Atoms order by
// their UTF-8 text as bytes, which is what atom's operator<=> does (and code point order).
inline int key_compare(const term& a, const term& b) noexcept {
  if (a.type() == b.type()) {
    switch (a.type()) {
      case term_type::binary:
        if (a.last_bits() == 8 && b.last_bits() == 8) {
          const auto x = a.bytes(), y = b.bytes();
          return bytes_compare(x.data(), x.size(), y.data(), y.size());
        }
        break;
      case term_type::atom: {
        const detail::atom_entry* x = a.atom_value().entry();
        const detail::atom_entry* y = b.atom_value().entry();
        if (x == y) return 0;
        return bytes_compare(reinterpret_cast<const std::uint8_t*>(x->text), x->size,
                             reinterpret_cast<const std::uint8_t*>(y->text), y->size);
      }
      case term_type::integer: return a.small() < b.small() ? -1 : a.small() > b.small() ? 1 : 0;
      default: break;
    }
  }
  return compare_exact(a, b);
}

bool decoder::finish_map(frame& f) {
  auto* m = static_cast<detail::map_node*>(f.n);
  const std::uint32_t n = m->size;
  term* k = m->keys();
  term* v = m->values();
  bool sorted = true;
  std::uint32_t i = 1;
  // Binary keys (the usual ones beside atoms) compare each key with the one before it, whose bytes are already
  // loaded; from the first key of another kind on, key_compare.
  if (n > 1 && k[0].type() == term_type::binary && k[0].last_bits() == 8) {
    const std::uint8_t* pd = static_cast<const detail::binary_node*>(k[0].boxed())->data;
    std::size_t ps = k[0].byte_size();
    for (; i < n; ++i) {
      const term& b = k[i];
      if (b.type() != term_type::binary || b.last_bits() != 8) break;
      const auto* bn = static_cast<const detail::binary_node*>(b.boxed());
      const std::uint8_t* d = bn->data;
      const std::size_t sz = bn->size;
      const int c = bytes_compare(pd, ps, d, sz);
      if (c == 0) return fail(error::bad_map, f.start);
      if (c > 0) sorted = false;
      pd = d;
      ps = sz;
    }
  }
  for (; i < n; ++i) {
    const int c = key_compare(k[i - 1], k[i]);
    if (c == 0) return fail(error::bad_map, f.start);
    if (c > 0) sorted = false;
  }
  if (sorted) return true;
  // Maps above 32 keys arrive in the BEAM's hash order: sort keys and values together.
  std::vector<std::uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  std::sort(idx.begin(), idx.end(), [k](std::uint32_t a, std::uint32_t b) { return compare_exact(k[a], k[b]) < 0; });
  std::vector<term> ks(n), vs(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    ks[i] = std::move(k[idx[i]]);
    vs[i] = std::move(v[idx[i]]);
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i > 0 && compare_exact(k[i - 1], ks[i]) == 0) return fail(error::bad_map, f.start);  // ks[i-1] moved
    k[i] = std::move(ks[i]);
    v[i] = std::move(vs[i]);
  }
  return true;
}

const detail::atom_entry* decoder::read_atom_body(std::uint8_t t, std::size_t at) {
  if (const detail::atom_entry* e = wire_atom(at)) return e;
  std::size_t len;
  switch (t) {
    case tag::atom:
    case tag::atom_utf8:
      if (!need(2)) return nullptr;
      len = u16();
      break;
    case tag::small_atom:
    case tag::small_atom_utf8:
      if (!need(1)) return nullptr;
      len = u8();
      break;
    case tag::atom_cache_ref: {
      if (!need(1)) return nullptr;
      std::size_t i = u8();
      if (i >= o_.atom_cache_refs.size()) {
        fail(error::atom_cache_miss, at);
        return nullptr;
      }
      const detail::atom_entry* e = o_.atom_cache_refs[i].entry();
      detail::atom_retain(e);
      return e;
    }
    default: fail(error::unknown_tag, at); return nullptr;
  }
  if (!need(len)) return nullptr;
  std::string_view text(reinterpret_cast<const char*>(p_ + pos_), len);
  pos_ += len;
  // The atoms of a stream repeat: a per-thread cache keyed by the bytes as they arrive finds them without hashing
  // every byte or converting Latin-1. A slot holds an existing atom whose UTF-8 text equals the bytes; for a Latin-1
  // tag that is the same atom only when the text is ASCII (size == length). Slots hold permanent atoms only (a
  // dynamic one is freed when its last holder goes), so a hit takes no reference.
  const bool utf8_tag = t == tag::atom_utf8 || t == tag::small_atom_utf8;
  const detail::atom_entry*& slot = atom_slot(text);
  if (const detail::atom_entry* e = slot; e && e->size == len && (utf8_tag || e->length == len) &&
                                          same_bytes(e->text, text.data(), len))
    return e;
  atom_status st = atom_status::ok;
  const detail::atom_entry* e = detail::intern_wire(text, !utf8_tag, &st);
  if (!e) {
    fail(st == atom_status::table_full ? error::atom_table_full : error::invalid_atom, at);
    return nullptr;
  }
  if ((utf8_tag || e->length == len) && e->permanent()) slot = e;
  if (e->permanent() && size_ - at >= 16 && pos_ - at <= 16) {
    std::uint64_t w0, w1;
    wire_atom_slot& ws = wire_slot(p_ + at, pos_ - at, w0, w1);
    ws = {w0, w1, e};
  }
  return e;
}

bool decoder::read_atom(atom& out) {
  if (!need(1)) return false;
  std::size_t at = pos_;
  const detail::atom_entry* e = read_atom_body(u8(), at);
  if (!e) return false;
  detail::atom_access::assign(out, e);
  return true;
}

bool decoder::read_big(std::uint8_t t, term& out) {
  std::size_t at = pos_ - 1;
  std::size_t n;
  if (t == tag::small_big) {
    if (!need(2)) return false;
    n = u8();
  } else {
    if (!need(5)) return false;
    n = u32();
  }
  const bool negative = u8() != 0;
  if (n > left()) return too_long(n, at + 1);
  const std::uint8_t* d = p_ + pos_;
  pos_ += n;
  std::size_t sig = n;
  while (sig > 0 && d[sig - 1] == 0) --sig;
  if (sig <= 8) {
    std::uint64_t mag = 0;
    for (std::size_t i = sig; i-- > 0;) mag = (mag << 8) | d[i];
    if (!negative && mag <= static_cast<std::uint64_t>(INT64_MAX)) {
      out = term(static_cast<std::int64_t>(mag));
      return true;
    }
    if (negative && mag <= static_cast<std::uint64_t>(INT64_MAX) + 1) {
      out = term(static_cast<std::int64_t>(0 - mag));
      return true;
    }
  }
  big_int v;
  boost::multiprecision::import_bits(v, d, d + sig, 8, false);
  if (negative) v = -v;
  out = term::from_big(std::move(v));
  return true;
}

bool decoder::read_integer(term& out) {
  if (!need(1)) return false;
  std::uint8_t t = u8();
  switch (t) {
    case tag::small_integer:
      if (!need(1)) return false;
      out = term(std::int64_t{u8()});
      return true;
    case tag::integer:
      if (!need(4)) return false;
      out = term(std::int64_t{static_cast<std::int32_t>(u32())});
      return true;
    case tag::small_big:
    case tag::large_big: return read_big(t, out);
    default: return fail(error::bad_fun, pos_ - 1);
  }
}

bool decoder::read_pid(term& out) {
  if (!need(1)) return false;
  std::size_t at = pos_;
  std::uint8_t t = u8();
  if (t != tag::new_pid && t != tag::pid) return fail(error::bad_fun, at);
  pid_value v;
  if (!read_atom(v.node) || !need(t == tag::new_pid ? 12 : 9)) return false;
  v.id = u32();
  v.serial = u32();
  v.creation = t == tag::new_pid ? u32() : u8();
  out = detail::outside_arena([&] { return term::pid(v); });
  return true;
}

bool decoder::read_compressed(term& out, std::size_t at) {
  if (!need(4)) return false;
  const std::size_t announced = u32();
  if (announced > o_.max_inflated_size) return fail(error::compressed_too_large, at);
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return fail(error::bad_compression, at);
  std::vector<std::uint8_t> buf(std::min<std::size_t>(announced, std::size_t{64} << 10));
  zs.next_in = const_cast<Bytef*>(p_ + pos_);
  zs.avail_in = static_cast<uInt>(std::min<std::size_t>(left(), UINT32_MAX));
  std::size_t produced = 0;
  int rc = Z_OK;
  for (;;) {
    if (produced == buf.size()) {
      if (buf.size() == announced) {
        // Full: the stream must end now; one more byte of output would be too much.
        std::uint8_t extra;
        zs.next_out = &extra;
        zs.avail_out = 1;
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_STREAM_END || zs.avail_out == 0) rc = Z_DATA_ERROR;
        break;
      }
      buf.resize(std::min(announced, buf.size() * 2));
    }
    zs.next_out = buf.data() + produced;
    zs.avail_out = static_cast<uInt>(buf.size() - produced);
    rc = inflate(&zs, Z_NO_FLUSH);
    produced = buf.size() - zs.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK) break;
  }
  const std::size_t consumed = zs.total_in;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || produced != announced) return fail(error::bad_compression, at);
  pos_ += consumed;
  // binary_to_term refuses a compressed term inside a compressed term.
  if (!buf.empty() && buf[0] == tag::compressed) return fail(error::unknown_tag, 0);
  shared_bytes inner(std::move(buf));
  decode_options io = o_;
  io.expect_version = false;
  decode_result r = decode_prefix(inner, 0, io);
  if (!r) return fail(static_cast<error>(r.ec.value()), r.offset);  // offset is within the inflated data
  if (r.offset != announced) return fail(error::trailing_bytes, r.offset);
  out = std::move(r.value);
  return true;
}

// A BINARY_EXT body of n bytes (n checked against the input) at pos_, copied (or referred to when large).
inline void decoder::whole_binary(std::size_t n, term& out) {
  if (owner_ && n >= ref_binary_min) {
    new (&out) term(term::binary_ref(*owner_, pos_, n));
    return;
  }
  void* mem = node_mem(sizeof(detail::binary_node), n);
  auto* b = new (mem) detail::binary_node(n, nullptr, nullptr, 8);
  copy_small(b->inline_bytes(), p_ + pos_, n);
  b->data = b->inline_bytes();
  new (&out) term(term_access::make(term_type::binary, 0, b));
}

// The elements of a tuple, list or map that are leaves (small integers, integers, atoms, [], floats, binaries) are
// read in a loop of their own, without a trip through the frame stack. 1: read into out; 0: not such a leaf, or
// its bytes are not all there (read_one then reads it and reports any error exactly as before); -1: failed.
inline int decoder::leaf(term& out) {
  if (pos_ >= size_) return 0;
  const std::uint8_t t = p_[pos_];
  switch (t) {
    case tag::small_integer:
      if (left() < 2) return 0;
      new (&out) term(term(std::int64_t{p_[pos_ + 1]}));
      pos_ += 2;
      return 1;
    case tag::integer:
      if (left() < 5) return 0;
      ++pos_;
      new (&out) term(term(std::int64_t{static_cast<std::int32_t>(u32())}));
      return 1;
    case tag::nil:
      ++pos_;
      new (&out) term(term());
      return 1;
    case tag::atom:
    case tag::small_atom:
    case tag::atom_utf8:
    case tag::small_atom_utf8: {
      const std::size_t at = pos_++;
      const detail::atom_entry* e = read_atom_body(t, at);
      if (!e) return -1;
      new (&out) term(term_access::adopt_atom(e));
      return 1;
    }
    case tag::new_float: {
      if (left() < 9) return 0;
      ++pos_;
      const double d = std::bit_cast<double>(u64());
      if (!std::isfinite(d)) {
        pos_ -= 9;
        return 0;
      }
      new (&out) term(term(d));
      return 1;
    }
    case tag::binary: {
      if (left() < 5) return 0;
      const std::size_t n = (std::size_t{p_[pos_ + 1]} << 24) | (std::size_t{p_[pos_ + 2]} << 16) |
                            (std::size_t{p_[pos_ + 3]} << 8) | std::size_t{p_[pos_ + 4]};
      if (n > left() - 5) return 0;
      pos_ += 5;
      whole_binary(n, out);
      pos_ += n;
      return 1;
    }
    default: return 0;
  }
}

template <bool Unfilled, bool Nest, typename Slot, typename Fill>
inline std::size_t decoder::leaves(Slot slot, std::size_t n, detail::node* owner, Fill fill) {
  // The frames above a compound element: this node's own frame is not pushed yet when it was just made (Unfilled).
  const std::size_t depth_at = Unfilled ? depth_ + 1 : depth_;
  std::size_t i = 0;
  bool holds = false;
  bool ok;
  if constexpr (Unfilled) {
    const auto fill_rest = [&]() __attribute__((always_inline)) {
      if constexpr (std::is_same_v<Fill, std::nullptr_t>) {
        for (std::size_t j = i; j < n; ++j) new (&slot(j)) term();
      } else {
        fill(i, n);
      }
    };
    try {
      ok = leaves_core<Nest>(slot, n, i, holds, depth_at);
    } catch (...) {
      fill_rest();
      throw;
    }
    fill_rest();
    if (ok && i == n && !holds) owner->leaf_elems = true;
  } else {
    ok = leaves_core<Nest>(slot, n, i, holds, depth_at);
  }
  return ok ? i : SIZE_MAX;
}

// The run itself: i counts the slots written (a slot is written by one noexcept construction, after everything
// that can fail or throw for it); false when reading one failed.
template <bool Nest, typename Slot>
inline bool decoder::leaves_core(Slot slot, std::size_t n, std::size_t& i, bool& holds, std::size_t depth_at) {
  const std::uint8_t* const base = p_;
  const std::uint8_t* const end = p_ + size_;
  const std::uint8_t* p = p_ + pos_;
  for (; i < n; ++i) {
    if (p == end) break;
    const std::size_t avail = static_cast<std::size_t>(end - p);
    term& out = slot(i);
    switch (*p) {
      case tag::small_integer:
        if (avail < 2) goto done;
        new (&out) term(std::int64_t{p[1]});
        p += 2;
        continue;
      case tag::integer:
        if (avail < 5) goto done;
        new (&out) term(std::int64_t{static_cast<std::int32_t>(be32(p + 1))});
        p += 5;
        continue;
      case tag::nil:
        new (&out) term();
        ++p;
        continue;
      case tag::atom:
      case tag::small_atom:
      case tag::atom_utf8:
      case tag::small_atom_utf8: {
        const std::uint8_t t = *p;
        const std::size_t at = static_cast<std::size_t>(p - base);
        if (const detail::atom_entry* e = wire_atom(at)) {
          new (&out) term(term_access::permanent_atom(e));
        } else {
          pos_ = at + 1;
          e = read_atom_body(t, at);
          if (!e) return false;
          new (&out) term(term_access::adopt_atom(e));
          holds |= out.aux() != 0;  // a dynamic atom: a reference to release
        }
        p = base + pos_;
        continue;
      }
      case tag::new_float: {
        if (avail < 9) goto done;
        const double d = std::bit_cast<double>(be64(p + 1));
        if (!std::isfinite(d)) goto done;
        new (&out) term(d);
        p += 9;
        continue;
      }
      case tag::binary: {
        if (avail < 5) goto done;
        const std::size_t len = be32(p + 1);
        if (len > avail - 5) goto done;
        pos_ = static_cast<std::size_t>(p - base) + 5;
        whole_binary(len, out);
        holds = true;
        p = base + pos_ + len;
        continue;
      }
      case tag::string:
      case tag::small_tuple:
      case tag::list:
        if constexpr (Nest) {
          const int r = compound_leaf(static_cast<std::size_t>(p - base), out, depth_at);
          if (r == 0) goto done;  // not read: read_one reads it (and reports what is wrong with it)
          holds = true;
          p = base + pos_;
          if (r == 1) continue;
          ++i;  // out is written
          if (r == 2) goto done;  // pend_frame_ and pend_dest_ say where to go on
          return false;
        } else {
          goto done;
        }
      default: goto done;
    }
  }
done:
  pos_ = static_cast<std::size_t>(p - base);
  return true;
}

int decoder::compound_leaf(std::size_t at, term& out, std::size_t depth_at) {
  const std::uint8_t* const p = p_ + at;
  const std::size_t avail = size_ - at;
  switch (*p) {
    case tag::string: {  // a list of small integers (no depth check, as in read_one)
      if (avail < 3) return 0;
      const std::size_t m = be16(p + 1);
      if (m > avail - 3) return 0;
      if (m == 0) {
        new (&out) term();
      } else {
        auto* l = new_list_unfilled(static_cast<std::uint32_t>(m));
        term* e = l->elems();
        for (std::size_t x = 0; x < m; ++x) new (e + x) term(std::int64_t{p[3 + x]});
        l->leaf_elems = true;
        new (&out) term(term_access::make(term_type::list, 0, l));
      }
      pos_ = at + 3 + m;
      return 1;
    }
    case tag::small_tuple: {
      if (avail < 2 || depth_at >= o_.max_depth) return 0;
      const std::size_t m = p[1];
      if (m > avail - 2) return 0;
      auto* tn = new_tuple_unfilled(static_cast<std::uint32_t>(m));
      pos_ = at + 2;
      term* e = tn->elems();
      std::size_t j;
      try {
        j = leaves<true>([e](std::size_t x) __attribute__((always_inline)) -> term& { return e[x]; }, m, tn);
      } catch (...) {
        detail::release(tn);  // its slots are all constructed
        throw;
      }
      new (&out) term(term_access::make(term_type::tuple, 0, tn));
      if (j == SIZE_MAX) return -1;
      if (j == m) return 1;
      pend_frame_ = {frame::tuple, false, static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(m), tn, at, 0};
      pend_dest_ = e + j;
      return 2;
    }
    case tag::list: {
      if (avail < 5 || depth_at >= o_.max_depth) return 0;
      const std::size_t m = be32(p + 1);
      if (m == 0 || m >= avail - 5) return 0;
      auto* ln = new_list_unfilled(static_cast<std::uint32_t>(m));
      pos_ = at + 5;
      term* e = ln->elems();
      std::size_t j;
      try {
        j = leaves<true>([e](std::size_t x) __attribute__((always_inline)) -> term& { return e[x]; }, m, ln);
      } catch (...) {
        detail::release(ln);
        throw;
      }
      new (&out) term(term_access::make(term_type::list, 0, ln));
      if (j == SIZE_MAX) return -1;
      if (j < m) {
        pend_frame_ = {frame::list, false, static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(m), ln, at, 0};
        pend_dest_ = e + j;
        return 2;
      }
      if (pos_ < size_ && p_[pos_] == tag::nil) {  // a proper list: its tail is the [] already there
        ++pos_;
        return 1;
      }
      pend_frame_ = {frame::list, true, static_cast<std::uint32_t>(m - 1), static_cast<std::uint32_t>(m), ln, at, 0};
      pend_dest_ = &ln->tail;
      return 2;
    }
    default: return 0;
  }
}

inline bool decoder::read_one(term*& dest) {
  for (;;) {
    if (!need(1)) return false;
    const std::size_t at = pos_;
    const std::uint8_t t = u8();
    const bool first = first_;
    first_ = false;
    switch (t) {
      case tag::small_integer:
        if (!need(1)) return false;
        new (dest) term(term(std::int64_t{u8()}));
        dest = nullptr;
        return true;
      case tag::integer:
        if (!need(4)) return false;
        new (dest) term(term(std::int64_t{static_cast<std::int32_t>(u32())}));
        dest = nullptr;
        return true;
      case tag::small_big:
      case tag::large_big:
        if (!read_big(t, *dest)) return false;
        dest = nullptr;
        return true;
      case tag::new_float: {
        if (!need(8)) return false;
        double d = std::bit_cast<double>(u64());
        if (!std::isfinite(d)) return fail(error::bad_float, at);
        new (dest) term(term(d));
        dest = nullptr;
        return true;
      }
      case tag::float_: {
        if (!need(31)) return false;
        const char* s = reinterpret_cast<const char*>(p_ + pos_);
        std::size_t n = 0;
        while (n < 31 && s[n] != '\0') ++n;
        std::size_t b = 0;
        while (b < n && s[b] == ' ') ++b;
        const char* first = s + b;
        if (b < n && s[b] == '+') ++first;
        double d = 0;
        auto [ptr, ec] = std::from_chars(first, s + n, d);
        if (ec != std::errc() || ptr != s + n || !std::isfinite(d)) return fail(error::bad_float, at);
        pos_ += 31;
        new (dest) term(term(d));
        dest = nullptr;
        return true;
      }
      case tag::atom:
      case tag::small_atom:
      case tag::atom_utf8:
      case tag::small_atom_utf8:
      case tag::atom_cache_ref: {
        const detail::atom_entry* e = read_atom_body(t, at);
        if (!e) return false;
        new (dest) term(term_access::adopt_atom(e));
        dest = nullptr;
        return true;
      }
      case tag::nil:
        new (dest) term(term());
        dest = nullptr;
        return true;
      case tag::string: {
        if (!need(2)) return false;
        std::size_t n = u16();
        if (!need(n)) return false;
        if (n == 0) {
          new (dest) term(term());
        } else {
          auto* l = new_list_unfilled(static_cast<std::uint32_t>(n));
          term* e = l->elems();
          for (std::size_t i = 0; i < n; ++i) new (e + i) term(std::int64_t{p_[pos_ + i]});
          l->leaf_elems = true;
          new (dest) term(term_access::make(term_type::list, 0, l));
        }
        pos_ += n;
        dest = nullptr;
        return true;
      }
      case tag::binary:
      case tag::bit_binary: {
        if (!need(t == tag::binary ? 4 : 5)) return false;
        std::size_t n = u32();
        std::uint8_t bits = 8;
        if (t == tag::bit_binary) {
          bits = u8();
          // A non-empty bitstring has 1..8 bits in its last byte; an empty one has 0.
          if (bits > 8 || (bits == 0) != (n == 0)) return fail(error::bad_bit_length, at + 5);
          if (n == 0) bits = 8;
        }
        if (n > left()) return too_long(n, at + 1);
        if (owner_ && n >= ref_binary_min && bits == 8) {
          new (dest) term(term::binary_ref(*owner_, pos_, n));
        } else if (bits == 8) {
          whole_binary(n, *dest);
        } else {
          new (dest) term(term::bitstring({p_ + pos_, n}, bits));
        }
        pos_ += n;
        dest = nullptr;
        return true;
      }
      case tag::new_pid:
      case tag::pid: {
        pid_value v;
        if (!read_atom(v.node) || !need(t == tag::new_pid ? 12 : 9)) return false;
        v.id = u32();
        v.serial = u32();
        v.creation = t == tag::new_pid ? u32() : u8();
        new (dest) term(detail::outside_arena([&] { return term::pid(v); }));
        dest = nullptr;
        return true;
      }
      case tag::new_port:
      case tag::port:
      case tag::v4_port: {
        port_value v;
        if (!read_atom(v.node) || !need(t == tag::v4_port ? 12 : t == tag::new_port ? 8 : 5)) return false;
        v.id = t == tag::v4_port ? u64() : u32();
        v.creation = t == tag::port ? u8() : u32();
        new (dest) term(detail::outside_arena([&] { return term::port(v); }));
        dest = nullptr;
        return true;
      }
      case tag::reference: {
        ref_value v;
        if (!read_atom(v.node) || !need(5)) return false;
        v.len = 1;
        v.ids[0] = u32();
        v.creation = u8();
        new (dest) term(detail::outside_arena([&] { return term::reference(v); }));
        dest = nullptr;
        return true;
      }
      case tag::new_reference:
      case tag::newer_reference: {
        if (!need(2)) return false;
        std::size_t n = u16();
        if (n < 1 || n > ref_value::max_words) return fail(error::bad_reference, at + 1);
        ref_value v;
        v.len = static_cast<std::uint8_t>(n);
        if (!read_atom(v.node) || !need((t == tag::newer_reference ? 4 : 1) + 4 * n)) return false;
        v.creation = t == tag::newer_reference ? u32() : u8();
        for (std::size_t i = 0; i < n; ++i) v.ids[i] = u32();
        new (dest) term(detail::outside_arena([&] { return term::reference(v); }));
        dest = nullptr;
        return true;
      }
      case tag::export_: {
        export_value v;
        if (!read_atom(v.module) || !read_atom(v.function)) return false;
        if (!need(2)) return false;
        if (u8() != tag::small_integer) return fail(error::bad_fun, pos_ - 1);
        v.arity = u8();
        new (dest) term(term::export_(v));
        dest = nullptr;
        return true;
      }
      case tag::small_tuple:
      case tag::large_tuple: {
        if (!need(t == tag::small_tuple ? 1 : 4)) return false;
        std::size_t n = t == tag::small_tuple ? u8() : u32();
        if (n > left()) return too_long(n, at + 1);
        // The depth is checked before the node is made: its slots are raw until the leaf run has been.
        if (n != 0 && depth_ >= o_.max_depth) return fail(error::too_deep, at);
        auto* tn = new_tuple_unfilled(static_cast<std::uint32_t>(n));
        new (dest) term(term_access::make(term_type::tuple, 0, tn));
        if (n == 0) {
          dest = nullptr;
          return true;
        }
        term* e = tn->elems();
        const std::size_t i = leaves<true>([e](std::size_t j) __attribute__((always_inline)) -> term& { return e[j]; }, n, tn);
        if (i == SIZE_MAX) return false;
        if (pend_dest_) [[unlikely]]
          return push({frame::tuple, false, static_cast<std::uint32_t>(i - 1), static_cast<std::uint32_t>(n), tn, at, 0}) &&
                 push_pending(dest);
        if (i == n) {
          dest = nullptr;
          return true;
        }
        if (!push({frame::tuple, false, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(n), tn, at, 0}))
          return false;
        dest = e + i;
        return true;
      }
      case tag::list: {
        if (!need(4)) return false;
        std::size_t n = u32();
        if (n >= left()) return too_long(n, at + 1);
        if (n == 0) continue;  // a LIST_EXT of no elements is just its tail
        if (depth_ >= o_.max_depth) return fail(error::too_deep, at);
        auto* ln = new_list_unfilled(static_cast<std::uint32_t>(n));
        new (dest) term(term_access::make(term_type::list, 0, ln));
        term* e = ln->elems();
        const std::size_t i = leaves<true>([e](std::size_t j) __attribute__((always_inline)) -> term& { return e[j]; }, n, ln);
        if (i == SIZE_MAX) return false;
        if (pend_dest_) [[unlikely]]
          return push({frame::list, false, static_cast<std::uint32_t>(i - 1), static_cast<std::uint32_t>(n), ln, at, 0}) &&
                 push_pending(dest);
        if (i == n) {  // every element read: the tail is next
          if (!push({frame::list, true, static_cast<std::uint32_t>(n - 1), static_cast<std::uint32_t>(n), ln, at, 0}))
            return false;
          dest = &ln->tail;
          return true;
        }
        if (!push({frame::list, false, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(n), ln, at, 0}))
          return false;
        dest = e + i;
        return true;
      }
      case tag::map: {
        if (!need(4)) return false;
        std::size_t n = u32();
        if (n > left() / 2) return too_long(n, at + 1);
        if (n != 0 && depth_ >= o_.max_depth) return fail(error::too_deep, at);
        auto* mn = new_map_unfilled(static_cast<std::uint32_t>(n));
        new (dest) term(term_access::make(term_type::map, 0, mn));
        if (n == 0) {
          dest = nullptr;
          return true;
        }
        term* k = mn->keys();
        term* v = mn->values();
        // slot: key j/2 when j is even, value j/2 when odd
        const std::size_t j = leaves<true, true>(
            [k, v](std::size_t j) __attribute__((always_inline)) -> term& { return (j & 1) ? v[j / 2] : k[j / 2]; },
            2 * n, mn, [k, v](std::size_t from, std::size_t to) __attribute__((always_inline)) {
              // slots from..to-1: the keys from slot (from + 1) / 2 on, the values from from / 2 on
              for (std::size_t x = (from + 1) / 2; x < to / 2; ++x) new (k + x) term();
              for (std::size_t x = from / 2; x < to / 2; ++x) new (v + x) term();
            });
        if (j == SIZE_MAX) return false;
        frame f{frame::map, false, static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(n), mn, at, 0};
        if (pend_dest_) [[unlikely]] {
          f.next = static_cast<std::uint32_t>(j - 1);
          return push(f) && push_pending(dest);
        }
        if (j == 2 * n) {
          if (!finish_map(f)) return false;
          dest = nullptr;
          return true;
        }
        if (!push(f)) return false;
        dest = (j & 1) ? v + j / 2 : k + j / 2;
        return true;
      }
      case tag::new_fun: {
        const std::size_t size_at = pos_;
        if (!need(4 + 1 + 16 + 4 + 4)) return false;
        fun_value v;
        const std::uint32_t fun_size = u32();
        v.arity = u8();
        std::memcpy(v.uniq, p_ + pos_, 16);
        pos_ += 16;
        v.index = u32();
        const std::size_t num_free = u32();
        if (fun_size > left() + 29) return too_long(fun_size, size_at);
        if (num_free > left()) return too_long(num_free, size_at + 25);
        if (!read_atom(v.module) || !read_integer(v.old_index) || !read_integer(v.old_uniq) || !read_pid(v.pid))
          return false;
        v.free_vars.resize(num_free);
        new (dest) term(term::fun(std::move(v)));
        detail::node* fn = term_access::node(*dest);
        if (num_free == 0) {
          if (pos_ - size_at != fun_size) return fail(error::bad_fun, size_at);
          dest = nullptr;
          return true;
        }
        if (depth_ >= o_.max_depth) return fail(error::too_deep, at);
        if (!push({frame::fun, false, 0, static_cast<std::uint32_t>(num_free), fn, size_at, fun_size})) return false;
        dest = static_cast<detail::fun_node*>(fn)->v.free_vars.data();
        return true;
      }
      case tag::compressed:
        if (!first) return fail(error::unknown_tag, at);  // only a whole term is compressed
        if (!read_compressed(*dest, at)) return false;
        dest = nullptr;
        return true;
      default: return fail(error::unknown_tag, at);
    }
  }
}

// The category of a default std::error_code, looked up once: a decode_result per term without the out-of-line call
// std::error_code() makes (the same value and category).
const std::error_category& no_error_category = std::system_category();

decode_result run_decoder(std::span<const std::uint8_t> in, std::size_t start, const decode_options& opts,
                          const shared_bytes* owner) {
  decode_result r{term(), std::error_code(0, no_error_category), 0};
  std::size_t pos = start;
  if (opts.expect_version) {
    if (pos >= in.size()) {
      r.ec = error::truncated;
      r.offset = in.size();
      return r;
    }
    if (in[pos] != version_magic) {
      r.ec = error::bad_version;
      r.offset = pos;
      return r;
    }
    ++pos;
  }
  // The nodes of the term come from the thread's arena: for a small term, the rest of the block the thread's
  // previous decode left open (no allocation, no set-up of a block).
  detail::arena_scope scope;
  decoder d(in, pos, opts, owner, scope.arena());
  if (!d.run(r.value)) {
    r.value = term();
    r.ec = d.err();
    r.offset = d.err_offset();
    return r;
  }
  r.offset = d.pos() - start;
  return r;
}

}  // namespace

decode_result decode_prefix(std::span<const std::uint8_t> bytes, const decode_options& opts) {
  return run_decoder(bytes, 0, opts, nullptr);
}

decode_result decode_prefix(const shared_bytes& buf, std::size_t start, const decode_options& opts) {
  return run_decoder(buf.span(), start, opts, &buf);
}

decode_result decode(std::span<const std::uint8_t> bytes, const decode_options& opts) {
  decode_result r = run_decoder(bytes, 0, opts, nullptr);
  if (r && r.offset != bytes.size()) {
    r.value = term();
    r.ec = error::trailing_bytes;
  }
  return r;
}

term decode_or_throw(std::span<const std::uint8_t> bytes, const decode_options& opts) {
  decode_result r = decode(bytes, opts);
  if (!r) throw std::system_error(r.ec, "at byte " + std::to_string(r.offset));
  return std::move(r.value);
}

}  // namespace cnode::etf
