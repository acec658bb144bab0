#include "raft/kv.hpp"

#include <algorithm>
#include <limits>

#include "etf/codec.hpp"
#include "etf/format.hpp"

namespace cnode::raft {

namespace {
using etf::atom;
using etf::term;
term tag(const char* a) { return term(atom(a)); }
bool is(const term& r, const char* t, std::size_t arity) { return r.is_tuple(arity) && r.element(0).is_atom(atom(t)); }
term error(const char* why) { return term::tuple({tag("error"), tag(why)}); }
bool positive_int(const term& t) { return t.is_small() && t.small() > 0; }
bool token(const term& t) { return t.is_small() && t.small() >= 0; }
}  // namespace

bool kv_machine::is_command(const term& r) {
  return is(r, "put", 3) || is(r, "delete", 2) || is(r, "cas", 4) || (is(r, "incr", 3) && r.element(2).is_integer()) ||
         is(r, "get", 2) || (is(r, "lock", 3) && positive_int(r.element(2))) ||
         (is(r, "unlock", 3) && token(r.element(2))) ||
         (is(r, "put_fenced", 4) && r.element(3).is_tuple(2) && token(r.element(3).element(1)));
}

std::string kv_machine::lock_key(const term& name) { return etf::to_string(name); }

term kv_machine::get(const term& key) const {
  // std::map orders by <=> (Erlang term order, where 1 == 1.0); a key matches only when =:=, as in a map.
  auto it = data_.find(key);
  if (it == data_.end() || !(it->first == key)) return tag("not_found");
  return term::tuple({tag("ok"), it->second});
}

kv_machine::result kv_machine::apply(const term& c, std::uint64_t index) {
  if (is(c, "put", 3)) {
    set(c.element(1), c.element(2));
    return {tag("ok"), c.element(1), {}};
  }
  if (is(c, "delete", 2)) {
    const bool had = erase(c.element(1));
    return {tag("ok"), had ? std::optional<term>(c.element(1)) : std::nullopt, {}};
  }
  if (is(c, "get", 2)) return {get(c.element(1)), {}, {}};
  if (is(c, "cas", 4)) {
    term current = get(c.element(1));
    if (!(current == c.element(2))) return {term::tuple({tag("error"), term::tuple({tag("mismatch"), current})}), {}, {}};
    set(c.element(1), c.element(3));
    return {tag("ok"), c.element(1), {}};
  }
  if (is(c, "incr", 3)) {
    auto it = data_.find(c.element(1));
    term base = it == data_.end() ? term(std::int64_t{0}) : it->second;
    if (!base.is_integer() || !c.element(2).is_integer()) return {error("not_integer"), {}, {}};
    term sum = term::from_big(base.big() + c.element(2).big());
    set(c.element(1), sum);
    return {term::tuple({tag("ok"), sum}), c.element(1), {}};
  }
  if (is(c, "lock", 4) && positive_int(c.element(2)) && c.element(3).is_pid()) {
    const auto key = lock_key(c.element(1));
    if (locks_.count(key)) return {error("held"), {}, {}};
    before_lock_write(key);
    locks_[key] = lock_state{c.element(1), c.element(3), index, c.element(2).small()};
    return {term::tuple({tag("ok"), term(index)}), {}, key};
  }
  if ((is(c, "unlock", 3) || is(c, "$release", 3)) && token(c.element(2))) {
    const auto key = lock_key(c.element(1));
    auto it = locks_.find(key);
    if (it == locks_.end() || it->second.token != static_cast<std::uint64_t>(c.element(2).small()))
      return {error("not_held"), {}, {}};
    before_lock_write(key);
    locks_.erase(it);
    return {tag("ok"), {}, {}};
  }
  if (is(c, "put_fenced", 4) && c.element(3).is_tuple(2) && token(c.element(3).element(1))) {
    auto it = locks_.find(lock_key(c.element(3).element(0)));
    if (it == locks_.end() || it->second.token != static_cast<std::uint64_t>(c.element(3).element(1).small()))
      return {error("stale_token"), {}, {}};
    set(c.element(1), c.element(2));
    return {tag("ok"), c.element(1), {}};
  }
  return {error("badarg"), {}, {}};
}

kv_machine& kv_machine::operator=(const kv_machine& o) {
  if (this == &o) return *this;
  detach_serializers();
  data_ = o.data_;
  locks_ = o.locks_;
  return *this;
}

kv_machine::~kv_machine() { detach_serializers(); }

void kv_machine::set(const term& key, const term& value) {
  for (auto* s : serializers_) s->data_.before_write(key);
  data_.insert_or_assign(key, value);
}

bool kv_machine::erase(const term& key) {
  for (auto* s : serializers_) s->data_.before_write(key);
  return data_.erase(key) > 0;
}

void kv_machine::before_lock_write(const std::string& key) {
  for (auto* s : serializers_) s->locks_.before_write(key);
}

void kv_machine::detach_serializers() {
  if (serializers_.empty()) return;
  auto data = std::make_shared<const std::map<term, term>>(std::move(data_));
  auto locks = std::make_shared<const std::map<std::string, lock_state>>(std::move(locks_));
  for (auto* s : serializers_) {
    s->data_.freeze(data);
    s->locks_.freeze(locks);
    s->machine_ = nullptr;
  }
  serializers_.clear();
  data_.clear();
  locks_.clear();
}

std::string kv_machine::serialize() const {
  kv_serializer s(*this);
  while (!s.step(std::numeric_limits<std::size_t>::max())) {
  }
  return s.take();
}

namespace {
constexpr etf::encode_options no_version{.version = false};

// A proper list's header (LIST_EXT and its length), or NIL_EXT for an empty one (then nothing more follows).
void list_header(std::vector<std::uint8_t>& out, std::size_t n) {
  if (n == 0) {
    out.push_back(etf::tag::nil);
    return;
  }
  out.push_back(etf::tag::list);
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(n >> shift));
}
}  // namespace

