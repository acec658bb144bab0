// Control messages recorded from a live OTP 25.2.3 node pair by integration/dist/test_control_wire.py: decoded,
// checked field by field, and (pass-through form) re-encoded to the very same bytes.
#include <doctest.h>

#include <string>
#include <vector>

#include "dist/control.hpp"
#include "etf/codec.hpp"

using namespace cnode;
using namespace cnode::dist;
using etf::atom;
using etf::term;

namespace {

std::vector<std::uint8_t> hex(std::string_view h) {
  std::vector<std::uint8_t> v;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    v.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return v;
}

decode_outcome decode_bytes(const std::vector<std::uint8_t>& v, atom_cache* cache = nullptr) {
  return decode_control(etf::shared_bytes(v), 0, v.size(), cache);
}

struct recorded_packet {
  op wire;
  const char* hex;
};

// Pass-through packets recorded from OTP 25.2.3 (integration/dist/test_control_wire.py, flags without
// DIST_HDR_ATOM_CACHE): node b@localhost (creation 0x6b02baa2) and c@localhost (0x6b02baa1).
const recorded_packet pass_through_packets[] = {
    {op::monitor_p, // #11, sent by b
     "70836804611358770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f737400000058"
     "000000006b02baa15a0003770b62406c6f63616c686f73746b02baa20003847ec88800019f791f49"},
    {op::link, // #12, sent by b
     "70836803610158770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f737400000058"
     "000000006b02baa1"},
    {op::send_sender, // #13, sent by b
     "70836803611658770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f737400000058"
     "000000006b02baa183680258770b62406c6f63616c686f73740000005a000000006b02baa26d0000000568656c6c6f"},
    {op::unlink_id, // #15, sent by b
     "708368046123610158770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f73740000"
     "0058000000006b02baa1"},
    {op::send_sender, // #17, sent by b
     "70836803611658770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f737400000058"
     "000000006b02baa1836802770473746f707703627965"},
    {op::unlink_id_ack, // #18, sent by c
     "708368046124610158770b63406c6f63616c686f737400000058000000006b02baa158770b62406c6f63616c686f73740000"
     "005a000000006b02baa2"},
    {op::payload_exit, // #19, sent by c
     "70836803611858770b63406c6f63616c686f737400000058000000006b02baa158770b62406c6f63616c686f73740000005a"
     "000000006b02baa2837703627965"},
    {op::payload_monitor_p_exit, // #20, sent by c
     "70836804611c58770b63406c6f63616c686f737400000058000000006b02baa158770b62406c6f63616c686f73740000005a"
     "000000006b02baa25a0003770b62406c6f63616c686f73746b02baa20003847ec88800019f791f49837703627965"},
    {op::group_leader, // #25, sent by b
     "70836803610758770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f737400000059"
     "000000006b02baa1"},
    {op::payload_exit2, // #26, sent by b
     "70836803611a58770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f737400000059"
     "000000006b02baa18377046b696c6c"},
    {op::spawn_request, // #29, sent by b
     "70836806611d5a0003770b62406c6f63616c686f73746b02baa200038485c88800019f791f4958770b62406c6f63616c686f"
     "73740000005a000000006b02baa258770b62406c6f63616c686f737400000047000000006b02baa26803770465727063770c"
     "657865637574655f63616c6c61046c0000000177076d6f6e69746f726a836c000000045a0003770b62406c6f63616c686f73"
     "746b02baa200038484c88800019f791f49770665726c616e67770872656769737465726c00000002770863746c5f6563686f"
     "58770b63406c6f63616c686f73740000005a000000006b02baa16a6a"},
    {op::spawn_reply, // #30, sent by c
     "70836805611f5a0003770b62406c6f63616c686f73746b02baa200038485c88800019f791f4958770b62406c6f63616c686f"
     "73740000005a000000006b02baa2610258770b63406c6f63616c686f73740000005b000000006b02baa1"},
    {op::monitor_p, // #32, sent by b
     "70836804611358770b62406c6f63616c686f73740000005a000000006b02baa2770863746c5f6563686f5a0003770b62406c"
     "6f63616c686f73746b02baa200038486c88800019f791f49"},
    {op::send_sender_tt, // #37, sent by b
     "70836804611758770b62406c6f63616c686f73740000005a000000006b02baa258770b63406c6f63616c686f73740000005c"
     "000000006b02baa1680561006111610158770b62406c6f63616c686f73740000005a000000006b02baa2610083680258770b"
     "62406c6f63616c686f73740000005a000000006b02baa27706747261636564"},
    {op::payload_monitor_p_exit, // #40, sent by c
     "70836804611c770863746c5f6563686f58770b62406c6f63616c686f73740000005a000000006b02baa25a0003770b62406c"
     "6f63616c686f73746b02baa200038486c88800019f791f498377066e6f726d616c"},
    {op::reg_send, // #45, sent by b
     "70836804610658770b62406c6f63616c686f73740000005a000000006b02baa27700770372657883680377092467656e5f63"
     "616c6c680258770b62406c6f63616c686f73740000005a000000006b02baa26c000000017705616c6961735a0003770b6240"
     "6c6f63616c686f73746b02baa20003848cc88900019f791f496805770463616c6c770665726c616e6777046e6f64656a7704"
     "75736572"},
    {op::alias_send, // #46, sent by c
     "70836803612158770b63406c6f63616c686f73740000005e000000006b02baa15a0003770b62406c6f63616c686f73746b02"
     "baa20003848cc88900019f791f498368026c000000017705616c6961735a0003770b62406c6f63616c686f73746b02baa200"
     "03848cc88900019f791f49770b63406c6f63616c686f7374"},
    {op::demonitor_p, // #47, sent by b
     "70836804611458770b62406c6f63616c686f73740000005a000000006b02baa277037265785a0003770b62406c6f63616c68"
     "6f73746b02baa20003848cc88900019f791f49"},
};

// The first six packets b@localhost sent to c@localhost with the atom cache in effect (creation 0x6b02ba9e).
const recorded_packet header_packets[] = {
    {op::reg_send,
     "8344048fcc00220b62406c6f63616c686f737405005803726578e81066656174757265735f72657175657374680461065852"
     "0000000036000000006b02ba9e52015202680258520000000036000000006b02ba9e5203"},
    {op::reg_send,
     "83440907cddd8d0c22050412676c6f62616c5f6e616d655f7365727665724e092467656e5f63617374440c696e69745f636f"
     "6e6e65637465066c6f636b6572c30f6e6f5f6c6f6e6765725f615f7069649a0d636f6e6e656374696f6e5f6964110b63406c"
     "6f63616c686f73746804610658520000000037000000006b02ba9e520152026802520368045204680261086e0801feffffff"
     "ffffff07520068045205520674000000016802520752086200a96fa958520000000038000000006b02ba9e"},
    {op::reg_send,
     "83440407d5002205044e10696e69745f636f6e6e6563745f61636b6804610658520000000037000000006b02ba9e52015202"
     "6804520352006e080100000000000000086e0801feffffffffffff07"},
    {op::send_sender,
     "83440447bc002211e90e66656174757265735f7265706c79e104657270636803611658520000000035000000006b02ba9e58"
     "520100000036000000006b02ba9d6803520252006c0000000152036a"},
    {op::spawn_request,
     "83441387d8f9eaceea8baa890822e50665726c616e6735056170706c79530865726c5f6576616cba046e6f6e651806636c61"
     "757365260772656365697665f2057475706c65f303766172650446726f6d4f0158d9026f706d01213c0461746f6d5a046563"
     "686f800473746f70ab0152090463616c6c0d04657869746806611d5a000352006b02ba9e0002c1857894000262dab4cc5852"
     "000000005a000000006b02ba9e58520000000047000000006b02ba9e68035201520261026a6c000000027000000115000653"
     "61aa461590d1bdf1eb62d1a6eb080000002b000000015203612b6200329b0d5852000000005a000000006b02ba9e68066101"
     "6a5204520474000000006c000000016805520561016a6a6c000000026803520661016c000000016805520561016c00000001"
     "6803520761016c000000026803520861015209680352086101520a6a6a6a6c000000016805520b6101520c68035208610152"
     "096803520761016c000000026803520d6101520e680352086101520a6a6a6a6803520661016c000000016805520561016c00"
     "0000016803520761016c000000026803520d6101520f68035208610152106a6a6a6c000000016804521161016803520d6101"
     "52126c0000000168035208610152106a6a6a6a6a6a6a"},
    {op::monitor_p,
     "83440247002211680461135852000000005a000000006b02ba9e58520100000058000000006b02ba9d5a000352006b02ba9e"
     "0002c1867894000262dab4cc"},
};

term b_pid(std::uint32_t id) { return term::pid({atom("b@localhost"), id, 0, 0x6b02baa2}); }
term c_pid(std::uint32_t id) { return term::pid({atom("c@localhost"), id, 0, 0x6b02baa1}); }

}  // namespace

