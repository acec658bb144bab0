#include <doctest.h>

#include <string>

#include "epmd/protocol.hpp"

using namespace cnode::epmd;

namespace {
bytes b(std::string_view s) { return bytes(s.begin(), s.end()); }
bytes payload_of(const bytes& packet) { return bytes(packet.begin() + 2, packet.end()); }
bytes alive_payload(std::string_view name, std::string_view extra = "", std::uint16_t high = 6) {
  node_info n;
  n.name = std::string(name);
  n.extra = std::string(extra);
  n.port = 0x1389;
  n.highest_version = high;
  return payload_of(encode_request(alive2_request{n}));
}
}  // namespace

TEST_CASE("ALIVE2_REQ encodes as the documented layout") {
  node_info n{"cnode", 9100, 72, 0, 6, 5, "xy"};
  bytes p = encode_request(alive2_request{n});
  bytes want = {0, 20, 120, 0x23, 0x8c, 72, 0, 0, 6, 0, 5, 0, 5, 'c', 'n', 'o', 'd', 'e', 0, 2, 'x', 'y'};
  CHECK(p == want);
}

TEST_CASE("other requests encode with their tags") {
  CHECK(encode_request(port_please2_request{"a"}) == bytes{0, 2, 122, 'a'});
  CHECK(encode_request(names_request{}) == bytes{0, 1, 110});
  CHECK(encode_request(dump_request{}) == bytes{0, 1, 100});
  CHECK(encode_request(kill_request{}) == bytes{0, 1, 107});
  CHECK(encode_request(stop_request{"n"}) == bytes{0, 2, 115, 'n'});
}

TEST_CASE("request round trip through the server parser") {
  node_info n{"n\xc3\xa9", 1, 77, 0, 6, 5, std::string("\0e", 2)};
  auto r = parse_request(payload_of(encode_request(alive2_request{n})));
  REQUIRE(r.value);
  CHECK(std::get<alive2_request>(*r.value).node == n);
  auto p = parse_request(payload_of(encode_request(port_please2_request{"abc"})));
  REQUIRE(p.value);
  CHECK(std::get<port_please2_request>(*p.value).name == "abc");
}

TEST_CASE("framing follows epmd's do_read") {
  CHECK(check_frame(bytes{}).status == frame_check::state::need_more);
  CHECK(check_frame(bytes{0}).status == frame_check::state::need_more);
  auto zero = check_frame(bytes{0, 0});
  CHECK(zero.status == frame_check::state::failed);
  CHECK(zero.ec == make_error_code(error::invalid_packet_size));
  CHECK(check_frame(bytes{0x0b, 0xf1}).status == frame_check::state::need_more);  // 3057 is the largest
  CHECK(check_frame(bytes{0x0b, 0xf2}).ec == make_error_code(error::invalid_packet_size));
  CHECK(check_frame(bytes{0xff, 0xff}).ec == make_error_code(error::invalid_packet_size));
  auto one = check_frame(bytes{0, 1, 'n'});
  CHECK(one.status == frame_check::state::complete);
  CHECK(one.packet_size == 3);
  CHECK(check_frame(bytes{0, 1, 'n', 0}).ec == make_error_code(error::bytes_after_packet));
  CHECK(check_frame(bytes{0, 3, 'z'}).status == frame_check::state::need_more);
}

