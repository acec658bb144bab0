// The replicated key-value state machine with locks and fencing tokens: commands are terms, applied in log order
// on every member, so every member holds the same state at the same index.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "etf/term.hpp"

namespace cnode::raft {

struct lock_state {
  etf::term name;            // as the client gave it
  etf::term owner;           // the pid that holds it
  std::uint64_t token = 0;   // the Raft index of the grant: strictly increasing over every grant of the group
  std::int64_t ttl_ms = 0;
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

 private:
  friend class kv_serializer;
  std::map<etf::term, etf::term> data_;  // keys in Erlang term order
  std::map<std::string, lock_state> locks_;
};

// serialize() in steps: the state is captured when the serializer is made (its terms shared, not copied: one pass
// over the maps), and encoded a number of entries at a time, so a large state does not hold the group process for
// the whole encoding (28 000 keys took 23-28 ms on a loaded VM, up to 376 ms under a benchmark's load). The bytes
// are serialize()'s, whatever changes in the machine meanwhile.
class kv_serializer {
 public:
  explicit kv_serializer(const kv_machine& m);
  // Encodes up to max_entries more entries; true once the bytes are complete.
  bool step(std::size_t max_entries);
  // The bytes, once step() has returned true.
  std::string take();

 private:
  std::vector<std::pair<etf::term, etf::term>> data_;
  std::vector<lock_state> locks_;
  std::size_t next_ = 0;
  int phase_ = 0;  // 0: data, 1: locks, 2: done
  std::vector<std::uint8_t> out_;
};

}  // namespace cnode::raft