TEST_CASE("recorded OTP 25 pass-through packets decode, and re-encode to the same bytes") {
  for (const recorded_packet& r : pass_through_packets) {
    std::vector<std::uint8_t> bytes = hex(r.hex);
    CAPTURE(to_string(r.wire));
    decode_outcome d = decode_bytes(bytes);
    REQUIRE_MESSAGE(d, d.ec.message() << " at " << d.offset);
    CHECK(d.msg.wire_op() == r.wire);
    CHECK(encode_control(d.msg) == bytes);
  }
  auto msg = [](op o, int nth = 0) {
    for (const recorded_packet& r : pass_through_packets)
      if (r.wire == o && nth-- == 0) return decode_bytes(hex(r.hex)).msg;
    FAIL("no such packet");
    return control_message{};
  };
  CHECK(std::get<link_msg>(msg(op::link).body) == link_msg{b_pid(90), c_pid(88)});
  CHECK(std::get<unlink_id_msg>(msg(op::unlink_id).body) == unlink_id_msg{1, b_pid(90), c_pid(88)});
  CHECK(std::get<unlink_id_ack_msg>(msg(op::unlink_id_ack).body) == unlink_id_ack_msg{1, c_pid(88), b_pid(90)});
  CHECK(std::get<group_leader_msg>(msg(op::group_leader).body) == group_leader_msg{b_pid(90), c_pid(89)});
  control_message exit2 = msg(op::payload_exit2);
  CHECK(exit2.payload == term(atom("kill")));
  control_message hello = msg(op::send_sender);
  CHECK(hello.payload == term::tuple({b_pid(90), term::binary("hello")}));

  control_message sr = msg(op::spawn_request);
  const auto& req = std::get<spawn_request_msg>(sr.body);
  CHECK(req.from == b_pid(90));
  CHECK(req.mfa == term::tuple({term(atom("erpc")), term(atom("execute_call")), term(4)}));
  CHECK(req.opt_list == term::list({term(atom("monitor"))}));
  REQUIRE(sr.payload);
  std::vector<term> args;
  CHECK(sr.payload->list_to_vector(args));
  CHECK(args.size() == 4);
  control_message sp = msg(op::spawn_reply);
  const auto& rep = std::get<spawn_reply_msg>(sp.body);
  CHECK(rep.req_id == req.req_id);
  CHECK(rep.flags == spawn_reply_msg::flag_monitor);
  CHECK(rep.result == c_pid(91));

  // A gen_server:call through REG_SEND with an [alias|Ref] tag, answered by ALIAS_SEND to that ref.
  control_message call = msg(op::reg_send);
  CHECK(std::get<reg_send_msg>(call.body).to_name == atom("rex"));
  const term& tag = call.payload->element(1).element(1);
  CHECK(tag.head() == term(atom("alias")));
  control_message answer = msg(op::alias_send);
  const auto& reply = std::get<alias_send_msg>(answer.body);
  CHECK(reply.alias == tag.tail());

  control_message by_name = msg(op::payload_monitor_p_exit, 1);
  CHECK(std::get<payload_monitor_p_exit_msg>(by_name.body).from_proc == term(atom("ctl_echo")));
  CHECK(by_name.payload == term(atom("normal")));
  CHECK(std::get<monitor_p_msg>(msg(op::monitor_p, 1).body).to_proc == term(atom("ctl_echo")));
  CHECK(std::get<demonitor_p_msg>(msg(op::demonitor_p).body).to_proc == term(atom("rex")));

  // seq_trace's token {Flags, Label, Serial, From, LastCnt} rides last in SEND_SENDER_TT.
  control_message traced_send = msg(op::send_sender_tt);
  CHECK(traced_send.trace_token == term::tuple({term(0), term(17), term(1), b_pid(90), term(0)}));
}

