#include "raft/wire.hpp"

namespace cnode::raft {

namespace {

using etf::atom;

bool u64(const term& t, std::uint64_t& out) {
  if (!t.is_small() || t.small() < 0) return false;
  out = static_cast<std::uint64_t>(t.small());
  return true;
}

bool boolean(const term& t, bool& out) {
  if (t.is_atom(atom::true_())) out = true;
  else if (t.is_atom(atom::false_())) out = false;
  else return false;
  return true;
}

term encode_snapshot(const snapshot& s) {
  std::vector<term> ms;
  for (const auto& m : s.meta.members) ms.emplace_back(atom(m));
  return term::tuple({term(s.meta.index), term(s.meta.term), term::list(std::move(ms)), term::binary(s.data)});
}

std::shared_ptr<const snapshot> decode_snapshot(const term& t, term* bytes) {
  if (!t.is_tuple(4) || !t.element(3).is_binary()) return nullptr;
  auto s = std::make_shared<snapshot>();
  if (!u64(t.element(0), s->meta.index) || !u64(t.element(1), s->meta.term)) return nullptr;
  std::vector<term> ms;
  term tail;
  if (!t.element(2).list_to_vector(ms, &tail) || !tail.is_nil()) return nullptr;
  for (const auto& m : ms) {
    if (!m.is_atom()) return nullptr;
    s->meta.members.emplace_back(m.atom_value().text());
  }
  if (bytes) {
    *bytes = t.element(3);
    return s;
  }
  const auto b = t.element(3).bytes();
  s->data.assign(reinterpret_cast<const char*>(b.data()), b.size());
  return s;
}

}  // namespace

term encode(const message& m) {
  std::vector<term> es;
  es.reserve(m.entries.size());
  for (const auto& e : m.entries) es.push_back(term::tuple({term(e.term), term(e.index), e.data}));
  return term::tuple({term(static_cast<std::int64_t>(m.type)), term(m.term), term(m.last_index), term(m.last_term),
                      term(m.prev_index), term(m.prev_term), term(m.commit), term(m.index), term(m.granted),
                      term(m.success), term(m.force), term::list(std::move(es)), term(m.seq),
                      m.snap ? encode_snapshot(*m.snap) : term()});
}

std::optional<message> decode(const term& t, const std::string& from, const std::string& to, term* snapshot_bytes) {
  if (!t.is_tuple(14) || !t.element(0).is_small()) return std::nullopt;
  const auto type = t.element(0).small();
  if (type < 0 || type > static_cast<std::int64_t>(msg_type::install_snapshot)) return std::nullopt;
  message m;
  m.type = static_cast<msg_type>(type);
  m.from = from;
  m.to = to;
  if (!u64(t.element(1), m.term) || !u64(t.element(2), m.last_index) || !u64(t.element(3), m.last_term) ||
      !u64(t.element(4), m.prev_index) || !u64(t.element(5), m.prev_term) || !u64(t.element(6), m.commit) ||
      !u64(t.element(7), m.index) || !boolean(t.element(8), m.granted) || !boolean(t.element(9), m.success) ||
      !boolean(t.element(10), m.force) || !u64(t.element(12), m.seq))
    return std::nullopt;
  std::vector<term> es;
  term tail;
  if (!t.element(11).list_to_vector(es, &tail) || !tail.is_nil()) return std::nullopt;
  index_t expect = m.prev_index;
  for (const auto& e : es) {
    entry x;
    if (!e.is_tuple(3) || !u64(e.element(0), x.term) || !u64(e.element(1), x.index)) return std::nullopt;
    if (x.index != ++expect) return std::nullopt;  // entries are consecutive after prev_index
    x.data = e.element(2);
    m.entries.push_back(std::move(x));
  }
  if (m.type == msg_type::install_snapshot) {
    m.snap = decode_snapshot(t.element(13), snapshot_bytes);
    if (!m.snap) return std::nullopt;
  } else if (!t.element(13).is_nil()) {
    return std::nullopt;
  }
  return m;
}

}  // namespace cnode::raft
