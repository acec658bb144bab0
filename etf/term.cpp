#include "etf/term.hpp"

#include "etf/buffer_pool.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <stdexcept>

namespace cnode::etf {
namespace detail {

// Every node is preceded by 8 bytes naming the arena block it was carved from, or null for a heap node. Nodes are
// 16-aligned (big_int needs it): the prefix sits at 8 mod 16, and sizes are multiples of 16.
struct arena_block {
  // Nodes of this block still alive, plus arena_bias while the arena may still carve from it.
  std::atomic<std::uint32_t> live;
  std::uint32_t size;  // bytes, header included
};
static_assert(sizeof(arena_block) == 8);
static_assert(std::is_trivially_destructible_v<binary_node>);  // destroy_terms frees one without destroying it
static_assert(alignof(big_node) <= 16 && alignof(fun_node) <= 16 && alignof(bytes_node) <= 16 &&
              alignof(binary_node) <= 16 && alignof(list_node) <= 16);

namespace {
constexpr std::uint32_t arena_bias = 1u << 31;
constexpr std::size_t node_prefix = 8;
// Block sizes bound what a subterm kept alive can pin: at most one block, 64 KiB. The first block a decode starts
// is 4 KiB, then blocks double while the same decode fills them (arena_scope starts each decode over at 4 KiB and
// closes an open block larger than that), so a small term never shares a block larger than 4 KiB.
constexpr std::size_t arena_first = node_arena::first_block_size;
constexpr std::size_t arena_block_max = std::size_t{64} << 10;

// A few freed blocks kept per thread for the next decode: a stream of terms decoded and dropped on one thread (the
// usual case) then costs no allocation at all, for a term of a few KiB (one block) and for one of up to about
// 120 KiB of nodes. One block is kept per stage of the arena's growth (up to 4, 8, 16, 32 and 64 KiB: at most
// 124 KiB per thread), the larger one when two of a stage are freed.
constexpr std::size_t keep_stages = 5;
[[gnu::always_inline]] inline std::size_t keep_stage(std::size_t size) noexcept {
  return static_cast<std::size_t>(std::bit_width((size - 1) >> 12));  // 0: up to 4 KiB, 1: up to 8 KiB, ...
}
struct block_keeper {
  arena_block* kept[keep_stages] = {};
  bool dead = false;
  // A kept block of at least `size` bytes (the one of its stage, or of a later one up to stage `last`), taken out;
  // nullptr if none.
  [[gnu::always_inline]] arena_block* take(std::size_t size, std::size_t last = keep_stages - 1) noexcept {
    for (std::size_t i = keep_stage(size); i <= last && i < keep_stages; ++i)
      if (arena_block* b = kept[i]; b && b->size >= size) {
        kept[i] = nullptr;
        return b;
      }
    return nullptr;
  }
  // b when it is not kept (for the caller to free), else the smaller block it replaced, or nullptr.
  arena_block* keep(arena_block* b) noexcept {
    const std::size_t i = keep_stage(b->size);
    if (dead || i >= keep_stages) return b;
    if (!kept[i] || kept[i]->size < b->size) std::swap(kept[i], b);
    return b;
  }
  ~block_keeper() {
    for (arena_block*& k : kept) ::operator delete(std::exchange(k, nullptr));
    dead = true;
  }
};
thread_local block_keeper tl_keeper;

void free_block(arena_block* b) noexcept {
  if (arena_block* f = tl_keeper.keep(b)) ::operator delete(f);
}

// Small heap nodes (the decoder's pids, ports and references; nodes made outside a decode) come from per-thread
// free lists of two size classes: a stream of messages each carrying a pid then costs no malloc and no free. The 8
// bytes before the null block pointer say which class a node is of (0: none); a node is put on the list of the
// thread that frees it, which keeps at most small_keep of each class. Two classes, so that a pid or a port (48
// bytes, prefix included: malloc's 64) does not take a reference's room (64: malloc's 80); every idle process
// holds its own pid, and usually another (a parent's, a caller's).
constexpr std::size_t small_class_bytes[] = {48, 64};  // prefix included: pid_node and port_node; ref_node
static_assert(node_prefix + sizeof(pid_node) <= small_class_bytes[0] &&
              node_prefix + sizeof(port_node) <= small_class_bytes[0] &&
              node_prefix + sizeof(ref_node) <= small_class_bytes[1]);
constexpr std::size_t small_keep = 256;
struct small_list {
  void* head = nullptr;
  std::size_t count = 0;
  bool dead = false;
  ~small_list() {
    while (head) {
      void* next = *static_cast<void**>(head);
      ::operator delete(head);
      head = next;
    }
    count = 0;
    dead = true;
  }
};
thread_local small_list tl_small[2];

void* heap_node(std::size_t bytes) {
  char* m;
  std::uintptr_t cls = 0;
  if (bytes <= small_class_bytes[1]) {
    const std::size_t c = bytes <= small_class_bytes[0] ? 0 : 1;
    small_list& l = tl_small[c];
    if (l.head) {
      m = static_cast<char*>(l.head);
      l.head = *static_cast<void**>(l.head);
      --l.count;
    } else {
      m = static_cast<char*>(::operator new(small_class_bytes[c] + 8));
    }
    cls = c + 1;
  } else {
    m = static_cast<char*>(::operator new(bytes + 8));
  }
  *reinterpret_cast<std::uintptr_t*>(m) = cls;
  *reinterpret_cast<arena_block**>(m + 8) = nullptr;
  return m + 16;
}

void free_heap_node(char* m) noexcept {
  if (const std::uintptr_t cls = *reinterpret_cast<std::uintptr_t*>(m); cls != 0) {
    small_list& l = tl_small[cls - 1];
    if (!l.dead && l.count < small_keep) {
      *reinterpret_cast<void**>(m) = l.head;
      l.head = m;
      ++l.count;
      return;
    }
  }
  ::operator delete(m);
}

}  // namespace

thread_local constinit node_arena tl_thread_arena;
thread_local constinit node_arena* tl_arena = nullptr;

namespace {
// Retires the thread's arena block when the thread ends; armed when the arena makes its first block.
struct arena_owner {
  bool armed = false;
  ~arena_owner() { tl_thread_arena.shut(); }
};
thread_local arena_owner tl_arena_owner;
}  // namespace

void node_arena::shut() noexcept {
  retire();
  dead_ = true;
}

// Takes the bias off the block less the nodes carved: what remains counts exactly the nodes still alive. Other
// threads may hold nodes of the block by now (terms decoded before the one being decoded have been handed out),
// so the count moves by an atomic read-modify-write.
void node_arena::retire() noexcept {
  if (!block_) return;
  const std::uint32_t drop = arena_bias - count_;
  if (block_->live.fetch_sub(drop, std::memory_order_acq_rel) == drop) free_block(block_);
  block_ = nullptr;
  block_size_ = 0;
  cur_ = end_ = nullptr;
  count_ = 0;
}

void* node_arena::allocate(std::size_t bytes) {
  if (static_cast<std::size_t>(end_ - cur_) < bytes) [[unlikely]] {
    if (bytes > arena_block_max / 4 || dead_) return heap_node(bytes);
    tl_arena_owner.armed = true;  // constructs the owner, whose destructor retires the block at the thread's end
    // The first block a decode needs is a first block (4 KiB, of the keeper's first stage: never a larger kept
    // one, which small terms carved after this decode would then share and pin), then blocks double.
    const bool first = next_size_ == 0;
    const std::size_t want = first ? arena_first : next_size_;
    std::size_t size = (std::max(want, bytes + sizeof(arena_block)) + 15) & ~std::size_t{15};
    retire();
    void* m = tl_keeper.take(size, first ? keep_stage(size) : keep_stages - 1);
    if (m)
      size = static_cast<arena_block*>(m)->size;
    else
      m = ::operator new(size);
    next_size_ = std::min(size * 2, arena_block_max);
    block_ = new (m) arena_block{{arena_bias}, static_cast<std::uint32_t>(size)};
    block_size_ = static_cast<std::uint32_t>(size);
    cur_ = static_cast<char*>(m) + sizeof(arena_block);
    end_ = static_cast<char*>(m) + size;
  }
  char* p = cur_;
  cur_ += bytes;
  ++count_;
  *reinterpret_cast<arena_block**>(p) = block_;
  return p + node_prefix;
}

void* allocate_node(std::size_t header, std::size_t trailing_bytes) {
  const std::size_t bytes = (node_prefix + header + trailing_bytes + 15) & ~std::size_t{15};
  if (node_arena* a = tl_arena) return a->allocate(bytes);
  return heap_node(bytes);
}

namespace {
// While a term is being torn down (release's drain), the nodes freed from one block are counted here and taken off
// its count in one atomic step when the drain moves to another block or ends.
thread_local bool tl_draining = false;
thread_local arena_block* tl_freed_block = nullptr;
thread_local std::uint32_t tl_freed_count = 0;

void settle_freed() noexcept {
  if (arena_block* b = tl_freed_block) {
    const std::uint32_t k = tl_freed_count;
    tl_freed_block = nullptr;
    tl_freed_count = 0;
    // A count of k is ours alone (the k nodes are the block's last ones, and we freed them; a block still open
    // in an arena carries its bias): no atomic read-modify-write, as in release.
    if (b->live.load(std::memory_order_acquire) == k || b->live.fetch_sub(k, std::memory_order_acq_rel) == k)
      free_block(b);
  }
}

// free_node while release's drain runs (all of destroy's calls): an arena node is counted against its block.
[[gnu::always_inline]] inline void free_node_draining(void* p) noexcept {
  char* base = static_cast<char*>(p) - node_prefix;
  arena_block* b = *reinterpret_cast<arena_block**>(base);
  if (!b) [[unlikely]] {
    free_heap_node(base - 8);
    return;
  }
  if (b != tl_freed_block) [[unlikely]] {
    settle_freed();
    tl_freed_block = b;
  }
  ++tl_freed_count;
}
}  // namespace

void free_node(void* p) noexcept {
  char* base = static_cast<char*>(p) - node_prefix;
  arena_block* b = *reinterpret_cast<arena_block**>(base);
  if (!b) {
    free_heap_node(base - 8);
  } else if (tl_draining) {
    free_node_draining(p);
  } else if (b->live.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    free_block(b);
  }
}

tuple_node* new_tuple_node(std::uint32_t arity) {
  void* mem = allocate_node(sizeof(tuple_node), sizeof(term) * arity);
  auto* n = new (mem) tuple_node(arity);
  term* e = n->elems();
  for (std::uint32_t i = 0; i < arity; ++i) new (e + i) term();
  return n;
}

list_node* new_list_node(std::uint32_t count, term tail) {
  void* mem = allocate_node(sizeof(list_node), sizeof(term) * count);
  auto* n = new (mem) list_node(count, std::move(tail));
  term* e = n->elems();
  for (std::uint32_t i = 0; i < count; ++i) new (e + i) term();
  return n;
}

map_node* new_map_node(std::uint32_t size) {
  void* mem = allocate_node(sizeof(map_node), sizeof(term) * 2 * std::size_t{size});
  auto* n = new (mem) map_node(size);
  term* e = n->keys();
  for (std::size_t i = 0; i < 2 * std::size_t{size}; ++i) new (e + i) term();
  return n;
}

namespace {

// Destroying a node releases its children; a child that reaches zero is queued rather than destroyed recursively,
// so arbitrarily deep terms are freed with constant stack.
thread_local std::vector<node*>* tl_pending = nullptr;
// Frees the thread's work list when the thread ends. A term released by a thread_local destructor that runs after
// this one makes a new list (freed by nobody: rare, and only at thread exit).
struct pending_owner {
  bool armed = false;
  ~pending_owner() {
    delete tl_pending;
    tl_pending = nullptr;
  }
};
thread_local pending_owner tl_pending_owner;

void destroy_terms(term* t, std::size_t n) noexcept;

void destroy(node* n) noexcept {
  switch (n->kind) {
    case node_kind::big:
      static_cast<big_node*>(n)->~big_node();
      break;
    case node_kind::tuple: {
      auto* t = static_cast<tuple_node*>(n);
      if (!t->leaf_elems) destroy_terms(t->elems(), t->arity);
      t->~tuple_node();
      break;
    }
    case node_kind::list: {
      auto* l = static_cast<list_node*>(n);
      if (!l->leaf_elems) destroy_terms(l->elems(), l->count);
      l->~list_node();
      break;
    }
    case node_kind::map: {
      auto* m = static_cast<map_node*>(n);
      if (!m->leaf_elems) destroy_terms(m->keys(), 2 * std::size_t{m->size});
      m->~map_node();
      break;
    }
    case node_kind::binary: {
      auto* b = static_cast<binary_node*>(n);
      if (b->owner) release(b->owner);
      b->~binary_node();
      break;
    }
    case node_kind::bytes: {
      auto* b = static_cast<bytes_node*>(n);
      big_buffers().give(std::move(b->bytes));  // a big one is kept for the next big message
      b->~bytes_node();
      break;
    }
    case node_kind::pid:
      static_cast<pid_node*>(n)->~pid_node();
      break;
    case node_kind::port:
      static_cast<port_node*>(n)->~port_node();
      break;
    case node_kind::ref:
      static_cast<ref_node*>(n)->~ref_node();
      break;
    case node_kind::export_:
      static_cast<export_node*>(n)->~export_node();
      break;
    case node_kind::fun:
      static_cast<fun_node*>(n)->~fun_node();
      break;
  }
  free_node_draining(n);
}

// The elements of a node being destroyed, with release inlined: the drain is running (destroy is only called from
// release), so a leaf child is destroyed now and a compound child whose count reaches zero is queued, except that
// the children of the node being destroyed from the queue (Inner false) are taken apart at once, one level down
// (Inner true queues theirs): a tuple of leaves inside a list or a map then costs no trip through the queue, and the
// stack stays constant.
template <bool Inner>
void destroy_elems(term* t, std::size_t n) noexcept;

[[gnu::always_inline]] inline void destroy_child(node* c) noexcept {
  switch (c->kind) {
    case node_kind::tuple: {
      auto* x = static_cast<tuple_node*>(c);
      if (!x->leaf_elems) destroy_elems<true>(x->elems(), x->arity);
      break;
    }
    case node_kind::list: {
      auto* x = static_cast<list_node*>(c);
      if (!x->leaf_elems) destroy_elems<true>(x->elems(), x->count);
      x->~list_node();  // the tail: queued or destroyed like an element
      break;
    }
    default: {
      auto* x = static_cast<map_node*>(c);
      if (!x->leaf_elems) destroy_elems<true>(x->keys(), 2 * std::size_t{x->size});
      break;
    }
  }
  free_node_draining(c);
}

template <bool Inner>
void destroy_elems(term* t, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const term& x = t[i];
    if (node* c = x.boxed(); x.holds_node()) {
      if (c->refs.load(std::memory_order_acquire) != 1 && c->refs.fetch_sub(1, std::memory_order_acq_rel) != 1)
        continue;
      switch (c->kind) {
        case node_kind::tuple:
        case node_kind::list:
        case node_kind::map:
          if constexpr (Inner) {
            // A node of leaves (marked by the decoder: a string, [a, b, c], a list or tuple of integers) is freed
            // now, with nothing to look at but a list's tail; anything else waits in the queue.
            if (c->leaf_elems && (c->kind != node_kind::list || (!static_cast<list_node*>(c)->tail.holds_node() &&
                                                                 !static_cast<list_node*>(c)->tail.aux()))) {
              free_node_draining(c);
              break;
            }
            tl_pending->push_back(c);
          } else {
            destroy_child(c);
          }
          break;
        case node_kind::fun: tl_pending->push_back(c); break;
        case node_kind::binary:
          // The usual binary: its bytes inline, nothing to release (binary_node's destructor does nothing).
          if (!static_cast<binary_node*>(c)->owner) {
            free_node_draining(c);
            break;
          }
          destroy(c);
          break;
        default: destroy(c); break;
      }
    } else if (x.aux()) {
      atom_release(x.atom_value().entry());
    }
  }
}

void destroy_terms(term* t, std::size_t n) noexcept { destroy_elems<false>(t, n); }

// A small node that dies with its count at zero and whose elements are immediates holding no reference or inline
// binaries held by it alone, all carved from its own arena block (a small decoded term: `{get, <<"key">>, 42}`):
// freed at once, the block's count taken down by the node and its binaries in one step, without the drain (no
// destructor to run: tuple, list and map nodes and inline binary nodes are trivially destructible, and such
// elements need none). false, nothing done, for any other node.
constexpr std::size_t flat_max = 8;  // elements looked at, at most (a larger node of leaves is marked leaf_elems)
static_assert(std::is_trivially_destructible_v<tuple_node> && std::is_trivially_destructible_v<map_node>);
[[gnu::always_inline]] inline bool release_flat(node* n) noexcept {
  const term* t;
  std::size_t count;
  switch (n->kind) {
    case node_kind::tuple:
      t = static_cast<tuple_node*>(n)->elems();
      count = static_cast<tuple_node*>(n)->arity;
      break;
    case node_kind::map:
      t = static_cast<map_node*>(n)->keys();
      count = 2 * std::size_t{static_cast<map_node*>(n)->size};
      break;
    default: return false;
  }
  arena_block* const b = *reinterpret_cast<arena_block**>(reinterpret_cast<char*>(n) - node_prefix);
  if (!b) return false;
  std::uint32_t k = 1;
  if (!n->leaf_elems) {
    if (count > flat_max) return false;
    for (std::size_t i = 0; i < count; ++i) {
      const term& x = t[i];
      if (x.holds_node()) {
        node* c = x.boxed();
        if (c->kind != node_kind::binary || static_cast<binary_node*>(c)->owner ||
            *reinterpret_cast<arena_block**>(reinterpret_cast<char*>(c) - node_prefix) != b ||
            c->refs.load(std::memory_order_acquire) != 1)
          return false;
        ++k;
      } else if (x.aux()) {
        return false;  // a dynamic atom
      }
    }
  }
  // As settle_freed: a count of k is ours alone.
  if (b->live.load(std::memory_order_acquire) == k || b->live.fetch_sub(k, std::memory_order_acq_rel) == k)
    free_block(b);
  return true;
}

}  // namespace

void release(node* n) noexcept {
  // A count of 1 is ours alone (no other thread holds a reference to add to it): no atomic read-modify-write.
  if (n->refs.load(std::memory_order_acquire) != 1 && n->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (!tl_draining && release_flat(n)) return;
  if (tl_draining) {
    // A leaf releases at most the bytes it refers to (itself a leaf): destroyed now, without queueing.
    switch (n->kind) {
      case node_kind::tuple:
      case node_kind::list:
      case node_kind::map:
      case node_kind::fun: tl_pending->push_back(n); return;
      default: destroy(n); return;
    }
  }
  if (!tl_pending) {
    tl_pending = new std::vector<node*>();  // per thread, kept for the thread's life
    tl_pending_owner.armed = true;          // constructs the owner, whose destructor frees it
  }
  tl_draining = true;
  destroy(n);
  while (!tl_pending->empty()) {
    node* m = tl_pending->back();
    tl_pending->pop_back();
    destroy(m);
  }
  if (tl_pending->capacity() > 4096) std::vector<node*>().swap(*tl_pending);
  settle_freed();
  tl_draining = false;
}

}  // namespace detail

using detail::node;

std::string_view to_string(term_type t) noexcept {
  switch (t) {
    case term_type::integer: return "integer";
    case term_type::big_integer: return "big_integer";
    case term_type::float_: return "float";
    case term_type::atom: return "atom";
    case term_type::reference: return "reference";
    case term_type::fun: return "fun";
    case term_type::export_: return "export";
    case term_type::port: return "port";
    case term_type::pid: return "pid";
    case term_type::tuple: return "tuple";
    case term_type::map: return "map";
    case term_type::nil: return "nil";
    case term_type::list: return "list";
    case term_type::binary: return "bitstring";
  }
  return "?";
}

// ---- shared_bytes ----
shared_bytes::shared_bytes(std::vector<std::uint8_t> bytes) {
  void* mem = detail::allocate_node(sizeof(detail::bytes_node), 0);
  n_ = new (mem) detail::bytes_node(std::move(bytes));
}
shared_bytes shared_bytes::copy(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> v = big_buffers().take(bytes.size());
  v.insert(v.end(), bytes.begin(), bytes.end());
  return shared_bytes(std::move(v));
}
shared_bytes::shared_bytes(const shared_bytes& o) noexcept : n_(o.n_) {
  if (n_) detail::retain(n_);
}
shared_bytes::~shared_bytes() {
  if (n_) detail::release(n_);
}

bool operator==(const ref_value& a, const ref_value& b) noexcept {
  return a.node == b.node && a.creation == b.creation && a.len == b.len &&
         std::equal(a.ids, a.ids + a.len, b.ids);
}

bool operator==(const fun_value& a, const fun_value& b) noexcept {
  return a.arity == b.arity && std::memcmp(a.uniq, b.uniq, 16) == 0 && a.index == b.index && a.module == b.module &&
         exact_equal(a.old_index, b.old_index) && exact_equal(a.old_uniq, b.old_uniq) &&  // not pid: as =:=
         a.free_vars.size() == b.free_vars.size() &&
         std::equal(a.free_vars.begin(), a.free_vars.end(), b.free_vars.begin(), exact_equal);
}

// ---- construction ----
term term::from_big(big_int v) {
  if (v >= INT64_MIN && v <= INT64_MAX) return term(static_cast<std::int64_t>(v));
  void* mem = detail::allocate_node(sizeof(detail::big_node), 0);
  return term(term_type::big_integer, 0, new (mem) detail::big_node(std::move(v)));
}

big_int term::big() const {
  if (type_ == term_type::integer) return big_int(i_);
  assert(type_ == term_type::big_integer);
  return big_ref();
}

term term::tuple(std::span<const term> elems) {
  auto* n = detail::new_tuple_node(static_cast<std::uint32_t>(elems.size()));
  std::copy(elems.begin(), elems.end(), n->elems());
  return term(term_type::tuple, 0, n);
}

term term::tuple(std::vector<term>&& elems) {
  auto* n = detail::new_tuple_node(static_cast<std::uint32_t>(elems.size()));
  std::move(elems.begin(), elems.end(), n->elems());
  return term(term_type::tuple, 0, n);
}

term term::list(std::span<const term> elems) {
  if (elems.empty()) return term();
  auto* n = detail::new_list_node(static_cast<std::uint32_t>(elems.size()), term());
  std::copy(elems.begin(), elems.end(), n->elems());
  return term(term_type::list, 0, n);
}

term term::list(std::vector<term>&& elems) { return improper_list(std::move(elems), term()); }

term term::improper_list(std::vector<term>&& elems, term tail) {
  if (elems.empty()) return tail;
  auto* n = detail::new_list_node(static_cast<std::uint32_t>(elems.size()), std::move(tail));
  std::move(elems.begin(), elems.end(), n->elems());
  return term(term_type::list, 0, n);
}

term term::cons(term head, term tail) {
  auto* n = detail::new_list_node(1, std::move(tail));
  n->elems()[0] = std::move(head);
  return term(term_type::list, 0, n);
}

term term::string(std::string_view utf8) {
  std::vector<term> cps;
  cps.reserve(utf8.size());
  const auto* p = reinterpret_cast<const unsigned char*>(utf8.data());
  const auto* end = p + utf8.size();
  while (p < end) {
    std::uint32_t c = *p;
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    if (n > 1) c &= (0x7F >> n);
    for (int i = 1; i < n && p + i < end; ++i) c = (c << 6) | (p[i] & 0x3F);
    cps.emplace_back(static_cast<std::int64_t>(c));
    p += n;
  }
  return list(std::move(cps));
}

term term::map(std::vector<std::pair<term, term>>&& kvs) {
  // Stable sort so that among duplicate keys the last one given can be kept.
  std::stable_sort(kvs.begin(), kvs.end(),
                   [](const auto& a, const auto& b) { return compare_exact(a.first, b.first) < 0; });
  std::size_t out = 0;
  for (std::size_t i = 0; i < kvs.size(); ++i) {
    if (out > 0 && compare_exact(kvs[out - 1].first, kvs[i].first) == 0) {
      kvs[out - 1].second = std::move(kvs[i].second);
    } else {
      if (out != i) kvs[out] = std::move(kvs[i]);
      ++out;
    }
  }
  kvs.resize(out);
  auto* n = detail::new_map_node(static_cast<std::uint32_t>(out));
  for (std::size_t i = 0; i < out; ++i) {
    n->keys()[i] = std::move(kvs[i].first);
    n->values()[i] = std::move(kvs[i].second);
  }
  return term(term_type::map, 0, n);
}

term term::map(std::initializer_list<std::pair<term, term>> kvs) {
  return map(std::vector<std::pair<term, term>>(kvs));
}

term term::bitstring(std::span<const std::uint8_t> bytes, std::uint8_t last_bits) {
  if (last_bits < 1 || last_bits > 8) throw std::invalid_argument("bitstring: last_bits must be 1..8");
  void* mem = detail::allocate_node(sizeof(detail::binary_node), bytes.size());
  auto* n = new (mem) detail::binary_node(bytes.size(), nullptr, nullptr, bytes.empty() ? 8 : last_bits);
  if (!bytes.empty()) std::memcpy(n->inline_bytes(), bytes.data(), bytes.size());
  n->data = n->inline_bytes();
  if (last_bits != 8 && !bytes.empty()) {
    // Bits below the significant ones are zero, as the BEAM keeps them, so equal bitstrings have equal bytes.
    n->inline_bytes()[bytes.size() - 1] &= static_cast<std::uint8_t>(0xFF << (8 - last_bits));
  }
  return term(term_type::binary, 0, n);
}

term term::binary(std::span<const std::uint8_t> bytes) { return bitstring(bytes, 8); }
term term::binary(std::string_view bytes) {
  return bitstring({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}, 8);
}

term term::binary_ref(const shared_bytes& owner, std::size_t offset, std::size_t size, std::uint8_t last_bits) {
  if (offset > owner.size() || size > owner.size() - offset) throw std::out_of_range("binary_ref: out of range");
  if (size == 0) last_bits = 8;
  if (last_bits != 8) {
    // The last byte must be masked; copy instead of referring (rare: only bitstrings).
    return bitstring(owner.span().subspan(offset, size), last_bits);
  }
  detail::retain(owner.node());
  void* mem = detail::allocate_node(sizeof(detail::binary_node), 0);
  auto* n = new (mem) detail::binary_node(size, owner.data() + offset, owner.node(), 8);
  return term(term_type::binary, 0, n);
}

term term::pid(const struct pid_value& v) {
  void* mem = detail::allocate_node(sizeof(detail::pid_node), 0);
  return term(term_type::pid, 0, new (mem) detail::pid_node(v));
}
term term::port(const struct port_value& v) {
  void* mem = detail::allocate_node(sizeof(detail::port_node), 0);
  return term(term_type::port, 0, new (mem) detail::port_node(v));
}
term term::reference(const struct ref_value& v) {
  if (v.len < 1 || v.len > ref_value::max_words) throw std::invalid_argument("reference: 1..5 id words");
  void* mem = detail::allocate_node(sizeof(detail::ref_node), 0);
  return term(term_type::reference, 0, new (mem) detail::ref_node(v));
}
term term::export_(const struct export_value& v) {
  void* mem = detail::allocate_node(sizeof(detail::export_node), 0);
  return term(term_type::export_, 0, new (mem) detail::export_node(v));
}
term term::fun(struct fun_value&& v) {
  void* mem = detail::allocate_node(sizeof(detail::fun_node), 0);
  return term(term_type::fun, 0, new (mem) detail::fun_node(std::move(v)));
}

// ---- inspection ----
bool term::list_to_vector(std::vector<term>& out, term* tail_out) const {
  const term* cur = this;
  term hold;
  while (cur->is_cons()) {
    auto seg = cur->list_segment();
    out.insert(out.end(), seg.begin(), seg.end());
    hold = cur->list_segment_tail();
    cur = &hold;
  }
  if (tail_out) *tail_out = *cur;
  return cur->is_nil();
}

const term* term::map_find(const term& key) const noexcept {
  auto keys = map_keys();
  auto it = std::lower_bound(keys.begin(), keys.end(), key,
                             [](const term& a, const term& b) { return compare_exact(a, b) < 0; });
  if (it == keys.end() || compare_exact(*it, key) != 0) return nullptr;
  return &map_values()[static_cast<std::size_t>(it - keys.begin())];
}

atom term::node_of() const noexcept {
  switch (type_) {
    case term_type::pid: return as_pid().node;
    case term_type::port: return as_port().node;
    case term_type::reference: return as_ref().node;
    default: return atom::nonode();
  }
}

}  // namespace cnode::etf
