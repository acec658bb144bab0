// The sans-I/O parts of TLS distribution and of the allow list: reading an ssl_dist_optfile, TLS versions, the
// server name a client checks, net_kernel:allow/1's matching, and the handshake's 4-byte headers inside TLS.
#include <doctest.h>

#include <string>
#include <vector>

#include "dist/handshake.hpp"
#include "dist/tls.hpp"

using namespace cnode::dist;

namespace {

handshake_config config(std::string node, std::uint32_t challenge) {
  handshake_config c;
  c.this_node = std::move(node);
  c.cookies.cookie = std::string(1, 'k');  // (GCC 12 -Wrestrict misfires on assigning a literal here)
  c.challenge = challenge;
  c.header_bytes = 4;
  return c;
}

}  // namespace

TEST_CASE("is_allowed: node names, hosts and names before '@', as dist_util:is_allowed/2") {
  const std::vector<std::string> allow{"a@h1", "h2", "w@", "bad@x@y", ""};
  CHECK(is_allowed("a@h1", allow));
  CHECK_FALSE(is_allowed("a@h3", allow));
  CHECK_FALSE(is_allowed("b@h1", allow));
  CHECK(is_allowed("anyone@h2", allow));
  CHECK(is_allowed("h2", allow));  // a NAME_ME peer gives only its host
  CHECK_FALSE(is_allowed("anyone@h22", allow));
  CHECK(is_allowed("w@anywhere", allow));
  CHECK_FALSE(is_allowed("ww@anywhere", allow));
  CHECK_FALSE(is_allowed("x@y", allow));  // a malformed entry matches nothing but itself
  CHECK(is_allowed("bad@x@y", allow));
  CHECK_FALSE(is_allowed("a@h1", {}));  // an empty list allows no one (callers skip the check then)
}

TEST_CASE("the handshake inside TLS: 4-byte headers both ways, the same messages") {
  auto ac = config("b@h", 1);
  auto ic = config("a@h", 2);
  auto acc = handshake::acceptor(ac);
  auto ini = handshake::initiator(ic, "b@h");
  auto first = ini.take_output();
  REQUIRE(first.size() > 5);
  CHECK(first[0] == std::byte{0});
  CHECK(first[1] == std::byte{0});
  CHECK(first[4] == std::byte{'N'});
  acc.feed(first);
  REQUIRE(acc.current() == handshake::state::asking);
  acc.answer_accept(accept_answer::ok);
  for (int i = 0; i < 10 && (acc.has_output() || ini.has_output()); ++i) {
    if (acc.has_output()) ini.feed(acc.take_output());
    if (ini.has_output()) acc.feed(ini.take_output());
  }
  CHECK(acc.current() == handshake::state::done);
  CHECK(ini.current() == handshake::state::done);

  // a 2-byte framed peer is no TLS distribution peer: its send_name reads as a huge or empty message
  auto acc2 = handshake::acceptor(ac);
  auto plain = ic;
  plain.header_bytes = 2;
  acc2.feed(handshake::initiator(plain, "b@h").take_output());
  CHECK(acc2.current() == handshake::state::failed);
  CHECK(acc2.error() == error::bad_message);

  // an announced length past any handshake message is refused at once, not waited for
  auto acc3 = handshake::acceptor(ac);
  const std::vector<std::byte> huge{std::byte{0x7f}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{'N'}};
  acc3.feed(huge);
  CHECK(acc3.current() == handshake::state::failed);
}

