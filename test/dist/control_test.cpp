// The control-message codec: every op round trip, the _TT forms, exact bytes, the distribution header with its
// atom cache, and hostile input (wrong arity, wrong types, truncation at every length).
#include <doctest.h>

#include <string>
#include <vector>

#include "dist/control.hpp"
#include "etf/codec.hpp"
#include "etf/error.hpp"

using namespace cnode;
using namespace cnode::dist;
using etf::atom;
using etf::term;

namespace {

term pid(std::uint32_t id, const char* node = "b@localhost", std::uint32_t creation = 1700000000) {
  return term::pid({atom(node), id, 0, creation});
}

term ref(std::uint32_t w0, const char* node = "b@localhost") {
  etf::ref_value v;
  v.node = atom(node);
  v.creation = 1700000000;
  v.len = 3;
  v.ids[0] = w0;
  v.ids[1] = 0x1234;
  v.ids[2] = 0x5678;
  return term::reference(v);
}

term token() {
  // seq_trace's token: {Flags, Label, Serial, From, LastCnt}
  return term::tuple({term(15), term(17), term(1), pid(9), term(0)});
}

// One message per untraced op, with a payload where the op takes one.
std::vector<control_message> samples() {
  term reason = term::tuple({term(atom("shutdown")), term::string("bye")});
  term msg = term::tuple({term(atom("$gen_call")), term::tuple({pid(1), ref(7)}), term(atom("ping"))});
  std::vector<control_message> v;
  auto add = [&](control_body b, std::optional<term> payload = std::nullopt) {
    v.push_back(control_message{std::move(b), std::nullopt, std::move(payload)});
  };
  add(link_msg{pid(1), pid(2, "c@localhost")});
  add(send_msg{pid(2, "c@localhost")}, msg);
  add(exit_msg{pid(1), pid(2, "c@localhost"), reason});
  add(unlink_msg{pid(1), pid(2, "c@localhost")});
  add(node_link_msg{});
  add(reg_send_msg{pid(1), atom("net_kernel")}, msg);
  add(group_leader_msg{pid(1), pid(2, "c@localhost")});
  add(exit2_msg{pid(1), pid(2, "c@localhost"), term(atom("kill"))});
  add(monitor_p_msg{pid(1), term(atom("rex")), ref(3)});
  add(demonitor_p_msg{pid(1), pid(2, "c@localhost"), ref(3)});
  add(monitor_p_exit_msg{term(atom("rex")), pid(1), ref(3), term(atom("noproc"))});
  add(send_sender_msg{pid(1), pid(2, "c@localhost")}, msg);
  add(payload_exit_msg{pid(1), pid(2, "c@localhost")}, reason);
  add(payload_exit2_msg{pid(1), pid(2, "c@localhost")}, term(atom("normal")));
  add(payload_monitor_p_exit_msg{pid(5, "c@localhost"), pid(1), ref(3)}, reason);
  add(spawn_request_msg{ref(4), pid(1), pid(0), term::tuple({term(atom("erpc")), term(atom("execute_call")), term(4)}),
                        term::list({term(atom("monitor"))})},
      term::list({ref(5), term(atom("erlang")), term(atom("node")), term()}));
  add(spawn_reply_msg{ref(4), pid(1), spawn_reply_msg::flag_monitor, pid(6, "c@localhost")});
  add(alias_send_msg{pid(5, "c@localhost"), ref(3)}, term::tuple({term::improper_list({term(atom("alias"))}, ref(3)),
                                                                   term(atom("yes"))}));
  add(unlink_id_msg{std::uint64_t{1} << 63, pid(1), pid(2, "c@localhost")});
  add(unlink_id_ack_msg{42, pid(2, "c@localhost"), pid(1)});
  return v;
}

etf::shared_bytes shared(const std::vector<std::uint8_t>& v) { return etf::shared_bytes(v); }

decode_outcome decode_bytes(const std::vector<std::uint8_t>& v, atom_cache* cache = nullptr) {
  return decode_control(shared(v), 0, v.size(), cache);
}

std::vector<std::uint8_t> hex(std::string_view h) {
  std::vector<std::uint8_t> v;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    v.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return v;
}

// Encodes a control tuple given as a term, pass-through, with an optional payload.
std::vector<std::uint8_t> raw(const term& control, std::optional<term> payload = std::nullopt) {
  std::vector<std::uint8_t> out{112};
  etf::encode(control, out, {.utf8_atoms = true});
  if (payload) etf::encode(*payload, out, {.utf8_atoms = true});
  return out;
}

std::error_code error_of(const std::vector<std::uint8_t>& v) { return decode_bytes(v).ec; }

// The control tuple of an encoded message, read back with the term codec.
term control_tuple(const control_message& m) {
  std::vector<std::uint8_t> b = encode_control(m);
  etf::decode_result r = etf::decode_prefix(std::span<const std::uint8_t>(b).subspan(1));
  REQUIRE(r);
  return r.value;
}

}  // namespace