TEST_CASE("recorded OTP 25 header packets: the atom cache carries atoms from one packet to the next") {
  atom_cache cache;
  std::vector<control_message> got;
  for (const recorded_packet& r : header_packets) {
    CAPTURE(to_string(r.wire));
    decode_outcome d = decode_bytes(hex(r.hex), &cache);
    REQUIRE_MESSAGE(d, d.ec.message() << " at " << d.offset);
    CHECK(d.msg.wire_op() == r.wire);
    got.push_back(d.msg);
    // Our pass-through encoding of it decodes to the same message.
    CHECK(decode_bytes(encode_control(d.msg)).msg == d.msg);
  }
  term b = term::pid({atom("b@localhost"), 54, 0, 0x6b02ba9e});
  CHECK(got[0] == control_message{reg_send_msg{b, atom("rex")}, std::nullopt,
                                  term::tuple({b, term(atom("features_request"))})});
  CHECK(std::get<reg_send_msg>(got[1].body).to_name == atom("global_name_server"));
  // The last one has no new entries at all: every atom in it comes from the cache.
  const auto& mon = std::get<monitor_p_msg>(got[5].body);
  CHECK(mon.from == term::pid({atom("b@localhost"), 90, 0, 0x6b02ba9e}));
  CHECK(mon.to_proc.as_pid().node == atom("c@localhost"));
  CHECK(decode_bytes(hex(header_packets[5].hex)).ec == control_error::atom_cache_miss);
}
