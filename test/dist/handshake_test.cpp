// The handshake state machine: both roles against each other, against bytes recorded from a real OTP 25.2.3 node,
// every status, and hostile input.
#include <doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "dist/digest.hpp"
#include "dist/handshake.hpp"

using namespace cnode::dist;

namespace {

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> v;
  for (char c : s) v.push_back(static_cast<std::byte>(c));
  return v;
}

std::vector<std::byte> hex(std::string_view h) {
  std::vector<std::byte> v;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) v.push_back(static_cast<std::byte>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return v;
}

std::vector<std::byte> framed(const std::vector<std::byte>& msg) {
  std::vector<std::byte> v{std::byte(msg.size() >> 8), std::byte(msg.size() & 0xff)};
  v.insert(v.end(), msg.begin(), msg.end());
  return v;
}

std::string text(const std::vector<std::byte>& v) { return {reinterpret_cast<const char*>(v.data()), v.size()}; }

handshake_config config(std::string node, std::string cookie, std::uint32_t challenge) {
  handshake_config c;
  c.this_node = std::move(node);
  c.creation = 0x0badf00d;
  c.cookies.cookie = std::move(cookie);
  c.challenge = challenge;
  c.name_seed = 123456789;
  c.named_creation = 77;
  return c;
}

struct answers {
  accept_answer accept = accept_answer::ok;
  bool is_pending = true;
  int wait_pending_asked = 0;
};

// Moves bytes between the two machines and answers their questions until neither can progress.
void pump(handshake& a, handshake& b, answers& ans) {
  for (int round = 0; round < 50; ++round) {
    bool moved = false;
    for (auto* hs : {&a, &b}) {
      if (hs->current() == handshake::state::asking) {
        moved = true;
        switch (hs->asked()) {
          case handshake::question::accept_pending: hs->answer_accept(ans.accept); break;
          case handshake::question::is_pending: hs->answer_is_pending(ans.is_pending); break;
          case handshake::question::wait_pending: ++ans.wait_pending_asked; hs->answer_wait_pending(); break;
          case handshake::question::none: FAIL("asking without a question");
        }
      }
    }
    if (a.has_output()) { b.feed(a.take_output()); moved = true; }
    if (b.has_output()) { a.feed(b.take_output()); moved = true; }
    if (!moved) return;
  }
  FAIL("handshake did not settle");
}

}  // namespace

TEST_CASE("flags: default set, digest expansion, missing flag names") {
  CHECK(default_flags(false) == 0xd07df4fbdULL);
  CHECK(default_flags(true) == 0xd07df4fbcULL);
  CHECK((default_flags(false) & dflag::dist_hdr_atom_cache) == 0);
  CHECK((default_flags(false) & dflag::fragments) != 0);
  CHECK((default_flags(false) & (dflags{1} << 36)) == 0);
  CHECK(expand_mandatory_25(0xd06480029ULL) == (0xd06480029ULL | mandatory_25));
  CHECK(missing_flags(expand_mandatory_25(0xd06480029ULL)).empty());
  CHECK(format_flag_list(missing_flags(mandatory_25 & ~dflag::big_creation)) == R"(["BIG_CREATION"])");
  CHECK(format_flag_list(missing_flags(mandatory_25 & ~(dflag::big_creation | dflag::utf8_atoms))) ==
        R"(["BIG_CREATION","UTF8_ATOMS"])");
  CHECK(flag_name(dflags{1} << 40) == "UNKNOWN<10000000000>");
  CHECK(describe_flags(dflag::published | dflag::spawn) == "PUBLISHED|SPAWN");
}

TEST_CASE("decide_accept follows net_kernel: names compared as atoms") {
  CHECK(decide_accept("b@h", "a@h", connection_state::none) == accept_answer::ok);
  CHECK(decide_accept("b@h", "a@h", connection_state::pending) == accept_answer::nok);
  CHECK(decide_accept("a@h", "b@h", connection_state::pending) == accept_answer::ok_simultaneous);
  CHECK(decide_accept("ab@h", "a@h", connection_state::pending) == accept_answer::nok);  // longer is greater
  CHECK(decide_accept("\xc3\xa9@h", "z@h", connection_state::pending) == accept_answer::nok);  // unsigned bytes
  CHECK(decide_accept("a@h", "b@h", connection_state::up) == accept_answer::alive);
  CHECK(decide_accept("a@h", "b@h", connection_state::up_pending) == accept_answer::already_pending);
}

