#include "cnode/gen.hpp"

#include "cnode/node.hpp"

namespace cnode::gen {

namespace {
const atom& gen_call_atom() {
  static const atom a("$gen_call");
  return a;
}
const atom& gen_cast_atom() {
  static const atom a("$gen_cast");
  return a;
}
const atom& alias_atom() {
  static const atom a("alias");
  return a;
}

std::optional<term> alias_target(const term& tag) {
  if (!tag.is_cons()) return std::nullopt;
  const term& head = tag.head();
  if (head.is_atom(alias_atom())) {
    term rest = tag.tail();
    if (rest.is_reference()) return rest;  // [alias | Alias]
    return std::nullopt;
  }
  if (head.is_cons() && head.head().is_atom(alias_atom())) {
    term rest = head.tail();
    if (rest.is_reference()) return rest;  // [[alias | Alias] | MonRef]
  }
  return std::nullopt;
}
}  // namespace

bool is_call(const term& msg, incoming_call& c) {
  if (!msg.is_tuple(3) || !msg.element(0).is_atom(gen_call_atom())) return false;
  const term& from = msg.element(1);
  if (!from.is_tuple(2) || !from.element(0).is_pid()) return false;
  c.from = from;
  c.request = msg.element(2);
  return true;
}

bool is_cast(const term& msg, term& request) {
  if (!msg.is_tuple(2) || !msg.element(0).is_atom(gen_cast_atom())) return false;
  request = msg.element(1);
  return true;
}

void reply(node& n, const term& from, term reply) {
  if (!from.is_tuple(2)) return;
  const term& to = from.element(0);
  const term& tag = from.element(1);
  term msg = term::tuple({tag, std::move(reply)});
  if (auto alias = alias_target(tag)) {
    n.send({}, *alias, std::move(msg));
  } else {
    n.send({}, to, std::move(msg));
  }
}

void reply(process& self, const term& from, term r) {
  // The sender of a reply is the replying process (SEND_SENDER / ALIAS_SEND carry it).
  if (!from.is_tuple(2)) return;
  const term& to = from.element(0);
  const term& tag = from.element(1);
  term msg = term::tuple({tag, std::move(r)});
  if (auto alias = alias_target(tag)) self.send(*alias, std::move(msg));
  else self.send(to, std::move(msg));
}

void reply_noconnect(process& self, const term& from, term r) {
  if (!from.is_tuple(2)) return;
  const term& tag = from.element(1);
  term msg = term::tuple({tag, std::move(r)});
  if (auto alias = alias_target(tag)) self.send_noconnect(*alias, std::move(msg));
  else self.send_noconnect(from.element(0), std::move(msg));
}

}  // namespace cnode::gen
