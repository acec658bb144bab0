// Terms as JSON, for GET /status. Recursive: status terms are shallow maps built by the node itself.
#include <cmath>

#include <fmt/core.h>

#include "etf/format.hpp"
#include "log/log.hpp"
#include "ops/ops.hpp"

namespace cnode::ops {

namespace {

std::string key_text(const term& k) {
  if (k.is_atom()) return std::string(k.atom_value().text());
  if (k.is_binary()) return std::string(reinterpret_cast<const char*>(k.bytes().data()), k.byte_size());
  return etf::to_string(k);
}

void write(std::string& out, const term& t) {
  if (t.is_atom()) {
    atom a = t.atom_value();
    if (a == atom::true_()) out += "true";
    else if (a == atom::false_()) out += "false";
    else if (a == atom::undefined() || a.text() == "nil") out += "null";
    else out += log::json_string(a.text());
  } else if (t.is_small()) {
    out += fmt::format("{}", t.small());
  } else if (t.is_integer()) {
    out += t.big().str();
  } else if (t.is_float()) {
    double v = t.float_value();
    out += std::isfinite(v) ? fmt::format("{}", v) : std::string("null");
  } else if (t.is_binary()) {
    out += log::json_string(std::string_view(reinterpret_cast<const char*>(t.bytes().data()), t.byte_size()));
  } else if (t.is_map()) {
    out += '{';
    auto keys = t.map_keys();
    auto values = t.map_values();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i) out += ',';
      out += log::json_string(key_text(keys[i]));
      out += ':';
      write(out, values[i]);
    }
    out += '}';
  } else if (t.is_tuple() || t.is_list()) {
    std::vector<term> items;
    if (t.is_tuple()) items.assign(t.elements().begin(), t.elements().end());
    else t.list_to_vector(items);
    out += '[';
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i) out += ',';
      write(out, items[i]);
    }
    out += ']';
  } else {
    out += log::json_string(etf::to_string(t));
  }
}

}  // namespace

std::string to_json(const term& t) {
  std::string out;
  write(out, t);
  return out;
}

}  // namespace cnode::ops
