// Decoding control messages: the packet forms (pass-through, normal distribution header with its atom cache), the
// control tuple element by element (so that an error names the element's byte offset), and the shape rules of
// dist.c:erts_net_message.
#include "dist/control.hpp"

#include <array>
#include <cstring>
#include <vector>

#include "dist/fragment.hpp"
#include "etf/codec.hpp"
#include "etf/error.hpp"

namespace cnode::dist {
namespace {

constexpr std::uint8_t pass_through = 112;  // 'p'
constexpr std::uint8_t dist_header = 68, dist_frag_header = 69, dist_frag_cont = 70;
constexpr std::size_t max_arity = 7;         // SPAWN_REQUEST_TT

struct failure {
  std::error_code ec;
  std::size_t at;  // absolute offset in the packet buffer
};

// What a tuple element must be.
enum class kind : std::uint8_t {
  any,          // reasons, Unused, trace tokens
  pid,
  atom,
  ref,
  pid_or_atom,  // ToProc / FromProc of the monitor ops; Result of SPAWN_REPLY
  mfa,          // {Module, Function, Arity}
  proper_list,  // SPAWN_REQUEST's OptList
  id,           // UNLINK_ID: 1..2^64-1 (dist.c rejects 0)
  id_ack,       // UNLINK_ID_ACK: 0..2^64-1
  spawn_flags,  // SPAWN_REPLY: small, below 1 << 27 (dist.c)
};

struct shape {
  std::uint8_t arity;      // including the op element
  std::int8_t token = -1;  // index of the trace token, -1 if none
  kind fields[max_arity - 1] = {};
};

// Element kinds by tuple index 1.. for every op; the table mirrors the switch in dist.c:erts_net_message.
shape shape_of(op o) noexcept {
  using enum kind;
  switch (o) {
    case op::link: return {3, -1, {pid, pid}};
    case op::send: return {3, -1, {any, pid}};
    case op::exit: return {4, -1, {pid, pid, any}};
    case op::unlink: return {3, -1, {pid, pid}};
    case op::node_link: return {1, -1, {}};
    case op::reg_send: return {4, -1, {pid, any, atom}};
    case op::group_leader: return {3, -1, {pid, pid}};
    case op::exit2: return {4, -1, {pid, pid, any}};
    case op::send_tt: return {4, 3, {any, pid, any}};
    case op::exit_tt: return {5, 3, {pid, pid, any, any}};
    case op::reg_send_tt: return {5, 4, {pid, any, atom, any}};
    case op::exit2_tt: return {5, 3, {pid, pid, any, any}};
    case op::monitor_p: return {4, -1, {pid, pid_or_atom, ref}};
    case op::demonitor_p: return {4, -1, {pid, pid_or_atom, ref}};
    case op::monitor_p_exit: return {5, -1, {pid_or_atom, pid, ref, any}};
    case op::send_sender: return {3, -1, {pid, pid}};
    case op::send_sender_tt: return {4, 3, {pid, pid, any}};
    case op::payload_exit: return {3, -1, {pid, pid}};
    case op::payload_exit_tt: return {4, 3, {pid, pid, any}};
    case op::payload_exit2: return {3, -1, {pid, pid}};
    case op::payload_exit2_tt: return {4, 3, {pid, pid, any}};
    case op::payload_monitor_p_exit: return {4, -1, {pid_or_atom, pid, ref}};
    case op::spawn_request: return {6, -1, {ref, pid, pid, mfa, proper_list}};
    case op::spawn_request_tt: return {7, 6, {ref, pid, pid, mfa, proper_list, any}};
    case op::spawn_reply: return {5, -1, {ref, pid, spawn_flags, pid_or_atom}};
    case op::spawn_reply_tt: return {6, 5, {ref, pid, spawn_flags, pid_or_atom, any}};
    case op::alias_send: return {3, -1, {pid, ref}};
    case op::alias_send_tt: return {4, 3, {pid, ref, any}};
    case op::unlink_id: return {4, -1, {id, pid, pid}};
    case op::unlink_id_ack: return {4, -1, {id_ack, pid, pid}};
  }
  return {0};
}

bool to_u64(const etf::term& t, std::uint64_t& out) {
  if (t.is_small()) {
    if (t.small() < 0) return false;
    out = static_cast<std::uint64_t>(t.small());
    return true;
  }
  if (t.type() != etf::term_type::big_integer) return false;
  const etf::big_int& b = t.big_ref();
  if (b < 0 || b > etf::big_int(UINT64_MAX)) return false;
  out = static_cast<std::uint64_t>(b);
  return true;
}

bool is_proper_list(const etf::term& t) {
  etf::term cur = t;
  while (cur.is_cons()) cur = cur.list_segment_tail();
  return cur.is_nil();
}

bool fits(kind k, const etf::term& t) {
  std::uint64_t u = 0;
  switch (k) {
    case kind::any: return true;
    case kind::pid: return t.is_pid();
    case kind::atom: return t.is_atom();
    case kind::ref: return t.is_reference();
    case kind::pid_or_atom: return t.is_pid() || t.is_atom();
    case kind::mfa:
      // dist.c only asks for a small arity; a function has at most 255 arguments.
      return t.is_tuple(3) && t.element(0).is_atom() && t.element(1).is_atom() && t.element(2).is_small() &&
             t.element(2).small() >= 0 && t.element(2).small() <= 255;
    case kind::proper_list: return is_proper_list(t);
    case kind::id: return to_u64(t, u) && u != 0;
    case kind::id_ack: return to_u64(t, u);
    case kind::spawn_flags: return t.is_small() && t.small() >= 0 && t.small() < (1 << 27);
  }
  return false;
}

std::uint64_t u64_of(const etf::term& t) {
  std::uint64_t u = 0;
  to_u64(t, u);
  return u;
}

// Builds the body from checked elements e[0..arity).
control_body make_body(op o, const etf::term* e) {
  switch (o) {
    case op::link: return link_msg{e[1], e[2]};
    case op::send:
    case op::send_tt: return send_msg{e[2]};
    case op::exit:
    case op::exit2:
    case op::exit_tt:
    case op::exit2_tt: {
      const etf::term& reason = (o == op::exit || o == op::exit2) ? e[3] : e[4];
      if (o == op::exit || o == op::exit_tt) return exit_msg{e[1], e[2], reason};
      return exit2_msg{e[1], e[2], reason};
    }
    case op::unlink: return unlink_msg{e[1], e[2]};
    case op::node_link: return node_link_msg{};
    case op::reg_send:
    case op::reg_send_tt: return reg_send_msg{e[1], e[3].atom_value()};
    case op::group_leader: return group_leader_msg{e[1], e[2]};
    case op::monitor_p: return monitor_p_msg{e[1], e[2], e[3]};
    case op::demonitor_p: return demonitor_p_msg{e[1], e[2], e[3]};
    case op::monitor_p_exit: return monitor_p_exit_msg{e[1], e[2], e[3], e[4]};
    case op::send_sender:
    case op::send_sender_tt: return send_sender_msg{e[1], e[2]};
    case op::payload_exit:
    case op::payload_exit_tt: return payload_exit_msg{e[1], e[2]};
    case op::payload_exit2:
    case op::payload_exit2_tt: return payload_exit2_msg{e[1], e[2]};
    case op::payload_monitor_p_exit: return payload_monitor_p_exit_msg{e[1], e[2], e[3]};
    case op::spawn_request:
    case op::spawn_request_tt: return spawn_request_msg{e[1], e[2], e[3], e[4], e[5]};
    case op::spawn_reply:
    case op::spawn_reply_tt:
      return spawn_reply_msg{e[1], e[2], static_cast<std::uint32_t>(e[3].small()), e[4]};
    case op::alias_send:
    case op::alias_send_tt: return alias_send_msg{e[1], e[2]};
    case op::unlink_id: return unlink_id_msg{u64_of(e[1]), e[2], e[3]};
    case op::unlink_id_ack: return unlink_id_ack_msg{u64_of(e[1]), e[2], e[3]};
  }
  return node_link_msg{};
}

// The pids of the last control messages this thread decoded, by their bytes (packet_decoder::element_at).
constexpr std::size_t pid_key_max = 64;
struct pid_cache_entry {
  std::array<std::uint8_t, pid_key_max> key;
  std::uint8_t len = 0;
  etf::term value;
};
thread_local std::array<pid_cache_entry, 4> pid_cache;

// Whether n bytes (8 <= n <= pid_key_max; a pid's key is at least 16) are equal: 8 bytes at a time, the last load
// overlapping, inline (a pid's key is about 20-40 bytes, where a call to memcmp cost more than the comparing).
inline bool same_key(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) noexcept {
  auto load = [](const std::uint8_t* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  };
  std::uint64_t diff = load(a + n - 8) ^ load(b + n - 8);
  for (std::size_t i = 0; i + 8 < n; i += 8) diff |= load(a + i) ^ load(b + i);
  return diff == 0;
}
thread_local unsigned pid_cache_next = 0;

class packet_decoder {
 public:
  packet_decoder(const etf::shared_bytes& buf, std::size_t start, std::size_t end, atom_cache* cache)
      : shared_(&buf), p_(buf.data()), end_(end), pos_(start), cache_(cache) {}
  // Over bytes nobody keeps: every binary is copied out of them.
  packet_decoder(const std::uint8_t* p, std::size_t start, std::size_t end, atom_cache* cache)
      : shared_(nullptr), p_(p), end_(end), pos_(start), cache_(cache) {}