TEST_CASE("node names as dist_util checks them") {
  CHECK(is_node_name("a@h"));
  CHECK_FALSE(is_node_name("a@"));
  CHECK_FALSE(is_node_name("@h"));
  CHECK_FALSE(is_node_name("ah"));
  CHECK_FALSE(is_node_name("a@b@c"));
  CHECK_FALSE(is_node_name(std::string(200, 'a') + "@" + std::string(100, 'h')));
  CHECK(dynamic_node_name(35, "h") == "Z@h");
  CHECK(dynamic_node_name(36, "h") == "10@h");
}

TEST_CASE("digest: md5 of cookie and decimal challenge, as recorded from OTP 25") {
  // erl answered our challenge 0x12345678 with this digest, cookie "capturecookie".
  const auto d = gen_digest(0x12345678, "capturecookie");
  CHECK(std::vector<std::byte>(d.begin(), d.end()) == hex("bc91a920d024a8ceb45c798f32759513"));
}

TEST_CASE("initiator and acceptor agree; visible and hidden") {
  for (bool hidden : {false, true}) {
    auto ac = config("b@h", "secret", 111);
    auto ic = config("a@h", "secret", 222);
    ic.flags = default_flags(hidden);
    auto acc = handshake::acceptor(ac);
    auto ini = handshake::initiator(ic, "b@h");
    answers ans;
    pump(ini, acc, ans);
    REQUIRE(acc.current() == handshake::state::done);
    REQUIRE(ini.current() == handshake::state::done);
    CHECK(acc.peer().node == "a@h");
    CHECK(ini.peer().node == "b@h");
    CHECK(acc.peer().creation == 0x0badf00d);
    CHECK(acc.peer().effective == ini.peer().effective);
    CHECK(acc.peer().published() == !hidden);
    CHECK(acc.leftover().empty());
    CHECK(ini.leftover().empty());
  }
}

TEST_CASE("wrong cookie: acceptor refuses the reply, initiator refuses the ack") {
  auto acc = handshake::acceptor(config("b@h", "one", 111));
  auto ini = handshake::initiator(config("a@h", "two", 222), "b@h");
  answers ans;
  pump(ini, acc, ans);
  CHECK(acc.current() == handshake::state::failed);
  CHECK(acc.error() == error::bad_cookie);
  CHECK(acc.detail() == "Connection attempt from node a@h rejected. Invalid challenge reply.");
  CHECK(ini.current() == handshake::state::running);  // nothing more comes: the driver sees the close

  // An acceptor with a per-node cookie for a@h accepts it.
  auto ac = config("b@h", "one", 111);
  ac.cookies.per_node["a@h"] = "two";
  auto acc2 = handshake::acceptor(ac);
  auto ini2 = handshake::initiator(config("a@h", "two", 222), "b@h");
  pump(ini2, acc2, ans);
  CHECK(acc2.current() == handshake::state::done);
  CHECK(ini2.current() == handshake::state::done);

  // A forged ack (right length, wrong digest) makes the initiator give up.
  auto ini3 = handshake::initiator(config("a@h", "two", 222), "b@h");
  auto acc3 = handshake::acceptor(ac);
  acc3.feed(ini3.take_output());
  acc3.answer_accept(accept_answer::ok);
  ini3.feed(acc3.take_output());
  (void)ini3.take_output();
  auto forged = bytes("a");
  forged.resize(17, std::byte{0});
  ini3.feed(framed(forged));
  CHECK(ini3.error() == error::bad_cookie);
  CHECK(ini3.detail() == "Connection attempt to node b@h cancelled. Invalid challenge ack.");
}