kv_serializer::kv_serializer(const kv_machine& m) : machine_(&m), data_(m.data_), locks_(m.locks_) {
  m.serializers_.push_back(this);
  // term_to_binary({kv, Data, Locks}): the tuple's header and the first list's.
  step_.push_back(etf::version_magic);
  step_.push_back(etf::tag::small_tuple);
  step_.push_back(3);
  etf::encode(tag("kv"), step_, no_version);
  list_header(step_, data_.size());
  append();
}

kv_serializer::~kv_serializer() { detach(); }

void kv_serializer::detach() {
  if (!machine_) return;
  std::erase(machine_->serializers_, this);
  machine_ = nullptr;
}

void kv_serializer::append() {
  if (out_.size() + step_.size() > out_.capacity() && visited_ > 0) {
    // Grown at once to what the whole state will take, judged by the entries so far (with a margin), so the bytes
    // are not copied again at every doubling: for a state of 10^6 keys (130 MB) the last doubling's copy alone would
    // hold one step for tens of ms. Pages are touched only as they are written.
    const double per_entry = static_cast<double>(out_.size() + step_.size()) / static_cast<double>(visited_);
    const auto estimate =
        static_cast<std::size_t>(per_entry * static_cast<double>(data_.size() + locks_.size()) * 1.125) + 4096;
    out_.reserve(std::max(estimate, out_.capacity() + out_.capacity() / 2));
  }
  out_.append(reinterpret_cast<const char*>(step_.data()), step_.size());
  step_.clear();
}

bool kv_serializer::step(std::size_t max_entries) {
  std::size_t left = max_entries;
  const bool done = encode(left);
  visited_ += max_entries - left;
  append();
  return done;
}