TEST_CASE("malformed requests fail precisely") {
  CHECK(parse_request(bytes{}).ec == make_error_code(error::request_too_short));
  auto garbage = parse_request(b("Q"));
  CHECK(garbage.ec == make_error_code(error::unknown_request));
  CHECK(garbage.offset == 0);
  bytes thirteen(13, 0);
  thirteen[0] = 120;
  CHECK(parse_request(thirteen).ec == make_error_code(error::request_too_short));

  bytes p = alive_payload("ab");
  p[10] = 10;  // Nlen 10 in a 2-character name
  auto r = parse_request(p);
  CHECK(r.ec == make_error_code(error::name_size_error));
  CHECK(r.offset == 9);

  p = alive_payload("ab", "xyz");
  p[14] = 9;  // Elen 9 with 3 bytes present
  CHECK(parse_request(p).ec == make_error_code(error::extra_size_error));

  p = alive_payload("ab");
  p[12] = 0;
  auto nul = parse_request(p);
  CHECK(nul.ec == make_error_code(error::name_contains_nul));
  CHECK(nul.offset == 12);

  CHECK(parse_request(b("z")).ec == make_error_code(error::request_too_short));
  CHECK(parse_request(bytes{'z', 0}).ec == make_error_code(error::request_too_short));
  CHECK(parse_request(bytes{'z', 'a', 0, 'b'}).ec == make_error_code(error::name_contains_nul));
  CHECK(parse_request(bytes{'z', 0xff}).ec == make_error_code(error::invalid_node_name));
  CHECK(parse_request(bytes(257, 'q')).ec == make_error_code(error::unknown_request));
  bytes long_name(257, 'q');
  long_name[0] = 'z';
  CHECK(parse_request(long_name).ec == make_error_code(error::invalid_node_name));
}

TEST_CASE("accepted oddities that the real epmd accepts too") {
  // A 0-length name plus a spare byte passes the size test (bsize <= 13 fails, 14 passes).
  bytes p = alive_payload("");
  p.push_back('Z');
  auto r = parse_request(p);
  REQUIRE(r.value);
  CHECK(std::get<alive2_request>(*r.value).node.name.empty());
  // PORT_PLEASE2 with a trailing NUL, NAMES with trailing bytes, STOP reads a C string.
  auto pp = parse_request(bytes{'z', 'a', 0});
  REQUIRE(pp.value);
  CHECK(std::get<port_please2_request>(*pp.value).name == "a");
  CHECK(parse_request(bytes{'n', 0, 1}).value.has_value());
  auto st = parse_request(bytes{'s', 'a', 0, 'b'});
  REQUIRE(st.value);
  CHECK(std::get<stop_request>(*st.value).name == "a");
}

TEST_CASE("registration validation in epmd's order") {
  node_info n;
  n.name = std::string(255, 'x');
  CHECK_FALSE(validate_registration(n));
  n.name = std::string(256, 'x');
  CHECK(validate_registration(n) == error::name_too_long);
  n.name.clear();
  for (int i = 0; i < 255; ++i) n.name += "\xc3\xa9";  // 255 characters, 510 bytes
  CHECK_FALSE(validate_registration(n));
  n.name = "\xff\xfe";
  CHECK(validate_registration(n) == error::invalid_name_encoding);
  n.name = "ok";
  n.extra = std::string(1021, 'e');
  CHECK(validate_registration(n) == error::extra_too_long);
}

TEST_CASE("UTF-8 rules") {
  CHECK(utf8_length("") == 0);
  CHECK(utf8_length("abc") == 3);
  CHECK(utf8_length("\xc3\xa9") == 1);
  CHECK(utf8_length("\xe2\x82\xac") == 1);
  CHECK(utf8_length("\xf0\x9f\x98\x80") == 1);
  CHECK(utf8_length("\xc0\x80") == -1);          // overlong
  CHECK(utf8_length("\xe0\x80\x80") == -1);      // overlong
  CHECK(utf8_length("\xed\xa0\x80") == -1);      // surrogate
  CHECK(utf8_length("\xf4\x90\x80\x80") == -1);  // above U+10FFFF
  CHECK(utf8_length("\xc3") == -1);              // truncated
}

TEST_CASE("responses encode as the real epmd sends them") {
  CHECK(encode_alive2_response(true, 0x6b02b039, true) == bytes{118, 0, 0x6b, 0x02, 0xb0, 0x39});
  CHECK(encode_alive2_response(false, 99, true) == bytes{118, 1, 0, 0, 0, 99});
  CHECK(encode_alive2_response(true, 3, false) == bytes{121, 0, 0, 3});
  CHECK(encode_port2_not_found() == bytes{119, 1});
  node_info y{"y", 5000, 77, 0, 6, 5, "EXTRA"};
  CHECK(encode_port2_response(y) == bytes{119, 0, 0x13, 0x88, 77, 0, 0, 6, 0, 5, 0, 1, 'y', 0, 5, 'E', 'X', 'T', 'R',
                                          'A'});
  bytes names;
  append_u32(names, 41529);
  append_names_line(names, "bar", 5002);
  CHECK(names == bytes{0, 0, 0xa2, 0x39, 'n', 'a', 'm', 'e', ' ', 'b', 'a', 'r', ' ', 'a', 't', ' ', 'p', 'o', 'r',
                       't', ' ', '5', '0', '0', '2', '\n'});
  bytes dump;
  append_dump_active_line(dump, "bar", 5002, 7);
  append_dump_unused_line(dump, "foo", 5000, 5);
  std::string want = std::string("active name     <bar> at port 5002, fd = 7\n") + '\0' +
                     "old/unused name <foo>, port = 5000, fd = 5 \n" + '\0';
  CHECK(std::string(dump.begin(), dump.end()) == want);
}