TEST_CASE("a peer lacking mandatory flags gets not_allowed and the BEAM's log line") {
  auto ic = config("a@h", "c", 2);
  ic.flags = default_flags(false) & ~(dflag::big_creation | dflag::mandatory_25_digest);
  auto acc = handshake::acceptor(config("b@h", "c", 1));
  auto ini = handshake::initiator(ic, "b@h");
  answers ans;
  pump(ini, acc, ans);
  CHECK(acc.error() == error::missing_flags);
  CHECK(acc.detail() == R"(Connection attempt from node a@h rejected since it cannot handle ["BIG_CREATION"].)");
  CHECK(ini.error() == error::not_allowed);

  // As initiator: an acceptor without them is abandoned after its challenge.
  auto ac = config("b@h", "c", 1);
  ac.flags = default_flags(false) & ~(dflag::map_tag | dflag::mandatory_25_digest);
  auto acc2 = handshake::acceptor(ac);
  auto ini2 = handshake::initiator(config("a@h", "c", 2), "b@h");
  pump(ini2, acc2, ans);
  CHECK(ini2.error() == error::missing_flags);
  CHECK(ini2.detail() == R"(Connection attempt to node b@h aborted since it cannot handle ["MAP_TAG"].)");

  // The digest flag alone stands for all of them.
  auto ic3 = config("a@h", "c", 2);
  ic3.flags = 0xd06480029ULL;
  auto acc3 = handshake::acceptor(config("b@h", "c", 1));
  auto ini3 = handshake::initiator(ic3, "b@h");
  pump(ini3, acc3, ans);
  CHECK(acc3.current() == handshake::state::done);
  CHECK(ini3.current() == handshake::state::done);

  // Extra required flags.
  auto ac4 = config("b@h", "c", 1);
  ac4.required = dflag::spawn;
  auto ic4 = config("a@h", "c", 2);
  ic4.flags &= ~dflag::spawn;
  auto acc4 = handshake::acceptor(ac4);
  auto ini4 = handshake::initiator(ic4, "b@h");
  pump(ini4, acc4, ans);
  CHECK(acc4.error() == error::missing_flags);
  CHECK(acc4.detail().find(R"(["SPAWN"])") != std::string::npos);
}

TEST_CASE("every acceptor answer") {
  SUBCASE("ok_simultaneous") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    answers ans{accept_answer::ok_simultaneous};
    pump(ini, acc, ans);
    CHECK(acc.current() == handshake::state::done);
    CHECK(ini.current() == handshake::state::done);
  }
  SUBCASE("nok") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    answers ans{accept_answer::nok};
    acc.feed(ini.take_output());
    acc.answer_accept(accept_answer::nok);
    const auto out = text(acc.take_output());
    INFO(out.size());
    CHECK(out == std::string("\0\x04snok", 6));
    CHECK(acc.error() == error::nok);
    auto acc2 = handshake::acceptor(config("b@h", "c", 1));
    auto ini2 = handshake::initiator(config("a@h", "c", 2), "b@h");
    pump(ini2, acc2, ans);
    CHECK(ini2.error() == error::nok);
  }
  SUBCASE("not_allowed") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    answers ans{accept_answer::not_allowed};
    pump(ini, acc, ans);
    CHECK(acc.error() == error::not_allowed);
    CHECK(ini.error() == error::not_allowed);
  }
  SUBCASE("already_pending closes without a status") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    acc.feed(ini.take_output());
    acc.answer_accept(accept_answer::already_pending);
    CHECK(acc.error() == error::already_pending);
    CHECK_FALSE(acc.has_output());
  }
  SUBCASE("alive, initiator insists: the old connection is taken down before 'a'") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    answers ans{accept_answer::alive, true};
    pump(ini, acc, ans);
    CHECK(ans.wait_pending_asked == 1);
    CHECK(acc.current() == handshake::state::done);
    CHECK(ini.current() == handshake::state::done);
  }
  SUBCASE("alive, initiator gives up") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    answers ans{accept_answer::alive, false};
    pump(ini, acc, ans);
    CHECK(ini.error() == error::alive_refused);
    CHECK(acc.error() == error::alive_refused);
  }
  SUBCASE("alive answered with garbage") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    acc.feed(ini.take_output());
    acc.answer_accept(accept_answer::alive);
    CHECK(text(acc.take_output()) == std::string("\0\x06salive", 8));
    acc.feed(framed(bytes("smaybe")));
    CHECK(acc.error() == error::unexpected_status);
  }
}

TEST_CASE("initiator: statuses it must refuse") {
  for (auto [status, err] : {std::pair{"sbogus", error::unexpected_status}, {"xok", error::bad_message},
                             {"snamed:", error::unexpected_status}}) {
    auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
    (void)ini.take_output();
    ini.feed(framed(bytes(status)));
    CHECK(ini.error() == err);
  }
  // A challenge from another node than the one dialled.
  auto acc = handshake::acceptor(config("x@h", "c", 1));
  auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
  answers ans;
  pump(ini, acc, ans);
  CHECK(ini.error() == error::name_mismatch);
}