bool kv_serializer::encode(std::size_t& max_entries) {
  if (phase_ == 0) {
    const bool done = data_.visit(max_entries, [&](const term& k, const term& v) {
      step_.push_back(etf::tag::small_tuple);
      step_.push_back(2);
      etf::encode(k, step_, no_version);
      etf::encode(v, step_, no_version);
    });
    if (!done) return false;
    if (data_.size() > 0) step_.push_back(etf::tag::nil);  // the proper list's tail
    list_header(step_, locks_.size());
    phase_ = 1;
  }
  if (phase_ == 1) {
    const bool done = locks_.visit(max_entries, [&](const std::string&, const lock_state& l) {
      etf::encode(term::tuple({l.name, l.owner, term(l.token), term(l.ttl_ms)}), step_, no_version);
    });
    if (!done) return false;
    if (locks_.size() > 0) step_.push_back(etf::tag::nil);
    phase_ = 2;
    detach();
  }
  return true;
}

std::string kv_serializer::take() {
  step_ = {};
  return std::move(out_);
}

bool kv_machine::restore(const std::string& bytes) {
  kv_loader l(bytes);
  auto p = kv_loader::progress::more;
  while (p == kv_loader::progress::more) p = l.step(std::numeric_limits<std::size_t>::max());
  if (p != kv_loader::progress::done) return false;
  replace(l.take());  // the old state freed here, at once
  return true;
}

kv_state kv_machine::replace(kv_state s) {
  kv_state old;
  if (serializers_.empty()) {
    old.data = std::move(data_);
    old.locks = std::move(locks_);
  } else {
    detach_serializers();  // they keep the old maps, and free them when they end
  }
  data_ = std::move(s.data);
  locks_ = std::move(s.locks);
  return old;
}

namespace {
bool load_lock(const term& l, std::map<std::string, lock_state>& locks) {
  if (!l.is_tuple(4) || !l.element(1).is_pid() || !token(l.element(2)) || !positive_int(l.element(3))) return false;
  const auto key = kv_machine::lock_key(l.element(0));
  locks.insert_or_assign(locks.end(), key,
                         lock_state{l.element(0), l.element(1), static_cast<std::uint64_t>(l.element(2).small()),
                                    l.element(3).small()});
  return true;
}
constexpr etf::decode_options bare{.expect_version = false};
}  // namespace

kv_loader::kv_loader(std::string_view bytes, std::shared_ptr<const void> keep) : bytes_(bytes), keep_(std::move(keep)) {}

kv_loader::progress kv_loader::step(std::size_t max_entries) {
  if (bad_) return progress::bad;
  const auto fail = [&] {
    bad_ = true;
    return progress::bad;
  };
  const auto span = [&] {
    return std::span(reinterpret_cast<const std::uint8_t*>(bytes_.data()) + pos_, bytes_.size() - pos_);
  };
  if (phase_ == 0) {
    if (!header()) return whole() ? progress::done : fail();
    bool listed = false;
    if (!list_header(listed)) return whole() ? progress::done : fail();
    phase_ = listed ? 1 : 3;
  }
  while (phase_ == 1 && left_ > 0 && max_entries > 0) {
    auto r = etf::decode_prefix(span(), bare);
    if (!r || !r.value.is_tuple(2)) return fail();
    pos_ += r.offset;
    // Keys come in term order from a serializer: the hint makes each insert O(1).
    state_.data.insert_or_assign(state_.data.end(), r.value.element(0), r.value.element(1));
    --left_, --max_entries;
  }
  if (phase_ == 1 && left_ == 0) {
    if (!tail()) return fail();
    phase_ = 3;
  }
  if (phase_ == 3) {
    bool listed = false;
    if (!list_header(listed)) return fail();
    phase_ = listed ? 4 : 6;
  }
  while (phase_ == 4 && left_ > 0 && max_entries > 0) {
    auto r = etf::decode_prefix(span(), bare);
    if (!r || !load_lock(r.value, state_.locks)) return fail();
    pos_ += r.offset;
    --left_, --max_entries;
  }
  if (phase_ == 4 && left_ == 0) {
    if (!tail()) return fail();
    phase_ = 6;
  }
  if (phase_ != 6) return progress::more;
  if (pos_ != bytes_.size()) return fail();  // trailing bytes
  return progress::done;
}