TEST_CASE("ALIVE2 responses parse incrementally in both forms") {
  bytes x = {118, 0, 0x6b, 0x02, 0xb0, 0x39};
  for (std::size_t i = 0; i < x.size(); ++i)
    CHECK(parse_alive2_response(byte_view(x.data(), i)).state == parse_state::need_more);
  auto done = parse_alive2_response(x);
  CHECK(done.state == parse_state::done);
  CHECK(done.value.extended);
  CHECK(done.value.creation == 0x6b02b039u);
  auto old = parse_alive2_response(bytes{121, 0, 0, 3});
  CHECK(old.state == parse_state::done);
  CHECK_FALSE(old.value.extended);
  CHECK(old.value.creation == 3);
  CHECK(parse_alive2_response(bytes{119}).state == parse_state::failed);
}

TEST_CASE("PORT2 responses parse incrementally") {
  node_info y{"y", 5000, 72, 0, 6, 5, "EXTRA"};
  bytes full = encode_port2_response(y);
  for (std::size_t i = 0; i < full.size(); ++i)
    CHECK(parse_port2_response(byte_view(full.data(), i)).state == parse_state::need_more);
  auto p = parse_port2_response(full);
  REQUIRE(p.state == parse_state::done);
  CHECK(p.value.node == y);
  auto missing = parse_port2_response(bytes{119, 1});
  CHECK(missing.state == parse_state::done);
  CHECK(missing.value.result == 1);
  CHECK(parse_port2_response(bytes{118, 0}).state == parse_state::failed);
  // A huge Nlen only asks for more bytes: nothing is read past what was given.
  CHECK(parse_port2_response(bytes{119, 0, 0, 1, 77, 0, 0, 6, 0, 5, 0xff, 0xff}).state == parse_state::need_more);
}

TEST_CASE("NAMES text parses, including names that contain ' at port '") {
  bytes all;
  append_u32(all, 4369);
  append_names_line(all, "b", 5003);
  append_names_line(all, "x at port 1", 42);
  auto p = parse_names_response(all);
  REQUIRE(p.value);
  CHECK(p.value->epmd_port == 4369);
  REQUIRE(p.value->nodes.size() == 2);
  CHECK(p.value->nodes[0] == name_entry{"b", 5003});
  CHECK(p.value->nodes[1] == name_entry{"x at port 1", 42});
  CHECK(parse_names_response(bytes{0, 0}).ec == make_error_code(error::truncated_response));
  bytes bad = {0, 0, 0, 1};
  for (char c : std::string("nom b at port 1\n")) bad.push_back(static_cast<std::uint8_t>(c));
  CHECK(parse_names_response(bad).ec == make_error_code(error::malformed_response));
  bytes cut = {0, 0, 0, 1};
  for (char c : std::string("name b at port 1")) cut.push_back(static_cast<std::uint8_t>(c));
  CHECK(parse_names_response(cut).ec == make_error_code(error::truncated_response));
  bytes big = {0, 0, 0, 1};
  for (char c : std::string("name b at port 70000\n")) big.push_back(static_cast<std::uint8_t>(c));
  CHECK(parse_names_response(big).ec == make_error_code(error::malformed_response));
}

TEST_CASE("error messages") {
  CHECK(make_error_code(error::name_in_use).message() == "node name already registered");
  CHECK(std::string(make_error_code(error::no_epmd).category().name()) == "cnode.epmd");
}