TEST_CASE("op table: names, wire numbers, payloads, _TT twins") {
  CHECK(to_string(op::payload_monitor_p_exit) == "PAYLOAD_MONITOR_P_EXIT");
  CHECK(to_string(op::unlink_id_ack) == "UNLINK_ID_ACK");
  CHECK(to_string(static_cast<op>(99)) == "UNKNOWN");
  int known = 0;
  for (int v = 0; v < 256; ++v) {
    auto o = op_from_wire(static_cast<std::uint8_t>(v));
    if (!o) continue;
    ++known;
    CHECK(static_cast<int>(*o) == v);
    CHECK(to_string(*o) != "UNKNOWN");
  }
  CHECK(known == 30);
  CHECK_FALSE(op_from_wire(37));  // ALTACT_SIG_SEND: newer than OTP 27
  CHECK_FALSE(op_from_wire(9));
  CHECK(has_payload(op::spawn_request_tt));
  CHECK_FALSE(has_payload(op::spawn_reply));
  CHECK_FALSE(has_payload(op::exit_tt));  // the reason is inside the tuple
  CHECK(traced(op::payload_exit2) == op::payload_exit2_tt);
  CHECK_FALSE(traced(op::monitor_p));
  CHECK_FALSE(traced(op::unlink_id));
}

TEST_CASE("every op: encode then decode gives the same message, untraced and traced") {
  for (const control_message& m : samples()) {
    op base = body_op(m.body);
    CAPTURE(to_string(base));
    CHECK(m.wire_op() == base);
    std::vector<std::uint8_t> bytes = encode_control(m);
    REQUIRE(bytes.size() > 5);
    CHECK(bytes[0] == 112);
    CHECK(bytes[1] == 131);
    CHECK(bytes[2] == 104);  // SMALL_TUPLE_EXT
    CHECK(bytes[4] == 97);   // SMALL_INTEGER_EXT
    CHECK(bytes[5] == static_cast<std::uint8_t>(base));
    decode_outcome d = decode_bytes(bytes);
    REQUIRE_MESSAGE(d, d.ec.message() << " at " << d.offset);
    CHECK(d.offset == bytes.size());
    CHECK(d.msg == m);
    CHECK(d.msg.wire_op() == base);
    CHECK(d.msg.payload.has_value() == has_payload(base));

    if (auto tt = traced(base)) {
      control_message t = m;
      t.trace_token = token();
      CHECK(t.wire_op() == *tt);
      std::vector<std::uint8_t> tb = encode_control(t);
      CHECK(tb[3] == bytes[3] + 1);  // one more element
      CHECK(tb[5] == static_cast<std::uint8_t>(*tt));
      decode_outcome td = decode_bytes(tb);
      REQUIRE_MESSAGE(td, td.ec.message() << " at " << td.offset);
      CHECK(td.msg == t);
      CHECK(td.msg.wire_op() == *tt);
    }
  }
}