  bool run(control_message& out) {
    if (pos_ >= end_) return fail(control_error::empty_packet, pos_);
    std::uint8_t first = p_[pos_];
    if (first == pass_through) {
      ++pos_;
      if (!version_byte()) return false;
      opts_.expect_version = false;
      if (!control(out)) return false;
      return payload(out, true);
    }
    if (first == etf::version_magic) {
      if (!header()) return false;
      opts_.expect_version = false;
      if (!control(out)) return false;
      return payload(out, false);
    }
    return fail(control_error::bad_packet_type, pos_);
  }

  std::size_t pos() const noexcept { return pos_; }
  const failure& error() const noexcept { return err_; }

 private:
  bool fail(std::error_code ec, std::size_t at) {
    err_ = {ec, at};
    return false;
  }
  bool fail(control_error e, std::size_t at) { return fail(make_error_code(e), at); }

  bool version_byte() {
    if (pos_ >= end_) return fail(control_error::missing_version, pos_);
    if (p_[pos_] != etf::version_magic) return fail(control_error::missing_version, pos_);
    ++pos_;
    return true;
  }

  bool need(std::size_t n) { return end_ - pos_ >= n || fail(control_error::truncated, end_); }

  // 131, 68, N, Flags (N/2+1 bytes, when N > 0), AtomCacheRefs (erl_ext_dist "Normal Distribution Header").
  bool header() {
    if (!need(2)) return false;
    std::uint8_t tag = p_[pos_ + 1];
    if (tag == dist_frag_header || tag == dist_frag_cont) return fail(control_error::fragments_unsupported, pos_ + 1);
    if (tag != dist_header) return fail(control_error::bad_header, pos_ + 1);
    pos_ += 2;
    std::size_t err_at = 0;
    if (auto ec = read_header_refs(reinterpret_cast<const std::byte*>(p_), pos_, end_, cache_, refs_, err_at))
      return fail(ec, err_at);
    opts_.atom_cache_refs = std::span<const etf::atom>(refs_.data(), refs_.size());
    return true;
  }

