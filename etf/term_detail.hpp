// Node layouts behind term. Included by term.hpp; not part of the public API.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace cnode::etf::detail {

enum class node_kind : std::uint8_t { big, tuple, list, map, binary, bytes, pid, port, ref, export_, fun };

struct alignas(8) node {
  std::atomic<std::uint32_t> refs{1};
  node_kind kind;
  // A tuple, list or map whose elements (a list's tail aside) are all immediates that hold no reference (integers,
  // floats, [], permanent atoms): destroying it skips them. Set by the decoder only; nothing writes the elements
  // of a node after it is made.
  bool leaf_elems = false;
  explicit node(node_kind k) noexcept : kind(k) {}
};
static_assert(sizeof(node) == 8);

inline void retain(node* n) noexcept { n->refs.fetch_add(1, std::memory_order_relaxed); }

struct big_node : node {
  big_int value;
  explicit big_node(big_int v) : node(node_kind::big), value(std::move(v)) {}
};

// Terms stored after a header: the header is padded to 8 bytes and terms are 8-aligned.
template <typename Header>
inline term* trailing_terms(Header* h) noexcept {
  return std::launder(reinterpret_cast<term*>(reinterpret_cast<char*>(h) + sizeof(Header)));
}
template <typename Header>
inline const term* trailing_terms(const Header* h) noexcept {
  return std::launder(reinterpret_cast<const term*>(reinterpret_cast<const char*>(h) + sizeof(Header)));
}

struct tuple_node : node {
  std::uint32_t arity;
  explicit tuple_node(std::uint32_t n) noexcept : node(node_kind::tuple), arity(n) {}
  term* elems() noexcept { return trailing_terms(this); }
  const term* elems() const noexcept { return trailing_terms(this); }
};

struct list_node : node {
  std::uint32_t count;  // elements stored here (≥ 1)
  term tail;            // what follows the last stored element: [] for a proper list
  list_node(std::uint32_t n, term t) noexcept : node(node_kind::list), count(n), tail(std::move(t)) {}
  term* elems() noexcept { return trailing_terms(this); }
  const term* elems() const noexcept { return trailing_terms(this); }
};

struct map_node : node {
  std::uint32_t size;  // keys[0..size) sorted in map key order, then values[0..size)
  explicit map_node(std::uint32_t n) noexcept : node(node_kind::map), size(n) {}
  term* keys() noexcept { return trailing_terms(this); }
  const term* keys() const noexcept { return trailing_terms(this); }
  term* values() noexcept { return trailing_terms(this) + size; }
  const term* values() const noexcept { return trailing_terms(this) + size; }
};

struct bytes_node : node {
  std::vector<std::uint8_t> bytes;
  explicit bytes_node(std::vector<std::uint8_t> b) noexcept : node(node_kind::bytes), bytes(std::move(b)) {}
};

struct binary_node : node {
  std::size_t size;
  const std::uint8_t* data;  // into owner's bytes, or into the inline bytes after this header
  node* owner;               // a bytes_node kept alive, or nullptr when the bytes are inline
  std::uint8_t last_bits;    // 1..8
  binary_node(std::size_t n, const std::uint8_t* d, node* o, std::uint8_t lb) noexcept
      : node(node_kind::binary), size(n), data(d), owner(o), last_bits(lb) {}
  std::uint8_t* inline_bytes() noexcept { return reinterpret_cast<std::uint8_t*>(this) + sizeof(binary_node); }
};

struct pid_node : node {
  pid_value v;
  explicit pid_node(const pid_value& p) noexcept : node(node_kind::pid), v(p) {}
};
struct port_node : node {
  port_value v;
  explicit port_node(const port_value& p) noexcept : node(node_kind::port), v(p) {}
};
struct ref_node : node {
  ref_value v;
  explicit ref_node(const ref_value& r) noexcept : node(node_kind::ref), v(r) {}
};
struct export_node : node {
  export_value v;
  explicit export_node(const export_value& e) noexcept : node(node_kind::export_), v(e) {}
};
struct fun_node : node {
  fun_value v;
  explicit fun_node(fun_value&& f) noexcept : node(node_kind::fun), v(std::move(f)) {}
};

// Allocation of nodes with trailing terms: the caller placement-constructs exactly `n` terms after the header.
// While a node_arena is open on the thread, nodes are carved from its blocks instead of the heap.
void* allocate_node(std::size_t header, std::size_t trailing_bytes);
void free_node(void* p) noexcept;