TEST_CASE("_TT forms put the token where erl_dist_protocol says") {
  term from = pid(1), to = pid(2, "c@localhost"), tok = token(), reason = term(atom("boom"));
  // EXIT_TT {13, From, To, Token, Reason}: the token comes before the reason.
  control_message m{exit_msg{from, to, reason}, tok, std::nullopt};
  CHECK(control_tuple(m) == term::tuple({term(13), from, to, tok, reason}));
  m.body = exit2_msg{from, to, reason};
  CHECK(control_tuple(m) == term::tuple({term(18), from, to, tok, reason}));
  // REG_SEND_TT {16, From, '', ToName, Token}
  m = control_message{reg_send_msg{from, atom("rex")}, tok, term(1)};
  CHECK(control_tuple(m) == term::tuple({term(16), from, term(atom()), term(atom("rex")), tok}));
  // SPAWN_REPLY_TT {32, ReqId, To, Flags, Result, Token}
  m = control_message{spawn_reply_msg{ref(1), from, 3, term(atom("badopt"))}, tok, std::nullopt};
  CHECK(control_tuple(m) == term::tuple({term(32), ref(1), from, term(3), term(atom("badopt")), tok}));
  // SPAWN_REQUEST_TT {30, ReqId, From, GL, MFA, OptList, Token}
  term mfa = term::tuple({term(atom("m")), term(atom("f")), term(0)});
  m = control_message{spawn_request_msg{ref(1), from, to, mfa, term()}, tok, term()};
  CHECK(control_tuple(m) == term::tuple({term(30), ref(1), from, to, mfa, term(), tok}));
}

TEST_CASE("exact bytes: SEND with Unused '' and the payload behind its own 131") {
  control_message m{send_msg{term::pid({atom("a@h"), 1, 2, 3})}, std::nullopt, term(7)};
  CHECK(encode_control(m) == hex("70"                                    // 'p'
                                 "83" "6803" "6102"                      // 131 {2,
                                 "7700"                                  //   '',
                                 "58" "7703" "614068" "00000001" "00000002" "00000003"  // <a@h.1.2.3>}
                                 "83" "6107"));                          // 131 7
}

TEST_CASE("encode refuses messages that cannot be well formed") {
  CHECK_THROWS_AS(encode_control(control_message{link_msg{pid(1), pid(2)}, token(), std::nullopt}),
                  std::invalid_argument);
  CHECK_THROWS_AS(encode_control(control_message{send_msg{pid(2)}, std::nullopt, std::nullopt}),
                  std::invalid_argument);
  CHECK_THROWS_AS(encode_control(control_message{link_msg{pid(1), pid(2)}, std::nullopt, term(1)}),
                  std::invalid_argument);
  std::vector<std::uint8_t> out{1, 2, 3};
  CHECK_THROWS(encode_control(control_message{unlink_msg{pid(1), pid(2)}, token(), std::nullopt}, out));
  CHECK(out == std::vector<std::uint8_t>{1, 2, 3});
}