TEST_CASE("optfile: the BEAM's [{server, Opts}, {client, Opts}] onto options") {
  const auto r = parse_tls_optfile(R"(%% as erl -ssl_dist_optfile reads it
      [{server, [{certfile, "/etc/s.pem"}, {keyfile, <<"/etc/s.key">>}, {cacertfile, "/etc/ca.pem"},
                 {verify, verify_peer}, {fail_if_no_peer_cert, true}, {versions, ['tlsv1.3', 'tlsv1.2']},
                 {secure_renegotiate, true}, {depth, 3}, {honor_cipher_order, true},
                 {ciphers, "ECDHE-ECDSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384"}]},
       {client, [{certfile, "/etc/c.pem"}, {verify, verify_none}, {server_name_indication, disable},
                 {versions, ['tlsv1.2', 'tlsv1.1']}, {hibernate_after, 10}, {reuse_sessions, false},
                 {fail_if_no_peer_cert, true}]}].)",
                                   "f");
  REQUIRE(r.error.empty());
  const auto& s = r.options.server;
  CHECK(*s.certfile == "/etc/s.pem");
  CHECK(*s.keyfile == "/etc/s.key");
  CHECK(*s.cacertfile == "/etc/ca.pem");
  CHECK(*s.verify_peer);
  CHECK(*s.fail_if_no_peer_cert);
  CHECK(*s.versions == std::vector<int>{12, 13});
  CHECK(*s.depth == 3);
  CHECK(*s.honor_cipher_order);
  CHECK(*s.ciphers == "ECDHE-ECDSA-AES256-GCM-SHA384");
  CHECK(*s.ciphersuites == "TLS_AES_256_GCM_SHA384");
  const auto& c = r.options.client;
  CHECK(*c.certfile == "/etc/c.pem");
  CHECK_FALSE(*c.verify_peer);
  CHECK(c.sni_disabled);
  CHECK(*c.versions == std::vector<int>{12});
  CHECK_FALSE(*c.reuse_sessions);
  CHECK_FALSE(c.fail_if_no_peer_cert);  // a server option in the client list: noted, not applied
  // secure_renegotiate, hibernate_after, tlsv1.1 and the misplaced fail_if_no_peer_cert are each one note
  CHECK(r.ignored.size() == 4);

  // the command line wins, in both roles
  tls_options o = r.options;
  tls_role_options cli;
  cli.verify_peer = true;
  cli.server_name_indication = "name.example";
  o.override_both(cli);
  CHECK(*o.client.verify_peer);
  CHECK_FALSE(o.client.sni_disabled);
  CHECK(tls_server_name(o.client, "n@h") == "name.example");
  CHECK(tls_server_name(r.options.client, "n@h").empty());
  CHECK(tls_server_name(tls_role_options{}, "n@host.example") == "host.example");
  // a certificate from the command line does not keep the optfile's key
  tls_role_options cert_only;
  cert_only.certfile = "/cli.pem";
  o.override_both(cert_only);
  CHECK(*o.server.certfile == "/cli.pem");
  CHECK_FALSE(o.server.keyfile);

  // the last of a repeated option wins, as in ssl:handle_options
  CHECK(*parse_tls_optfile("[{server, [{depth, 1}, {depth, 2}]}].", "f").options.server.depth == 2);
  CHECK(parse_tls_optfile("[].", "f").error.empty());
}

TEST_CASE("optfile: what cannot be honoured stops the node, with the option named") {
  auto err = [](const char* text) { return parse_tls_optfile(text, "f").error; };
  CHECK(err("[{server, [{certfile, \"x\"}]").find("f: line 1") == 0);
  CHECK(err("{server, []}.").find("[{server, Opts}, {client, Opts}] wanted") != std::string::npos);
  CHECK(err("[{both, []}].").find("is not {server, Opts} or {client, Opts}") != std::string::npos);
  CHECK(err("[{server, [verify]}].").find("is not {Key, Value}") != std::string::npos);
  CHECK(err("[{server, [{verify, maybe}]}].").find("verify_peer or verify_none wanted") != std::string::npos);
  CHECK(err("[{server, [{verify_fun, {fun inet_tls_dist:verify_client/3, []}}]}].").find("verify_fun") !=
        std::string::npos);
  CHECK(err("[{client, [{crl_check, peer}]}].").find("revocation lists") != std::string::npos);
  CHECK(err("[{client, [{crl_check, false}]}].").empty());
  CHECK(err("[{client, [{cacerts, [<<1,2>>]}]}].").find("as PEM files") != std::string::npos);
  CHECK(err("[{client, [{versions, ['tlsv1.1']}]}].").find("tlsv1.2 and/or tlsv1.3") != std::string::npos);
  CHECK(err("[{client, [{depth, -1}]}].").find("0..100") != std::string::npos);
  CHECK(err("[{client, [{frobnicate, 1}]}].").find("client option frobnicate is unknown") != std::string::npos);
}

TEST_CASE("--tls-versions") {
  std::string e;
  CHECK(*parse_tls_versions("1.3,1.2", e) == std::vector<int>{12, 13});
  CHECK(*parse_tls_versions("tlsv1.3", e) == std::vector<int>{13});
  CHECK_FALSE(parse_tls_versions("1.1", e));
  CHECK(e.find("unknown TLS version '1.1'") == 0);
  CHECK_FALSE(parse_tls_versions("", e));
}
