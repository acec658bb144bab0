#include "crdt/error.hpp"

#include <string>

namespace cnode::crdt {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "crdt"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::ok: return "success";
      case error::wrong_type: return "the object has another type";
      case error::not_found: return "no such object";
      case error::malformed: return "malformed CRDT term";
      case error::clock_ahead: return "remote clock too far ahead";
    }
    return "unknown crdt error";
  }
};

}  // namespace

const std::error_category& crdt_category() noexcept {
  static const category c;
  return c;
}

const char* error_atom(error e) noexcept {
  switch (e) {
    case error::ok: return "ok";
    case error::wrong_type: return "wrong_type";
    case error::not_found: return "not_found";
    case error::malformed: return "malformed";
    case error::clock_ahead: return "clock_ahead";
  }
  return "unknown";
}

const char* type_atom(crdt_type t) noexcept {
  switch (t) {
    case crdt_type::pn_counter: return "pn_counter";
    case crdt_type::aw_or_set: return "aw_or_set";
    case crdt_type::lww_register: return "lww_register";
    case crdt_type::aw_lww_map: return "aw_lww_map";
  }
  return "unknown";
}

}  // namespace cnode::crdt