TEST_CASE("shape errors: arity, op, field types, payload presence") {
  term p1 = pid(1), p2 = pid(2), r = ref(1);
  CHECK(error_of({}) == control_error::empty_packet);
  CHECK(error_of({7, 131, 104, 1, 97, 5}) == control_error::bad_packet_type);
  CHECK(error_of({112, 130, 104, 1, 97, 5}) == control_error::missing_version);
  CHECK(error_of({112, 131, 104, 1, 97, 5}).value() == 0);  // {5}: NODE_LINK
  CHECK(error_of({112, 131, 104, 0}) == control_error::bad_op);
  CHECK(error_of(raw(term(atom("x")))) == control_error::not_a_tuple);
  CHECK(error_of(raw(term::tuple({term(atom("link")), p1, p2}))) == control_error::bad_op);
  CHECK(error_of(raw(term::tuple({term(37), p1, p2, p2}))) == control_error::unknown_op);
  CHECK(error_of(raw(term::tuple({term(-1), p1, p2}))) == control_error::unknown_op);
  CHECK(error_of(raw(term::tuple({term(1), p1}))) == control_error::bad_arity);
  CHECK(error_of(raw(term::tuple({term(1), p1, p2, p2}))) == control_error::bad_arity);
  CHECK(error_of(raw(term::tuple({term(19), p1, term(atom("rex")), r, r}))) == control_error::bad_arity);

  // A non-pid where a pid goes, reported at the element's offset: 'p' 131 104 3 97 1 <from at 6>.
  std::vector<std::uint8_t> bad_link = raw(term::tuple({term(1), term(atom("me")), p2}));
  decode_outcome d = decode_bytes(bad_link);
  CHECK(d.ec == control_error::bad_field);
  CHECK(d.offset == 6);
  std::vector<std::uint8_t> bad_to = raw(term::tuple({term(1), p1, term(3)}));
  d = decode_bytes(bad_to);
  CHECK(d.ec == control_error::bad_field);
  CHECK(d.offset == 6 + (etf::encode(p1, {.utf8_atoms = true, .version = false})).size());

  auto field_error = [&](std::initializer_list<term> elems, std::optional<term> payload = std::nullopt) {
    return error_of(raw(term::tuple(elems), payload));
  };
  CHECK(field_error({term(2), term(atom("")), term(atom("name"))}, term(1)) == control_error::bad_field);
  // SEND_SENDER and REG_SEND (read by their own path): a bad field at its offset, the right arity only, a payload
  // required, a truncated element; OK with the right fields.
  const std::size_t p1_len = etf::encode(p1, {.utf8_atoms = true, .version = false}).size();
  d = decode_bytes(raw(term::tuple({term(22), term(atom("me")), p2}), term(1)));
  CHECK(d.ec == control_error::bad_field);
  CHECK(d.offset == 6);
  d = decode_bytes(raw(term::tuple({term(22), p1, term(7)}), term(1)));
  CHECK(d.ec == control_error::bad_field);
  CHECK(d.offset == 6 + p1_len);
  CHECK(field_error({term(22), p1, p2}, term(1)).value() == 0);
  CHECK(field_error({term(22), p1, p2}) == control_error::missing_payload);
  CHECK(field_error({term(22), p1}, term(1)) == control_error::bad_arity);
  d = decode_bytes(raw(term::tuple({term(6), p1, term(atom("")), term(atom("name"))}), term(1)));
  CHECK(d.ec.value() == 0);
  CHECK(std::get<reg_send_msg>(d.msg.body).to_name == atom("name"));
  CHECK(std::get<reg_send_msg>(d.msg.body).from == p1);
  d = decode_bytes(raw(term::tuple({term(6), p1, term(5), term(7)}), term(1)));
  CHECK(d.ec == control_error::bad_field);
  CHECK(d.offset == 6 + p1_len + 2);
  d = decode_bytes(raw(term::tuple({term(6), term(3), term(5), term(atom("x"))}), term(1)));
  CHECK(d.ec == control_error::bad_field);
  CHECK(d.offset == 6);
  CHECK(field_error({term(6), p1, term(atom("")), term(atom("x")), term(1)}, term(1)) == control_error::bad_arity);
  std::vector<std::uint8_t> cut = raw(term::tuple({term(22), p1, p2}), term(1));
  cut.resize(6 + p1_len + 3);
  CHECK(decode_bytes(cut).ec == etf::error::truncated);
  CHECK(field_error({term(6), p1, term(atom("")), p2}, term(1)) == control_error::bad_field);
  CHECK(field_error({term(19), p1, term(1), r}) == control_error::bad_field);  // ToProc neither pid nor atom
  CHECK(field_error({term(19), p1, p2, p2}) == control_error::bad_field);      // Ref not a reference
  CHECK(field_error({term(33), p1, p2}, term(1)) == control_error::bad_field);  // alias must be a reference
  CHECK(field_error({term(35), term(0), p1, p2}) == control_error::bad_field);  // UNLINK_ID Id 0 (dist.c)
  CHECK(field_error({term(35), term(-5), p1, p2}) == control_error::bad_field);
  CHECK(field_error({term(35), term::from_big(etf::big_int(1) << 64), p1, p2}) == control_error::bad_field);
  CHECK(field_error({term(36), term(0), p1, p2}).value() == 0);  // the ack has no such rule
  CHECK(field_error({term(31), r, p1, term(1 << 27), p2}) == control_error::bad_field);
  CHECK(field_error({term(31), r, p1, term(2), term(3)}) == control_error::bad_field);
  term mfa = term::tuple({term(atom("m")), term(atom("f")), term(0)});
  CHECK(field_error({term(29), r, p1, p1, mfa, term()}, term()).value() == 0);
  CHECK(field_error({term(29), r, p1, p1, term::tuple({term(atom("m")), term(atom("f"))}), term()}, term()) ==
        control_error::bad_field);
  CHECK(field_error({term(29), r, p1, p1, term::tuple({term(atom("m")), term(1), term(0)}), term()}, term()) ==
        control_error::bad_field);
  CHECK(field_error({term(29), r, p1, p1, mfa, term::improper_list({term(1)}, term(2))}, term()) ==
        control_error::bad_field);
  CHECK(field_error({term(29), r, p1, p1, mfa, term()}, term(atom("notalist"))) == control_error::bad_payload);

  // Payload presence is fixed per op.
  CHECK(error_of(raw(term::tuple({term(22), p1, p2}))) == control_error::missing_payload);
  std::vector<std::uint8_t> only_version = raw(term::tuple({term(22), p1, p2}));
  only_version.push_back(131);
  CHECK(error_of(only_version) == etf::error::truncated);
  CHECK(error_of(raw(term::tuple({term(1), p1, p2}), term(1))) == control_error::unexpected_payload);
  std::vector<std::uint8_t> no_magic = raw(term::tuple({term(22), p1, p2}));
  no_magic.push_back(97);
  no_magic.push_back(1);
  CHECK(error_of(no_magic) == control_error::missing_version);
  std::vector<std::uint8_t> trailing = raw(term::tuple({term(22), p1, p2}), term(1));
  trailing.push_back(0);
  d = decode_bytes(trailing);
  CHECK(d.ec == control_error::trailing_bytes);
  CHECK(d.offset == trailing.size() - 1);
}

