// C++ functions that other nodes call by {Module, Function, Arity}: through erpc/rpc (spawn requests of
// erpc:execute_call/4 and execute_cast/3), through rex ({call, M, F, A, GL}, block_call, the C-node form), and by
// spawn_request of the MFA itself. Each call runs in a process of its own, so a slow function does not hold up
// other calls.
//
//   functions.add("kv", "get", 1, [](process& self, std::vector<term> args) -> asio::awaitable<term> {
//     co_return lookup(args[0]);
//   });
//
// Inside a function, raise Erlang exceptions with erl_throw / erl_exit / erl_error: the caller sees exactly the
// class and reason (erpc: {throw, T} / {exit, R} / {error, R, Stack}). Any other C++ exception is an error
// {cpp_exception, <<What>>}.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "cnode/process.hpp"

namespace cnode {

struct erl_exception : std::exception {
  enum class kind { throw_, exit, error } cls;
  term reason;
  erl_exception(kind k, term r) : cls(k), reason(std::move(r)) {}
  const char* what() const noexcept override { return "erlang exception"; }
};
[[noreturn]] inline void erl_throw(term t) { throw erl_exception(erl_exception::kind::throw_, std::move(t)); }
[[noreturn]] inline void erl_exit(term r) { throw erl_exception(erl_exception::kind::exit, std::move(r)); }
[[noreturn]] inline void erl_error(term r) { throw erl_exception(erl_exception::kind::error, std::move(r)); }

using function_body = std::function<asio::awaitable<term>(process& self, std::vector<term> args)>;

// The outcome of a call, as erpc classifies it.
struct call_outcome {
  enum class kind { value, throw_, exit, error } k = kind::value;
  term value;  // the return value, or the reason
  term stack;  // error only: [{M, F, ArgsOrArity, []}]; [] for an argument error (bad M, F or Args)
};

class function_table {
 public:
  void add(atom module, atom function, unsigned arity, function_body body);
  void add(std::string_view module, std::string_view function, unsigned arity, function_body body) {
    add(atom(module), atom(function), arity, std::move(body));
  }
  const function_body* find(atom module, atom function, unsigned arity) const;
  // Runs M:F(Args) in the calling process and classifies the outcome; an unknown function is the error undef with
  // the stack [{M, F, Args, []}], as the BEAM reports it.
  asio::awaitable<call_outcome> apply(process& self, const term& m, const term& f, const term& args) const;

 private:
  struct key_hash {
    std::size_t operator()(const std::tuple<atom, atom, unsigned>& k) const noexcept {
      return std::get<0>(k).hash() * 31 + std::get<1>(k).hash() * 7 + std::get<2>(k);
    }
  };
  mutable std::shared_mutex mu_;
  std::unordered_map<std::tuple<atom, atom, unsigned>, function_body, key_hash> table_;
};

}  // namespace cnode