// A bump allocator for the nodes of decoded terms: a handful of blocks instead of one heap allocation per node.
// Every node still has its own reference count and is destroyed on its own; a block is freed when the last node
// carved from it is (so a subterm kept alive keeps its block, like a heap fragment in the BEAM). There is one per
// thread (thread_arena), open while an arena_scope is alive on the thread (scopes nest: the inner decode of a
// COMPRESSED_EXT carves on from the same block). Its block stays open between decodes: the next term on the thread
// is carved on from where the last one ended, so a stream of small terms costs no block set-up per term. A block
// carries a bias in its count while the arena may carve from it, taken off when it is full (or the thread ends).
struct arena_block;
class node_arena {
 public:
  constexpr node_arena() noexcept = default;
  node_arena(const node_arena&) = delete;
  node_arena& operator=(const node_arena&) = delete;
  void* allocate(std::size_t bytes);  // bytes: a multiple of 16, prefix included
  // allocate's fast path, inline for the decoder: nullptr when the current block has no room, and then allocate
  // does the rest.
  void* try_allocate(std::size_t bytes) noexcept {
    if (static_cast<std::size_t>(end_ - cur_) < bytes) return nullptr;
    char* p = cur_;
    cur_ += bytes;
    ++count_;
    *reinterpret_cast<arena_block**>(p) = block_;  // the node's prefix: its block
    return p + 8;
  }
  // A decode starts: the next block it needs is a first block again (4 KiB), however large the last one was; an
  // open block larger than a first block (the tail of a large term's decode) is closed, so that a small term carved
  // after a large one, and kept, pins a block no larger than a first block, as it did when each decode had its own.
  void begin() noexcept {
    next_size_ = 0;
    if (block_size_ > first_block_size) [[unlikely]]
      retire();
  }
  static constexpr std::uint32_t first_block_size = std::uint32_t{4} << 10;
  // At the thread's end: the block retired; what is allocated after that comes from the heap.
  void shut() noexcept;

 private:
  void retire() noexcept;
  arena_block* block_ = nullptr;
  char* cur_ = nullptr;
  char* end_ = nullptr;
  std::uint32_t count_ = 0;  // nodes carved from block_
  std::uint32_t block_size_ = 0;  // block_'s size (0: none)
  bool dead_ = false;
  std::size_t next_size_ = 0;  // the next block's size; 0: the first block's
};

// The thread's arena, and the arena allocate_node carves from (the thread's while a scope is open, else none).
extern thread_local constinit node_arena tl_thread_arena;
extern thread_local constinit node_arena* tl_arena;

// The thread's arena open for allocate_node (and the decoder) while this lives.
class arena_scope {
 public:
  arena_scope() noexcept : prev_(tl_arena) {
    tl_arena = &tl_thread_arena;
    tl_thread_arena.begin();
  }
  ~arena_scope() { tl_arena = prev_; }
  arena_scope(const arena_scope&) = delete;
  arena_scope& operator=(const arena_scope&) = delete;
  node_arena& arena() const noexcept { return tl_thread_arena; }

 private:
  node_arena* prev_;
};

// Nodes made while one is alive come from the heap even inside an open arena. The decoder makes pids, ports and
// references this way: they are what other layers keep in long-lived tables (links, monitors, groups, names) while
// the rest of the message goes, and on the heap one of them pins no arena block.
class arena_pause {
 public:
  arena_pause() noexcept : saved_(tl_arena) { tl_arena = nullptr; }
  ~arena_pause() { tl_arena = saved_; }
  arena_pause(const arena_pause&) = delete;
  arena_pause& operator=(const arena_pause&) = delete;

 private:
  node_arena* saved_;
};
template <typename Fn>
inline auto outside_arena(Fn&& fn) {
  arena_pause pause;
  return fn();
}

tuple_node* new_tuple_node(std::uint32_t arity);     // elements default-constructed ([])
list_node* new_list_node(std::uint32_t count, term tail);
map_node* new_map_node(std::uint32_t size);