TEST_CASE("truncation at every length fails cleanly, within the packet") {
  for (const control_message& m : samples()) {
    CAPTURE(to_string(body_op(m.body)));
    control_message t = m;
    if (traced(body_op(m.body))) t.trace_token = token();
    std::vector<std::uint8_t> full = encode_control(t);
    for (std::size_t n = 0; n < full.size(); ++n) {
      CAPTURE(n);
      // Decode a prefix of a buffer that still holds the rest: nothing past n may be used.
      decode_outcome d = decode_control(shared(full), 0, n);
      CHECK_FALSE(d);
      CHECK(d.offset <= n);
      std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
      decode_outcome c = decode_bytes(cut);
      CHECK_FALSE(c);
      CHECK(c.offset <= n);
    }
  }
}

TEST_CASE("a packet in the middle of a larger buffer") {
  control_message m = samples()[1];
  std::vector<std::uint8_t> buf{9, 9, 9};
  encode_control(m, buf);
  std::size_t len = buf.size() - 3;
  buf.insert(buf.end(), {131, 97, 1});
  decode_outcome d = decode_control(shared(buf), 3, len);
  REQUIRE(d);
  CHECK(d.offset == len);
  CHECK(d.msg == m);
  CHECK(decode_control(shared(buf), 3, len + 1).ec == control_error::trailing_bytes);
  CHECK(decode_control(shared(buf), 3, buf.size()).ec == control_error::truncated);  // past the buffer
}

