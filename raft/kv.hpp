// The replicated key-value state machine: commands are terms, applied in log order on every member.
#pragma once

#include <map>

#include "etf/term.hpp"

namespace cnode::raft {

class kv_machine {
 public:
  // Applies a committed command; the reply for its caller. {put, K, V} → ok; {delete, K} → ok;
  // {cas, K, Expected, New} → ok | {error, {mismatch, Current}}; {incr, K, By} → {ok, N} | {error, not_integer};
  // {get, K} → {ok, V} | not_found (a read through the log: linearizable).
  etf::term apply(const etf::term& command);
  // {ok, V} | not_found, from this member's state.
  etf::term get(const etf::term& key) const;
  std::size_t size() const noexcept { return data_.size(); }
  // Whether a request is a command this machine takes (else the service answers {error, badarg}).
  static bool is_command(const etf::term& request);

 private:
  std::map<etf::term, etf::term> data_;  // keys in Erlang term order (=:= distinguishes 1 and 1.0: see apply)
};

}  // namespace cnode::raft