// 131, a tuple of arity 3, the atom kv (any atom encoding).
bool kv_loader::header() {
  const auto* b = reinterpret_cast<const std::uint8_t*>(bytes_.data());
  const std::size_t n = bytes_.size();
  if (n < 3 || b[0] != etf::version_magic) return false;
  if (b[1] == etf::tag::small_tuple && b[2] == 3) {
    pos_ = 3;
  } else if (b[1] == etf::tag::large_tuple && n >= 6 && b[2] == 0 && b[3] == 0 && b[4] == 0 && b[5] == 3) {
    pos_ = 6;
  } else {
    return false;
  }
  auto r = etf::decode_prefix(std::span(b + pos_, n - pos_), bare);
  if (!r || !r.value.is_atom(atom("kv"))) return false;
  pos_ += r.offset;
  return true;
}

// NIL_EXT (listed = false) or LIST_EXT's header (the entries' count in left_); false for any other encoding.
bool kv_loader::list_header(bool& listed) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(bytes_.data());
  if (pos_ >= bytes_.size()) return false;
  if (b[pos_] == etf::tag::nil) {
    ++pos_;
    listed = false;
    return true;
  }
  if (b[pos_] != etf::tag::list || bytes_.size() - pos_ < 5) return false;
  left_ = static_cast<std::uint32_t>(b[pos_ + 1]) << 24 | static_cast<std::uint32_t>(b[pos_ + 2]) << 16 |
          static_cast<std::uint32_t>(b[pos_ + 3]) << 8 | b[pos_ + 4];
  pos_ += 5;
  listed = true;
  return true;
}

bool kv_loader::tail() {
  auto r = etf::decode_prefix(
      std::span(reinterpret_cast<const std::uint8_t*>(bytes_.data()) + pos_, bytes_.size() - pos_), bare);
  if (!r || !r.value.is_nil()) return false;
  pos_ += r.offset;
  return true;
}

// Any other encoding of {kv, Data, Locks}: decoded at once (a serializer never writes one).
bool kv_loader::whole() {
  state_ = {};
  phase_ = 6;
  auto r = etf::decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes_.data()), bytes_.size()));
  if (!r || !is(r.value, "kv", 3)) return false;
  std::vector<term> kvs, ls;
  term t1, t2;
  if (!r.value.element(1).list_to_vector(kvs, &t1) || !t1.is_nil() || !r.value.element(2).list_to_vector(ls, &t2) ||
      !t2.is_nil())
    return false;
  for (const auto& kv : kvs) {
    if (!kv.is_tuple(2)) return false;
    state_.data.insert_or_assign(kv.element(0), kv.element(1));
  }
  for (const auto& l : ls)
    if (!load_lock(l, state_.locks)) return false;
  pos_ = bytes_.size();
  return true;
}

bool kv_reaper::step(std::size_t max_entries) {
  while (max_entries > 0 && !states_.empty()) {
    auto& s = states_.front();
    // Erased from the smallest key: no search, and a red-black tree's rebalancing is O(1) amortized per erase.
    while (max_entries > 0 && !s.data.empty()) s.data.erase(s.data.begin()), --max_entries;
    while (max_entries > 0 && s.data.empty() && !s.locks.empty()) s.locks.erase(s.locks.begin()), --max_entries;
    if (s.data.empty() && s.locks.empty()) states_.pop_front();
  }
  return states_.empty();
}

std::size_t kv_reaper::entries() const noexcept {
  std::size_t n = 0;
  for (const auto& s : states_) n += s.entries();
  return n;
}

}  // namespace cnode::raft