 public:
  // The header-form body (Control, Payload without 131) with the header already read.
  bool run_body(control_message& out, std::span<const etf::atom> refs) {
    opts_.atom_cache_refs = refs;
    opts_.expect_version = false;
    if (pos_ >= end_) return fail(control_error::truncated, pos_);
    if (!control(out)) return false;
    return payload(out, false);
  }

 private:
  // One term at pos_, which must end by end_ (the buffer may hold more than this packet).
  bool term_at(etf::term& out) {
    if (!shared_) {
      // The view ends with the packet: a term running past it is cut short there.
      etf::decode_result r = etf::decode_prefix(std::span<const std::uint8_t>(p_ + pos_, end_ - pos_), opts_);
      if (!r) return fail(r.ec, pos_ + r.offset);
      pos_ += r.offset;
      out = std::move(r.value);
      return true;
    }
    etf::decode_result r = etf::decode_prefix(*shared_, pos_, opts_);
    if (!r) {
      // Whatever went wrong past end_ happened in bytes that are not this packet's: the term is cut short.
      if (r.offset >= end_) return fail(etf::error::truncated, end_);
      return fail(r.ec, r.offset);
    }
    if (r.offset > end_ - pos_) return fail(etf::error::truncated, end_);
    pos_ += r.offset;
    out = std::move(r.value);
    return true;
  }

