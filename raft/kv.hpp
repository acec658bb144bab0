// The replicated key-value state machine with locks and fencing tokens: commands are terms, applied in log order
// on every member, so every member holds the same state at the same index.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "etf/term.hpp"

namespace cnode::raft {

class kv_serializer;

struct lock_state {
  etf::term name;            // as the client gave it
  etf::term owner;           // the pid that holds it
  std::uint64_t token = 0;   // the Raft index of the grant: strictly increasing over every grant of the group
  std::int64_t ttl_ms = 0;
};

// A machine's whole state, apart from any machine: what a kv_loader builds and what kv_machine::replace hands back.
struct kv_state {
  std::map<etf::term, etf::term> data;  // keys in Erlang term order
  std::map<std::string, lock_state> locks;
  std::size_t entries() const noexcept { return data.size() + locks.size(); }
};

class kv_machine {
 public:
  struct result {
    etf::term reply;
    std::optional<etf::term> changed;  // the key whose value changed (for watches)
    std::optional<std::string> granted;  // a lock granted at this index (the leader then monitors and times it)
  };
  // Applies a committed command at `index`; the reply for its caller.
  //   {put, K, V} → ok; {delete, K} → ok; {cas, K, Expected, New} → ok | {error, {mismatch, Current}};
  //   {incr, K, By} → {ok, N} | {error, not_integer}; {get, K} → {ok, V} | not_found;
  //   {lock, Name, TtlMs, OwnerPid} → {ok, Token} | {error, held}; {unlock, Name, Token} → ok | {error, not_held};
  //   {'$release', Name, Token} (the leader's: a ttl ran out or the owner died) → ok | {error, not_held};
  //   {put_fenced, K, V, {Name, Token}} → ok | {error, stale_token}.
  result apply(const etf::term& command, std::uint64_t index);
  // {ok, V} | not_found, from this member's state.
  etf::term get(const etf::term& key) const;
  std::size_t size() const noexcept { return data_.size(); }
  const std::map<std::string, lock_state>& locks() const noexcept { return locks_; }
  // Whether a request from a client is a command this machine takes (else the service answers {error, badarg});
  // {lock, Name, Ttl} is taken here without its owner (the service adds the caller's pid).
  static bool is_command(const etf::term& request);
  // A lock name as the machine keys it (any term, printed canonically).
  static std::string lock_key(const etf::term& name);

  // The whole state as bytes (term_to_binary of {kv, Data, Locks}), and back; false (state untouched) on bytes
  // that are not such a state.
  std::string serialize() const;
  bool restore(const std::string& bytes);
  // Takes `s` as the whole state at once (O(1): the maps are moved) and returns the state it held, to be freed
  // (a kv_reaper frees it in steps). Serializers in flight keep the old state instead: then what is returned is
  // empty and they free it when they end (the group cancels its own before an install: that snapshot is older).
  kv_state replace(kv_state s);

  kv_machine() = default;
  // A copy holds the state only (no serializer follows it).
  kv_machine(const kv_machine& o) : data_(o.data_), locks_(o.locks_) {}
  kv_machine& operator=(const kv_machine& o);
  ~kv_machine();

 private:
  friend class kv_serializer;
  // Every change to data_ or locks_ goes through these, so a serializer in flight saves what it still needs first.
  void set(const etf::term& key, const etf::term& value);
  bool erase(const etf::term& key);
  void before_lock_write(const std::string& key);
  // Hands the state as it is to the serializers in flight (moved, not copied) before it is replaced or destroyed.
  void detach_serializers();
  std::map<etf::term, etf::term> data_;  // keys in Erlang term order
  std::map<std::string, lock_state> locks_;
  mutable std::vector<kv_serializer*> serializers_;  // in flight over this machine
};

namespace detail {
// One map as it was when a walk began, visited in key order a few entries at a time while the live map keeps
// changing. Capture is O(1): a key not yet visited saves its capture-time entry (or that it was absent) in a side
// table the first time it is about to change (before_write); a visit takes the side table's entry where there is
// one, else the live map's (a key unchanged since capture), and skips keys absent at capture. The walk holds no
// iterator between visits (a std::map erase invalidates the erased key's): each visit starts at the upper_bound of
// the last key visited. Cost: O(log n) for a write while a walk is in flight, O(log n + entries) per visit.
template <class Map>
class snapshot_walk {
 public:
  using key_type = typename Map::key_type;
  using entry = std::pair<key_type, typename Map::mapped_type>;

  explicit snapshot_walk(const Map& live) : live_(&live), size_(live.size()) {}
  std::size_t size() const noexcept { return size_; }  // entries at capture
  bool done() const noexcept { return done_; }