TEST_CASE("NAME_ME: the acceptor names the initiator") {
  auto ic = config("h", "c", 2);
  ic.request_name = true;
  ic.creation = 0;
  auto acc = handshake::acceptor(config("b@h", "c", 1));
  auto ini = handshake::initiator(ic, "b@h");
  // send_name carries the host and creation 0
  auto first = ini.take_output();
  CHECK(text(first).substr(2 + 9, 4) == std::string(4, '\0'));
  CHECK(text(first).substr(2 + 15) == "h");
  acc.feed(first);
  REQUIRE(acc.asked() == handshake::question::accept_pending);
  CHECK(acc.question_dynamic());
  CHECK(acc.question_node() == "21I3V9@h");  // 123456789 in base 36
  answers ans;
  pump(ini, acc, ans);
  REQUIRE(acc.current() == handshake::state::done);
  REQUIRE(ini.current() == handshake::state::done);
  CHECK(ini.this_node() == "21I3V9@h");
  CHECK(ini.this_creation() == 77);
  CHECK(acc.peer().named_by_us);
  CHECK(acc.peer().creation == 77);
  CHECK_FALSE(acc.peer().published());  // a named node is never published
  CHECK((acc.peer().effective & dflag::name_me) != 0);

  // A NAME_ME request answered with a plain status is an error; a name on another host too.
  auto ini2 = handshake::initiator(ic, "b@h");
  (void)ini2.take_output();
  ini2.feed(framed(bytes("sok")));
  CHECK(ini2.error() == error::unexpected_status);
  auto ini3 = handshake::initiator(ic, "b@h");
  (void)ini3.take_output();
  auto named = bytes("snamed:");
  named.push_back(std::byte{0});
  named.push_back(std::byte{5});
  auto n = bytes("X@oth");
  named.insert(named.end(), n.begin(), n.end());
  named.insert(named.end(), 4, std::byte{1});
  ini3.feed(framed(named));
  CHECK(ini3.error() == error::bad_node_name);
  // A plain initiator given "named:" refuses it.
  auto ini4 = handshake::initiator(config("a@h", "c", 2), "b@h");
  (void)ini4.take_output();
  ini4.feed(framed(named));
  CHECK(ini4.error() == error::unexpected_status);
}

TEST_CASE("acceptor: old 'n' send_name (version 5) with the 'c' complement") {
  auto acc = handshake::acceptor(config("b@h", "c", 1));
  // 'n' Version:16=5 Flags:32 Name, flags: the low word of an OTP 24 node
  auto n = bytes("n");
  for (unsigned char c : {0x00, 0x05, 0x07, 0xdf, 0x7f, 0xbd}) n.push_back(std::byte{c});
  auto name = bytes("old@h");
  n.insert(n.end(), name.begin(), name.end());
  acc.feed(framed(n));
  REQUIRE(acc.asked() == handshake::question::accept_pending);
  CHECK(acc.question_node() == "old@h");
  acc.answer_accept(accept_answer::ok);
  auto out = acc.take_output();
  CHECK(text(out).substr(0, 5) == std::string("\0\x03sok", 5));
  CHECK(text(out)[7] == 'N');  // the new challenge, even to a version 5 initiator
  // 'c' FlagsHigh:32 Creation:32
  auto c = bytes("c");
  for (unsigned char x : {0x00, 0x00, 0x00, 0x0d, 0x12, 0x34, 0x56, 0x78}) c.push_back(std::byte{x});
  acc.feed(framed(c));
  REQUIRE(acc.current() == handshake::state::running);
  auto r = bytes("r");
  for (unsigned char x : {0x00, 0x00, 0x00, 0x09}) r.push_back(std::byte{x});
  const auto d = gen_digest(1, "c");
  r.insert(r.end(), d.begin(), d.end());
  acc.feed(framed(r));
  REQUIRE(acc.current() == handshake::state::done);
  CHECK(acc.peer().version == 5);
  CHECK(acc.peer().creation == 0x12345678);
  CHECK(acc.peer().flags == 0xd07df7fbdULL);
  const auto d9 = gen_digest(9, "c");
  CHECK(text(acc.take_output()).substr(2) == "a" + text(std::vector<std::byte>(d9.begin(), d9.end())));

  // A version 5 node without HANDSHAKE_23 is refused like any node missing a mandatory flag.
  auto acc2 = handshake::acceptor(config("b@h", "c", 1));
  auto n2 = bytes("n");
  for (unsigned char x : {0x00, 0x05, 0x00, 0x07, 0x7f, 0xbd}) n2.push_back(std::byte{x});
  n2.insert(n2.end(), name.begin(), name.end());
  acc2.feed(framed(n2));
  CHECK(acc2.error() == error::missing_flags);
  CHECK(acc2.detail().find("HANDSHAKE_23") != std::string::npos);
  CHECK(text(acc2.take_output()) == std::string("\0\x0csnot_allowed", 14));

  // A bad complement.
  auto acc3 = handshake::acceptor(config("b@h", "c", 1));
  acc3.feed(framed(n));
  acc3.answer_accept(accept_answer::ok);
  acc3.feed(framed(bytes("c1234")));
  CHECK(acc3.error() == error::bad_message);
}