  // A control tuple's element. Its op (a small integer) and its pids are read without the term decoder: a pid is
  // looked up by its bytes among the last few this thread decoded (a connection's messages come mostly from a few
  // senders to a few receivers), and only a miss goes through decode_prefix. The bytes are compared whole, so a hit
  // is exactly what decoding them gives; only pids whose node is written out (not an ATOM_CACHE_REF) are kept.
  bool element_at(etf::term& out) {
    const std::size_t n = end_ - pos_;
    if (n >= 2 && p_[pos_] == etf::tag::small_integer) {
      out = etf::term(static_cast<int>(p_[pos_ + 1]));
      pos_ += 2;
      return true;
    }
    if (n < 3 || p_[pos_] != etf::tag::new_pid) return term_at(out);
    std::size_t atom_len;
    switch (p_[pos_ + 1]) {
      case etf::tag::small_atom_utf8:
      case etf::tag::small_atom: atom_len = 2 + std::size_t{p_[pos_ + 2]}; break;
      case etf::tag::atom_utf8:
      case etf::tag::atom:
        if (n < 4) return term_at(out);
        atom_len = 3 + ((std::size_t{p_[pos_ + 2]} << 8) | p_[pos_ + 3]);
        break;
      default: return term_at(out);
    }
    const std::size_t len = 1 + atom_len + 12;  // tag, node, ID, Serial, Creation
    if (len > n || len > pid_key_max) return term_at(out);
    for (auto& c : pid_cache) {
      if (c.len == len && same_key(c.key.data(), p_ + pos_, len)) {
        out = c.value;
        pos_ += len;
        return true;
      }
    }
    const std::size_t from = pos_;
    if (!term_at(out)) return false;
    if (pos_ - from == len && out.is_pid()) {
      auto& c = pid_cache[pid_cache_next++ % pid_cache.size()];
      std::memcpy(c.key.data(), p_ + from, len);
      c.len = static_cast<std::uint8_t>(len);
      c.value = out;
    }
    return true;
  }

  bool control(control_message& out) {
    std::size_t tuple_at = pos_;
    if (pos_ >= end_) return fail(control_error::truncated, end_);
    std::array<etf::term, max_arity> e;
    std::array<std::size_t, max_arity> at{};
    std::size_t arity = 0;
    std::uint8_t tag = p_[pos_];
    bool elementwise = tag == etf::tag::small_tuple || tag == etf::tag::large_tuple;
    etf::term whole;
    if (elementwise) {
      // Element by element, so that a bad field is reported at its own offset.
      if (tag == etf::tag::small_tuple) {
        if (end_ - pos_ < 2) return fail(etf::error::truncated, end_);
        arity = p_[pos_ + 1];
        pos_ += 2;
      } else {
        if (end_ - pos_ < 5) return fail(etf::error::truncated, end_);
        arity = (std::size_t{p_[pos_ + 1]} << 24) | (std::size_t{p_[pos_ + 2]} << 16) |
                (std::size_t{p_[pos_ + 3]} << 8) | p_[pos_ + 4];
        pos_ += 5;
      }
      if (arity == 0) return fail(control_error::bad_op, tuple_at);
      // The messages that carry almost all traffic, SEND_SENDER {22, From, To} and REG_SEND {6, From, '', Name},
      // read straight into their structs: the same checks and failures as the general way below, without its
      // arrays of terms, shape table and variant built from them.
      if (arity == 3 && end_ - pos_ >= 2 && p_[pos_] == etf::tag::small_integer &&
          p_[pos_ + 1] == static_cast<std::uint8_t>(op::send_sender))
        return send_sender(out);
      if (arity == 4 && end_ - pos_ >= 2 && p_[pos_] == etf::tag::small_integer &&
          p_[pos_ + 1] == static_cast<std::uint8_t>(op::reg_send))
        return reg_send(out);
      at[0] = pos_;
      if (!element_at(e[0])) return false;
    } else {
      // Not how erts writes it (e.g. a compressed control term), but still a term.
      if (!term_at(whole)) return false;
      if (!whole.is_tuple()) return fail(control_error::not_a_tuple, tuple_at);
      arity = whole.tuple_size();
      if (arity == 0) return fail(control_error::bad_op, tuple_at);
      e[0] = whole.element(0);
      at.fill(tuple_at);
    }
    if (!e[0].is_small()) return fail(control_error::bad_op, at[0]);
    std::int64_t v = e[0].small();
    std::optional<op> o = v >= 0 && v <= 255 ? op_from_wire(static_cast<std::uint8_t>(v)) : std::nullopt;
    if (!o) return fail(control_error::unknown_op, at[0]);
    shape s = shape_of(*o);
    if (arity != s.arity) return fail(control_error::bad_arity, tuple_at);
    for (std::size_t i = 1; i < arity; ++i) {
      if (elementwise) {
        at[i] = pos_;
        if (!element_at(e[i])) return false;
      } else {
        e[i] = whole.element(i);
      }
      if (!fits(s.fields[i - 1], e[i])) return fail(control_error::bad_field, at[i]);
    }
    op_ = *o;
    out.body = make_body(*o, e.data());
    if (s.token >= 0) out.trace_token = std::move(e[static_cast<std::size_t>(s.token)]);
    return true;
  }