TEST_CASE("large binaries in the payload refer into the packet") {
  std::vector<std::uint8_t> big(1000, 0xab);
  control_message m{send_sender_msg{pid(1), pid(2)}, std::nullopt, term::binary(std::span<const std::uint8_t>(big))};
  std::vector<std::uint8_t> bytes = encode_control(m);
  etf::shared_bytes packet(bytes);
  decode_outcome d = decode_control(packet, 0, packet.size());
  REQUIRE(d);
  CHECK(d.msg == m);
  const std::uint8_t* p = d.msg.payload->bytes().data();
  CHECK(p >= packet.data());
  CHECK(p < packet.data() + packet.size());
}

TEST_CASE("distribution header: new atom cache entries, cached references, long atoms, misses") {
  // {6, Pid, '', Name} + {hello, Name} with every atom through the cache. Node atom, '', net_kernel, hello.
  // Refs: 0 = b@localhost (new, segment 1, index 5), 1 = '' (new, seg 0, idx 9), 2 = net_kernel (new, seg 7,
  // idx 255), 3 = hello (new, seg 0, idx 0).
  std::vector<std::uint8_t> p{131, 68, 4};
  // Flags: N = 4 → 3 bytes; ref 0 low nibble, ref 1 high nibble, ...; the nibble after the last ref (index 4, low
  // half of byte 2) holds LongAtoms = 0.
  p.insert(p.end(), {0x89,    // ref 0: 0x9 (new, segment 1); ref 1: 0x8 (new, segment 0)
                     0x8f,    // ref 2: 0xf (new, segment 7); ref 3: 0x8 (new, segment 0)
                     0x00});  // LongAtoms off
  auto new_entry = [&](std::uint8_t idx, std::string_view text) {
    p.push_back(idx);
    p.push_back(static_cast<std::uint8_t>(text.size()));
    p.insert(p.end(), text.begin(), text.end());
  };
  new_entry(5, "b@localhost");
  new_entry(9, "");
  new_entry(255, "net_kernel");
  new_entry(0, "hello");
  // Control {6, Pid, '', net_kernel} with ATOM_CACHE_REF (82) for the atoms, no 131.
  std::vector<std::uint8_t> pid_bytes{88, 82, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1};
  p.insert(p.end(), {104, 4, 97, 6});
  p.insert(p.end(), pid_bytes.begin(), pid_bytes.end());
  p.insert(p.end(), {82, 1, 82, 2});
  // Payload {hello, net_kernel}
  p.insert(p.end(), {104, 2, 82, 3, 82, 2});

  atom_cache cache;
  decode_outcome d = decode_bytes(p, &cache);
  REQUIRE_MESSAGE(d, d.ec.message() << " at " << d.offset);
  term from = term::pid({atom("b@localhost"), 7, 0, 1});
  CHECK(d.msg == control_message{reg_send_msg{from, atom("net_kernel")}, std::nullopt,
                                 term::tuple({term(atom("hello")), term(atom("net_kernel"))})});
  REQUIRE(cache.find(1 * 256 + 5));
  CHECK(*cache.find(1 * 256 + 5) == atom("b@localhost"));
  CHECK(*cache.find(7 * 256 + 255) == atom("net_kernel"));
  CHECK(*cache.find(9) == atom(""));
  CHECK(*cache.find(0) == atom("hello"));
  CHECK(cache.find(100) == nullptr);
  CHECK(cache.find(5000) == nullptr);

  // Without a cache the new entries still serve this packet.
  CHECK(decode_bytes(p));

  // A later packet refers to the cached entries only: {19, Pid, net_kernel, Ref}, N = 3, odd → LongAtoms in the
  // high half of the last flag byte; set it to check it is read even with no new entries.
  std::vector<std::uint8_t> q{131, 68, 3, 0x71, 0x10};  // segments 1, 7, 0, none new; LongAtoms on
  q.insert(q.end(), {5, 255, 9});  // ref 0 = seg 1 idx 5, ref 1 = seg 7 idx 255, ref 2 = seg 0 idx 9
  q.insert(q.end(), {104, 4, 97, 19});
  q.insert(q.end(), pid_bytes.begin(), pid_bytes.end());
  q.insert(q.end(), {82, 1});
  q.insert(q.end(), {90, 0, 1, 82, 0, 0, 0, 0, 1, 0, 0, 0, 42});
  decode_outcome e = decode_bytes(q, &cache);
  REQUIRE_MESSAGE(e, e.ec.message() << " at " << e.offset);
  const auto& mon = std::get<monitor_p_msg>(e.msg.body);
  CHECK(mon.from == from);
  CHECK(mon.to_proc == term(atom("net_kernel")));
  CHECK(mon.ref.as_ref().node == atom("b@localhost"));

  // The same packet without the cache, or with a cleared one, misses at the first cached reference.
  decode_outcome miss = decode_bytes(q);
  CHECK(miss.ec == control_error::atom_cache_miss);
  CHECK(miss.offset == 5);
  atom_cache empty;
  CHECK(decode_bytes(q, &empty).ec == control_error::atom_cache_miss);

  // Long atoms: N = 1, flags byte = ref 0 (new, seg 2) | LongAtoms in the high nibble.
  std::vector<std::uint8_t> l{131, 68, 1, 0x1a, 3, 0, 5};
  std::string_view name = "hello";
  l.insert(l.end(), name.begin(), name.end());
  l.insert(l.end(), {104, 1, 97, 5});
  atom_cache c2;
  decode_outcome ld = decode_bytes(l, &c2);
  REQUIRE_MESSAGE(ld, ld.ec.message() << " at " << ld.offset);
  CHECK(*c2.find(2 * 256 + 3) == atom("hello"));

  // No refs at all: 131, 68, 0, then the control.
  CHECK(decode_bytes({131, 68, 0, 104, 1, 97, 5}));
  // Bad atom text in a new entry (invalid UTF-8), reported at its length byte.
  std::vector<std::uint8_t> bad{131, 68, 1, 0x08, 0, 1, 0xff, 104, 1, 97, 5};
  decode_outcome b = decode_bytes(bad, &c2);
  CHECK(b.ec == control_error::bad_atom_text);
  CHECK(b.offset == 5);
  // A reference index past the header's refs.
  CHECK(decode_bytes({131, 68, 0, 104, 1, 82, 0}).ec == etf::error::atom_cache_miss);
  // Fragments and unknown header tags.
  CHECK(decode_bytes({131, 69, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0}).ec ==
        control_error::fragments_unsupported);
  CHECK(decode_bytes({131, 70, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}).ec ==
        control_error::fragments_unsupported);
  CHECK(decode_bytes({131, 104, 1, 97, 5}).ec == control_error::bad_header);
  // Truncated headers, at every length.
  for (std::size_t n = 0; n < p.size(); ++n) {
    std::vector<std::uint8_t> cut(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(n));
    atom_cache c;
    decode_outcome t = decode_bytes(cut, &c);
    CHECK_FALSE(t);
    CHECK(t.offset <= n);
  }
}