TEST_CASE("replay of a real OTP 25.2.3 handshake, erl initiating (cookie capturecookie)") {
  auto ac = config("py@localhost", "capturecookie", 0x12345678);
  ac.flags = default_flags(true);
  auto acc = handshake::acceptor(ac);
  acc.feed(framed(hex("4e0000000d07df7fbd6b02b096000d636170406c6f63616c686f7374")));
  REQUIRE(acc.asked() == handshake::question::accept_pending);
  CHECK(acc.question_node() == "cap@localhost");
  acc.answer_accept(accept_answer::ok);
  (void)acc.take_output();
  acc.feed(framed(hex("727f851af4bc91a920d024a8ceb45c798f32759513")));
  REQUIRE(acc.current() == handshake::state::done);
  CHECK(acc.peer().flags == expand_mandatory_25(0xd07df7fbdULL));
  CHECK(acc.peer().creation == 0x6b02b096);
  CHECK_FALSE(acc.peer().published());  // we were hidden
  const auto ack = acc.take_output();
  const auto d = gen_digest(0x7f851af4, "capturecookie");
  CHECK(std::vector<std::byte>(ack.begin() + 3, ack.end()) == std::vector<std::byte>(d.begin(), d.end()));
}

TEST_CASE("replay of a real OTP 25.2.3 handshake, erl accepting") {
  auto ini = handshake::initiator(config("py@localhost", "capturecookie", 0xCAFEBABE), "cap2@localhost");
  (void)ini.take_output();
  auto in = framed(bytes("sok"));
  auto ch = framed(hex("4e0000000d07df7fbd275e3e3f6b02b09a000e63617032406c6f63616c686f7374"));
  in.insert(in.end(), ch.begin(), ch.end());
  // Delivered one byte at a time: framing must not care.
  for (auto b : in) ini.feed(std::span<const std::byte>(&b, 1));
  REQUIRE(ini.current() == handshake::state::running);
  const auto reply = ini.take_output();
  REQUIRE(reply.size() == 2 + 21);
  const auto d = gen_digest(0x275e3e3f, "capturecookie");
  CHECK(std::vector<std::byte>(reply.begin() + 7, reply.end()) == std::vector<std::byte>(d.begin(), d.end()));
  auto ack = framed(hex("6127705f47e3a89f42af4528f65aa53c09"));
  auto tick = hex("00000000");  // a first packet in the same read
  ack.insert(ack.end(), tick.begin(), tick.end());
  ini.feed(ack);
  REQUIRE(ini.current() == handshake::state::done);
  CHECK(ini.peer().creation == 0x6b02b09a);
  CHECK(ini.peer().published());
  CHECK(ini.leftover().size() == 4);
}