  void before_write(const key_type& key) {
    if (done_ || (cursor_ && !live_->key_comp()(*cursor_, key))) return;  // visited already (or passed)
    auto [at, fresh] = saved_.try_emplace(key);
    if (!fresh) return;  // its capture-time entry is saved already
    auto it = live_->find(key);
    if (it != live_->end()) at->second.emplace(it->first, it->second);
  }
  // The live map is gone (moved here): the walk goes on over it, unchanged from now on.
  void freeze(std::shared_ptr<const Map> m) {
    frozen_ = std::move(m);
    live_ = frozen_.get();
  }
  // Visits up to `budget` keys (emit(key, value) for those in the capture-time view), taking what it visited from
  // the budget; true once every key is visited.
  template <class F>
  bool visit(std::size_t& budget, F&& emit) {
    if (done_) return true;
    const auto comp = live_->key_comp();
    auto it = cursor_ ? live_->upper_bound(*cursor_) : live_->begin();
    auto s = saved_.begin();     // every saved key is past the cursor
    const key_type* last = nullptr;  // into a node of either map: no write happens during a visit
    while (budget > 0) {
      const bool in_live = it != live_->end(), in_saved = s != saved_.end();
      if (!in_live && !in_saved) {
        done_ = true;
        break;
      }
      if (in_saved && (!in_live || !comp(it->first, s->first))) {
        if (in_live && !comp(s->first, it->first)) ++it;  // the same key: the live value is a later one
        if (s->second) emit(s->second->first, s->second->second);
        last = &s->first;
        ++s;
      } else {
        emit(it->first, it->second);
        last = &it->first;
        ++it;
      }
      --budget;
    }
    if (last) cursor_ = *last;  // copied before its saved entry goes
    saved_.erase(saved_.begin(), s);
    if (done_) {
      saved_ = {};
      cursor_.reset();
    }
    return done_;
  }

 private:
  const Map* live_;
  std::shared_ptr<const Map> frozen_;
  std::size_t size_;
  std::optional<key_type> cursor_;  // the last key visited; none before the first
  std::map<key_type, std::optional<entry>, typename Map::key_compare> saved_;
  bool done_ = false;
};
}  // namespace detail

// serialize() in steps, with an O(1) capture: the serializer registers with the machine and walks its maps in key
// order (detail::snapshot_walk), so a state of any size costs the group process a few entries per step plus one
// side-table entry per key written meanwhile, never one pass over the whole state at once. The bytes are
// serialize()'s of the state when the serializer was made, whatever the machine does meanwhile (writes, deletes, a
// restore, its destruction: the old maps are then moved to the serializer). Locks are walked the same way (nothing
// but the clients bounds their number). Either of machine and serializer may be destroyed first.
class kv_serializer {
 public:
  explicit kv_serializer(const kv_machine& m);
  ~kv_serializer();
  kv_serializer(const kv_serializer&) = delete;
  kv_serializer& operator=(const kv_serializer&) = delete;
  // Encodes up to max_entries more entries; true once the bytes are complete.
  bool step(std::size_t max_entries);
  // The bytes, once step() has returned true.
  std::string take();

 private:
  friend class kv_machine;
  const kv_machine* machine_;  // null once done or detached (the machine's state replaced or destroyed)
  detail::snapshot_walk<std::map<etf::term, etf::term>> data_;
  detail::snapshot_walk<std::map<std::string, lock_state>> locks_;
  int phase_ = 0;  // 0: data, 1: locks, 2: done
  std::size_t visited_ = 0;   // entries visited so far (both maps)
  std::string out_;           // the bytes so far; take() moves it out
  std::vector<std::uint8_t> step_;  // one step's bytes, appended to out_ at its end
  void detach();
  bool encode(std::size_t& max_entries);  // into step_
  void append();
};

// restore() in steps: the bytes are decoded and loaded into a kv_state of the loader's own, up to max_entries
// entries a step, the machine untouched meanwhile; once done, take() gives the state (kv_machine::replace swaps it
// in). The bytes must stay alive and unchanged until the loader is done or destroyed (`keep` may hold them). A state
// as kv_serializer writes it ({kv, Data, Locks} with LIST_EXT or NIL_EXT lists) is decoded entry by entry; any other
// encoding restore() takes (a compressed term, say) is decoded whole in the first step.
class kv_loader {
 public:
  enum class progress { more, done, bad };
  explicit kv_loader(std::string_view bytes, std::shared_ptr<const void> keep = nullptr);
  progress step(std::size_t max_entries);
  std::size_t loaded() const noexcept { return state_.entries(); }
  // The state loaded (all of it once step() returned done; what was loaded so far otherwise, to free).
  kv_state take() { return std::move(state_); }

 private:
  std::string_view bytes_;
  std::shared_ptr<const void> keep_;
  std::size_t pos_ = 0;
  int phase_ = 0;  // 0: header, 1: data entries, 2: data tail, 3: locks header, 4: locks, 5: locks tail, 6: done
  std::uint32_t left_ = 0;  // entries left in the list being read
  bool bad_ = false;
  kv_state state_;
  bool header();
  bool list_header(bool& listed);
  bool tail();
  bool whole();
};

// Frees states a few entries a step (each step erases up to max_entries map nodes, oldest state first), so a state
// of any size never costs its owner one long pass at once.
class kv_reaper {
 public:
  void add(kv_state s) {
    if (s.entries()) states_.push_back(std::move(s));
  }
  // True once nothing is left.
  bool step(std::size_t max_entries);
  bool empty() const noexcept { return states_.empty(); }
  std::size_t entries() const noexcept;

 private:
  std::deque<kv_state> states_;
};

}  // namespace cnode::raft