// The per-thread scratch stacks (the decoder's frames, the encoder's work lists, the comparison's and the hash's)
// keep their capacity from one term to the next, up to scratch_keep_bytes each; a stack that an outsized term (a
// deep one: the depth limit is 16 M) grew past that is given back when that term is done, not kept for the thread's
// life. Regrowing it for the next outsized term costs less than the term itself (each frame stands for a node).
inline constexpr std::size_t scratch_keep_bytes = std::size_t{256} << 10;
template <typename Vec>
inline void trim_scratch(Vec& v) noexcept {
  if (v.capacity() * sizeof(typename Vec::value_type) > scratch_keep_bytes) Vec().swap(v);
}

}  // namespace cnode::etf::detail

namespace cnode::etf {

struct term_access {
  static term make(term_type t, std::uint32_t aux, detail::node* p) noexcept { return term(t, aux, p); }
  static detail::node* node(const term& t) noexcept { return t.p_; }
  // An atom term for an entry from detail::intern_wire, taking over its reference.
  static term adopt_atom(const detail::atom_entry* e) noexcept { return term(term::adopt_t{}, e); }
  // An atom term for an entry known to be permanent (no reference to take over).
  static term permanent_atom(const detail::atom_entry* e) noexcept { return term(term::permanent_t{}, e); }
};

// Inline: the decoder takes the span of its buffer once per term.
inline const std::uint8_t* shared_bytes::data() const noexcept {
  return n_ ? static_cast<const detail::bytes_node*>(n_)->bytes.data() : nullptr;
}
inline std::size_t shared_bytes::size() const noexcept {
  return n_ ? static_cast<const detail::bytes_node*>(n_)->bytes.size() : 0;
}

inline std::size_t term::tuple_size() const noexcept { return static_cast<const detail::tuple_node*>(p_)->arity; }
inline const term& term::element(std::size_t i) const noexcept {
  return static_cast<const detail::tuple_node*>(p_)->elems()[i];
}
inline std::span<const term> term::elements() const noexcept {
  auto* n = static_cast<const detail::tuple_node*>(p_);
  return {n->elems(), n->arity};
}
inline const term& term::head() const noexcept { return static_cast<const detail::list_node*>(p_)->elems()[aux_]; }
inline term term::tail() const noexcept {
  auto* n = static_cast<detail::list_node*>(p_);
  if (aux_ + 1 < n->count) {
    detail::retain(p_);
    return term(term_type::list, aux_ + 1, p_);
  }
  return n->tail;
}
inline std::span<const term> term::list_segment() const noexcept {
  auto* n = static_cast<const detail::list_node*>(p_);
  return {n->elems() + aux_, n->count - aux_};
}
inline const term& term::list_segment_tail() const noexcept { return static_cast<const detail::list_node*>(p_)->tail; }
inline std::size_t term::map_size() const noexcept { return static_cast<const detail::map_node*>(p_)->size; }
inline std::span<const term> term::map_keys() const noexcept {
  auto* n = static_cast<const detail::map_node*>(p_);
  return {n->keys(), n->size};
}
inline std::span<const term> term::map_values() const noexcept {
  auto* n = static_cast<const detail::map_node*>(p_);
  return {n->values(), n->size};
}
inline std::span<const std::uint8_t> term::bytes() const noexcept {
  auto* n = static_cast<const detail::binary_node*>(p_);
  return {n->data, n->size};
}
inline std::size_t term::byte_size() const noexcept { return static_cast<const detail::binary_node*>(p_)->size; }
inline std::uint8_t term::last_bits() const noexcept {
  return static_cast<const detail::binary_node*>(p_)->last_bits;
}
inline std::size_t term::bit_size() const noexcept {
  auto* n = static_cast<const detail::binary_node*>(p_);
  return n->size == 0 ? 0 : (n->size - 1) * 8 + n->last_bits;
}
inline const big_int& term::big_ref() const noexcept { return static_cast<const detail::big_node*>(p_)->value; }
inline const pid_value& term::as_pid() const noexcept { return static_cast<const detail::pid_node*>(p_)->v; }
inline const port_value& term::as_port() const noexcept { return static_cast<const detail::port_node*>(p_)->v; }
inline const ref_value& term::as_ref() const noexcept { return static_cast<const detail::ref_node*>(p_)->v; }
inline const export_value& term::as_export() const noexcept {
  return static_cast<const detail::export_node*>(p_)->v;
}
inline const fun_value& term::as_fun() const noexcept { return static_cast<const detail::fun_node*>(p_)->v; }

}  // namespace cnode::etf