TEST_CASE("hostile input: truncated, empty, oversized, garbage") {
  SUBCASE("empty frame") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    acc.feed(hex("0000"));
    CHECK(acc.error() == error::bad_message);
  }
  SUBCASE("truncated send_name, name longer than message") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    acc.feed(framed(hex("4e0000000d07df7fbd6b02b09600ff61406c")));
    CHECK(acc.error() == error::bad_message);
    auto acc2 = handshake::acceptor(config("b@h", "c", 1));
    acc2.feed(framed(hex("4e00")));
    CHECK(acc2.error() == error::bad_message);
  }
  SUBCASE("a partial frame just waits") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    acc.feed(hex("00ff4e00"));
    CHECK(acc.current() == handshake::state::running);
  }
  SUBCASE("bad names") {
    for (auto name : {"nohost", "@h", "a@", "a@b@c"}) {
      auto acc = handshake::acceptor(config("b@h", "c", 1));
      auto m = hex("4e0000000d07df7fbd6b02b096");
      m.push_back(std::byte{0});
      m.push_back(std::byte(std::strlen(name)));
      auto nb = bytes(name);
      m.insert(m.end(), nb.begin(), nb.end());
      acc.feed(framed(m));
      CHECK(acc.error() == error::bad_node_name);
      CHECK_FALSE(acc.has_output());  // no status: the BEAM just closes
    }
  }
  SUBCASE("bytes after the name are ignored") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    auto m = hex("4e0000000d07df7fbd6b02b0960003614068");
    auto junk = bytes("trailing junk");
    m.insert(m.end(), junk.begin(), junk.end());
    acc.feed(framed(m));
    CHECK(acc.asked() == handshake::question::accept_pending);
    CHECK(acc.question_node() == "a@h");
  }
  SUBCASE("a flood is cut off") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    acc.feed(framed(hex("4e0000000d07df7fbd6b02b0960003614068")));
    REQUIRE(acc.current() == handshake::state::asking);
    std::vector<std::byte> flood(200000, std::byte{0x41});
    acc.feed(flood);
    CHECK(acc.error() == error::bad_message);
  }
  SUBCASE("wrong lengths for r and a") {
    auto acc = handshake::acceptor(config("b@h", "c", 1));
    acc.feed(framed(hex("4e0000000d07df7fbd6b02b0960003614068")));
    acc.answer_accept(accept_answer::ok);
    auto r = bytes("r");
    r.resize(22, std::byte{0});
    acc.feed(framed(r));
    CHECK(acc.error() == error::bad_message);
  }
  SUBCASE("random garbage never crashes and always ends") {
    std::mt19937 rng(42);
    for (int i = 0; i < 2000; ++i) {
      std::vector<std::byte> junk(rng() % 64);
      for (auto& b : junk) b = std::byte(rng() & 0xff);
      auto acc = handshake::acceptor(config("b@h", "c", 1));
      acc.feed(junk);
      if (acc.current() == handshake::state::asking) acc.answer_accept(accept_answer::ok);
      auto ini = handshake::initiator(config("a@h", "c", 2), "b@h");
      ini.feed(junk);
      if (ini.current() == handshake::state::asking) ini.answer_is_pending(true);
    }
  }
}

TEST_CASE("md5: RFC 1321's test suite, and OpenSSL's digest over lengths around the padding boundaries") {
  auto hex = [](const std::array<std::byte, 16>& d) {
    std::string s;
    for (auto b : d) s += fmt::format("{:02x}", std::to_integer<unsigned>(b));
    return s;
  };
  CHECK(hex(md5("")) == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(hex(md5("a")) == "0cc175b9c0f1b6a831c399e269772661");
  CHECK(hex(md5("abc")) == "900150983cd24fb0d6963f7d28e17f72");
  CHECK(hex(md5("message digest")) == "f96b697d7cb7938d525a2f31aaf161d0");
  CHECK(hex(md5("abcdefghijklmnopqrstuvwxyz")) == "c3fcd3d76192e4007dfb496cca67e13b");
  CHECK(hex(md5("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")) ==
        "d174ab98d277d9f5a5611c2c9f419d9f");
  CHECK(hex(md5("12345678901234567890123456789012345678901234567890123456789012345678901234567890")) ==
        "57edf4a22be3c955ac49da2e2107b67a");
  std::string text;
  for (std::size_t n = 0; n <= 300; ++n) {
    std::array<std::byte, 16> theirs{};
    unsigned int len = 0;
    REQUIRE(EVP_Digest(text.data(), text.size(), reinterpret_cast<unsigned char*>(theirs.data()), &len, EVP_md5(),
                       nullptr) == 1);
    CHECK_MESSAGE(md5(text) == theirs, "length ", n);
    text += static_cast<char>('!' + (n * 7) % 90);
  }
}

TEST_CASE("digest helpers: constant-time compare, kernel random bytes") {
  const std::array<std::byte, 4> a{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  auto b = a;
  CHECK(equal_constant_time(a.data(), b.data(), a.size()));
  b[3] = std::byte{5};
  CHECK_FALSE(equal_constant_time(a.data(), b.data(), a.size()));
  std::array<unsigned char, 64> r1{}, r2{};
  random_bytes(r1.data(), r1.size());
  random_bytes(r2.data(), r2.size());
  CHECK(r1 != r2);
}
