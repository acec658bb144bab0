// Errors of the CRDT core: an enum with its own category (Beast's http/error.hpp pattern), and a small result type.
#pragma once

#include <cassert>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace cnode::crdt {

enum class error {
  ok = 0,
  wrong_type = 1,  // an operation (or a remote object) of another type than the object's
  not_found,       // no object of that name
  malformed,       // a term that is not an encoded CRDT, delta, message or timestamp
  clock_ahead,     // a remote timestamp further ahead of our physical clock than the allowed offset
};

const std::error_category& crdt_category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), crdt_category()}; }
// The atom Erlang code sees for an error (`wrong_type`, `not_found`, ...).
const char* error_atom(error e) noexcept;

// The CRDT types, fixed per object by its first operation.
enum class crdt_type { pn_counter, aw_or_set, lww_register, aw_lww_map };
const char* type_atom(crdt_type t) noexcept;  // pn_counter, aw_or_set, lww_register, aw_lww_map

// A failure: the code, and for wrong_type the type the object already has.
struct failure {
  std::error_code ec;
  std::optional<crdt_type> type;
};

// A value or a failure (std::expected is C++23). value() on a failure is a programming error.
template <class T>
class result {
 public:
  result(T value) : v_(std::move(value)) {}
  result(failure f) : v_(std::move(f)) {}
  result(error e) : v_(failure{make_error_code(e), std::nullopt}) {}
  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return assert(has_value()), std::get<0>(v_); }
  const T& value() const& { return assert(has_value()), std::get<0>(v_); }
  T&& value() && { return assert(has_value()), std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const failure& fail() const { return std::get<1>(v_); }
  std::error_code error_code() const { return has_value() ? std::error_code{} : fail().ec; }

 private:
  std::variant<T, failure> v_;
};

}  // namespace cnode::crdt

template <>
struct std::is_error_code_enum<cnode::crdt::error> : std::true_type {};