TEST_CASE("a control term that is not written element by element is still checked") {
  // A compressed control tuple: erts never sends one, but it is a valid term.
  std::string node(200, 'x');
  node += "@h";
  term control = term::tuple({term(1), pid(1, node.c_str()), pid(2, node.c_str())});
  std::vector<std::uint8_t> b{112};
  etf::encode(control, b, {.utf8_atoms = true, .compression_level = 9});
  REQUIRE(b[2] == 80);
  decode_outcome d = decode_bytes(b);
  REQUIRE(d);
  CHECK(d.msg == control_message{link_msg{pid(1, node.c_str()), pid(2, node.c_str())}, std::nullopt, std::nullopt});
  term bad = term::tuple({term(1), pid(1, node.c_str()), term(atom(node))});
  std::vector<std::uint8_t> c{112};
  etf::encode(bad, c, {.utf8_atoms = true, .compression_level = 9});
  CHECK_FALSE(decode_bytes(c));
}

TEST_CASE("control_error has its own category and messages") {
  std::error_code ec = control_error::bad_arity;
  CHECK(ec.category() == control_category());
  CHECK(std::string(ec.category().name()) == "cnode.dist.control");
  CHECK(ec.message().find("arity") != std::string::npos);
  CHECK(ec != std::error_code(etf::error::truncated));
}