  bool send_sender(control_message& out) {
    pos_ += 2;
    send_sender_msg m;
    std::size_t at = pos_;
    if (!element_at(m.from)) return false;
    if (!m.from.is_pid()) return fail(control_error::bad_field, at);
    at = pos_;
    if (!element_at(m.to)) return false;
    if (!m.to.is_pid()) return fail(control_error::bad_field, at);
    op_ = op::send_sender;
    out.body = std::move(m);
    return true;
  }

  bool reg_send(control_message& out) {
    pos_ += 2;
    etf::term from, unused, name;
    std::size_t at = pos_;
    if (!element_at(from)) return false;
    if (!from.is_pid()) return fail(control_error::bad_field, at);
    if (!element_at(unused)) return false;
    at = pos_;
    if (!element_at(name)) return false;
    if (!name.is_atom()) return fail(control_error::bad_field, at);
    op_ = op::reg_send;
    out.body = reg_send_msg{std::move(from), name.atom_value()};
    return true;
  }

  // The term after the control tuple; in the pass-through form it has its own 131.
  bool payload(control_message& out, bool versioned) {
    if (!has_payload(op_)) {
      if (pos_ < end_) return fail(control_error::unexpected_payload, pos_);
      return true;
    }
    if (pos_ >= end_) return fail(control_error::missing_payload, pos_);
    if (versioned && !version_byte()) return false;
    std::size_t payload_at = pos_;
    etf::term t;
    if (!term_at(t)) return false;
    if ((op_ == op::spawn_request || op_ == op::spawn_request_tt) && !is_proper_list(t))
      return fail(control_error::bad_payload, payload_at);
    if (pos_ < end_) return fail(control_error::trailing_bytes, pos_);
    out.payload = std::move(t);
    return true;
  }

  const etf::shared_bytes* shared_;  // null: decoding a view (binaries copied)
  const std::uint8_t* p_;
  std::size_t end_, pos_;
  atom_cache* cache_;
  etf::decode_options opts_;
  std::vector<etf::atom> refs_;  // only header packets with references pay for it
  op op_ = op::node_link;
  failure err_;
};

}  // namespace

decode_outcome decode_control_body(const etf::shared_bytes& packet, std::size_t start, std::size_t len,
                                   std::span<const etf::atom> refs) {
  decode_outcome r;
  std::size_t size = packet.size();
  if (start > size || len > size - start) {
    r.ec = make_error_code(control_error::truncated);
    r.offset = start > size ? 0 : size - start;
    return r;
  }
  packet_decoder d(packet, start, start + len, nullptr);
  if (!d.run_body(r.msg, refs)) {
    r.msg = control_message{};
    r.ec = d.error().ec;
    r.offset = d.error().at - start;
    return r;
  }
  r.offset = d.pos() - start;
  return r;
}

decode_outcome decode_control_body(std::span<const std::uint8_t> body, std::span<const etf::atom> refs) {
  decode_outcome r;
  packet_decoder d(body.data(), 0, body.size(), nullptr);
  if (!d.run_body(r.msg, refs)) {
    r.msg = control_message{};
    r.ec = d.error().ec;
    r.offset = d.error().at;
    return r;
  }
  r.offset = d.pos();
  return r;
}

decode_outcome decode_control(const etf::shared_bytes& packet, std::size_t start, std::size_t len,
                              atom_cache* cache) {
  decode_outcome r;
  std::size_t size = packet.size();
  if (start > size || len > size - start) {
    // A caller's slip, not the peer's: report it like a short packet rather than read past the buffer.
    r.ec = make_error_code(control_error::truncated);
    r.offset = start > size ? 0 : size - start;
    return r;
  }
  packet_decoder d(packet, start, start + len, cache);
  if (!d.run(r.msg)) {
    r.msg = control_message{};
    r.ec = d.error().ec;
    r.offset = d.error().at - start;
    return r;
  }
  r.offset = d.pos() - start;
  return r;
}

}  // namespace cnode::dist