TEST_CASE("a header-form body decoded from a view: every op, truncation, binaries copied, pids by their bytes") {
  // distribution::on_message decodes small messages from the read buffer (decode_control_body over a span).
  for (const control_message& m : samples()) {
    CAPTURE(to_string(body_op(m.body)));
    std::vector<std::uint8_t> full = encode_control(m, packet_form::header);
    REQUIRE(full.size() > 3);
    std::span<const std::uint8_t> body(full.data() + 3, full.size() - 3);  // after 131, 68, 0
    decode_outcome v = decode_control_body(body, {});
    REQUIRE(v);
    CHECK(v.offset == body.size());
    CHECK(v.msg == m);
    decode_outcome again = decode_control_body(body, {});  // the second time its pids come from the cache
    REQUIRE(again);
    CHECK(again.msg == m);
    for (std::size_t n = 0; n < body.size(); ++n) {
      CAPTURE(n);
      std::vector<std::uint8_t> cut(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(n));
      decode_outcome c = decode_control_body(std::span<const std::uint8_t>(cut), {});
      CHECK_FALSE(c);
      CHECK(c.offset <= n);
    }
  }
  // Pids that differ in one byte (id, serial, creation, node) stay apart however often each is seen.
  std::vector<term> pids{pid(1), pid(2), term::pid({atom("b@localhost"), 1, 1, 1700000000}), pid(1, "b@localhost", 7),
                         pid(1, "c@localhost"), pid(1, "b@localhosu")};
  for (int round = 0; round < 3; ++round) {
    for (const term& from : pids) {
      for (const term& to : pids) {
        control_message m{send_sender_msg{from, to}, std::nullopt, term(atom("x"))};
        std::vector<std::uint8_t> full = encode_control(m, packet_form::header);
        decode_outcome d = decode_control_body(std::span<const std::uint8_t>(full).subspan(3), {});
        REQUIRE(d);
        CHECK(d.msg == m);
      }
    }
  }
  // A bad pid after a good one with the same node is still refused (the cache only holds what decoded).
  {
    control_message m{send_sender_msg{pid(1), pid(2)}, std::nullopt, term(atom("x"))};
    std::vector<std::uint8_t> full = encode_control(m, packet_form::header);
    REQUIRE(decode_control_body(std::span<const std::uint8_t>(full).subspan(3), {}));
    std::vector<std::uint8_t> bad = full;
    bad[3 + 4 + 1] = 200;  // the first pid's node: no atom tag
    CHECK_FALSE(decode_control_body(std::span<const std::uint8_t>(bad).subspan(3), {}));
  }
  // Binaries of a view are copies: nothing refers into bytes that are not kept.
  std::vector<std::uint8_t> big(1000, 0xab);
  control_message m{send_sender_msg{pid(1), pid(2)}, std::nullopt, term::binary(std::span<const std::uint8_t>(big))};
  std::vector<std::uint8_t> full = encode_control(m, packet_form::header);
  decode_outcome d = decode_control_body(std::span<const std::uint8_t>(full).subspan(3), {});
  REQUIRE(d);
  CHECK(d.msg == m);
  const std::uint8_t* p = d.msg.payload->bytes().data();
  CHECK((p < full.data() || p >= full.data() + full.size()));
}
