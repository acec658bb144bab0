"""Issue 17: who TLS lets in. Certificates a peer must not trust (unknown CA, expired, issued to another host) are
refused on both sides with a log line that says why; mutual authentication; --tls-verify none, the server name
check, TLS versions; optfile errors stop the node at start. Against OTP 25 nodes with -proto_dist inet_tls."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from tls_util import (beam_optfile, optfile, role_opts, standard_pki, start_cnode, tls_cnode,  # noqa: E402
                      tls_erl)


def test_beam_clients_with_untrusted_certificates_refused_by_cnode(c):
    pki = standard_pki(c)
    c.epmd()
    cn = tls_cnode(c, pki)
    for cert, why, alert in (("rogue", "unknown CA", "Unknown CA"), ("expired", "certificate expired",
                                                                   "Certificate Expired")):
        e = tls_erl(c, cert, beam_optfile(c, pki, cert, cert=cert, client_cert=cert))
        assert e.eval(f"net_adm:ping('{cn.node}')") == "pang", cert
        line = cn.wait_for_line(f"certificate check failed: {why}")
        assert "refused connection from 127.0.0.1" in line and "the peer's certificate /CN=localhost" in line, line
        e.wait_for_line(f"received SERVER ALERT: Fatal - {alert}")  # the BEAM is told why
        assert e.eval("nodes()") == "[]"
    good = tls_erl(c, "good", beam_optfile(c, pki, "good"))
    assert good.eval(f"net_adm:ping('{cn.node}')") == "pong"
    assert "up rogue@" not in cn.output() and "up expired@" not in cn.output()


def test_beam_servers_with_untrusted_certificates_refused_by_cnode(c):
    pki = standard_pki(c)
    c.epmd()
    servers = {}
    for cert in ("rogue", "expired", "wronghost"):
        servers[cert] = tls_erl(c, cert, beam_optfile(c, pki, cert, cert=cert, client_cert=cert))
    cn = tls_cnode(c, pki, extra=sum((["--connect", s.node] for s in servers.values()), []))
    for cert, why in (("rogue", "unknown CA (unable to get local issuer certificate"),
                      ("expired", "certificate expired (certificate has expired"),
                      ("wronghost", "wrong host name (hostname mismatch; the peer's certificate /CN=wronghost.example")):
        line = cn.wait_for_line(f"cannot connect to {cert}@localhost: TLS handshake", timeout=20)
        assert f"certificate check failed: {why}" in line, line
    for s in servers.values():
        assert s.eval("nodes()") == "[]"


def test_cnode_certificates_the_beam_does_not_trust(c):
    """The BEAM refuses cnode's certificate, as server and as client; both sides log why."""
    pki = standard_pki(c)
    c.epmd()
    good = tls_erl(c, "good", beam_optfile(c, pki, "good"))
    cases = (("rogue", "unknown CA", "Unknown CA"), ("expired", "certificate expired", "Certificate Expired"))
    for cert, ours, theirs in cases:
        cn = tls_cnode(c, pki, cert=cert, sname="cn" + cert, extra=["--connect", good.node])
        # cnode dials: the BEAM server refuses our client certificate (TLS 1.3: after our side of the handshake)
        line = cn.wait_for_line("cannot connect to good@localhost", timeout=20)
        assert f"the peer refused our certificate: {ours}" in line, line
        good.wait_for_line(f"generated SERVER ALERT: Fatal - {theirs}")
        # the BEAM dials: it refuses our server certificate
        assert good.eval(f"net_adm:ping('{cn.node}')") == "pang"
        line = cn.wait_for_line("refused connection from 127.0.0.1")
        assert f"the peer refused our certificate: {ours}" in line, line
        good.wait_for_line(f"generated CLIENT ALERT: Fatal - {theirs}")
    # a server certificate for another host: the BEAM's host name check (server_name_indication = the node's host)
    cw = tls_cnode(c, pki, cert="wronghost", sname="cw")
    assert good.eval(f"net_adm:ping('{cw.node}')") == "pang"
    good.wait_for_line("hostname_check_failed")
    line = cw.wait_for_line("refused connection from 127.0.0.1")
    assert "our certificate is issued to another host name" in line, line
    assert good.eval("nodes()") == "[]"


def test_mutual_authentication(c):
    pki = standard_pki(c)
    c.epmd()
    cn = tls_cnode(c, pki)  # verify peer: a client certificate is required by default
    for versions in (("tlsv1.3", "tlsv1.2"), ("tlsv1.2",)):
        name = "nocert" + str(len(versions))
        e = tls_erl(c, name, optfile(c, name, role_opts(pki, "node"), role_opts(pki, None, versions=versions)))
        assert e.eval(f"net_adm:ping('{cn.node}')") == "pang", versions
        line = cn.wait_for_line("the peer sent no certificate")
        assert "mutual authentication" in line, line
    # --tls-fail-if-no-peer-cert false: a client without a certificate gets in (the server is still verified)
    lax = tls_cnode(c, pki, sname="lax", extra=["--tls-fail-if-no-peer-cert", "false"])
    assert e.eval(f"net_adm:ping('{lax.node}')") == "pong"
    # cnode without a client certificate, dialling a BEAM that requires one
    good = tls_erl(c, "good", beam_optfile(c, pki, "good"))
    conf = optfile(c, "cn_nocert", role_opts(pki, "node"), role_opts(pki, None))
    cn2 = start_cnode(c, sname="cn2", extra=["--tls-optfile", conf, "--connect", good.node])
    line = cn2.wait_for_line("cannot connect to good@localhost", timeout=20)
    assert "the peer requires a client certificate and we sent none" in line, line
    good.wait_for_line("Certificate required")
    assert good.eval("nodes()") == "[]"


def test_verify_none_and_server_name_options(c):
    pki = standard_pki(c)
    c.epmd()
    # --tls-verify none trusts a client certificate from an unknown CA (and needs no CA file)
    cn = start_cnode(c, extra=["--tls-cert", pki.path("node.pem"), "--tls-key", pki.path("node.key"),
                               "--tls-verify", "none"])
    rogue = tls_erl(c, "rogue", beam_optfile(c, pki, "rogue", cert="rogue", client_cert="rogue"))
    assert rogue.eval(f"net_adm:ping('{cn.node}')") == "pong"
    strict = tls_cnode(c, pki, sname="strict")  # the default, verify peer: the same node is refused
    assert rogue.eval(f"net_adm:ping('{strict.node}')") == "pang"
    assert "unknown CA" in strict.wait_for_line("refused connection from 127.0.0.1")
    # the name check: a server certificate for wronghost.example is refused for wronghost@localhost...
    ws = tls_erl(c, "wronghost", beam_optfile(c, pki, "wronghost", cert="wronghost", client_cert="node"))
    checked = tls_cnode(c, pki, sname="checked", extra=["--connect", ws.node])
    assert "wrong host name" in checked.wait_for_line("cannot connect to wronghost@localhost", timeout=20)
    # ...and accepted with the name it carries, or with the check off (SNI disabled, as in the optfile)
    for sname, sni in (("named", "wronghost.example"), ("nosni", "disable")):
        n = tls_cnode(c, pki, sname=sname, extra=["--connect", ws.node, "--tls-server-name-indication", sni])
        n.wait_for_line("up wronghost@localhost (visible, we connected, TLSv1.3)", timeout=20)


def test_tls_versions(c):
    pki = standard_pki(c)
    c.epmd()
    old = tls_erl(c, "old", beam_optfile(c, pki, "old", versions=("tlsv1.2",)))  # OTP 25's own default
    cn12 = tls_cnode(c, pki, sname="cn12")
    assert old.eval(f"net_adm:ping('{cn12.node}')") == "pong"
    cn12.wait_for_line("up old@localhost (visible, it connected, TLSv1.2)")
    cn13 = tls_cnode(c, pki, sname="cn13", extra=["--tls-versions", "1.3"])
    assert old.eval(f"net_adm:ping('{cn13.node}')") == "pang"
    line = cn13.wait_for_line("refused connection from 127.0.0.1")
    assert "TLS handshake" in line and ("version" in line or "protocol" in line), line
    new = tls_erl(c, "new", beam_optfile(c, pki, "new"))
    assert new.eval(f"net_adm:ping('{cn13.node}')") == "pong"
    cn13.wait_for_line("up new@localhost (visible, it connected, TLSv1.3)")


def run_cnode(c, *extra):
    argv = [harness.bin_path("cnode"), "--sname", "bad@localhost", "--cookie", c.cookie, "--epmd-port",
            str(c.epmd_port)] + list(extra)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30,
                       env=dict(os.environ, **c.env()))
    return r.returncode, r.stdout


def test_configuration_errors_stop_the_node_at_start(c):
    pki = standard_pki(c)
    c.epmd()
    node = role_opts(pki, "node")
    cases = [
        ("[{server, [{certfile, \"x\"}]", "--tls-optfile", "line 1"),  # not a term
        (None, "verify_fun", "an Erlang fun cnode cannot run"),
        (None, "crl_check", "revocation lists are not supported"),
        (None, "no_such_option", "no_such_option is unknown"),
    ]
    for text, what, want in cases:
        path = os.path.join(c.tmp, f"bad_{what.strip('-')}.conf")
        with open(path, "w") as f:
            if text is None:
                opt = {"verify_fun": "{verify_fun, {fun inet_tls_dist:verify_client/3, []}}",
                       "crl_check": "{crl_check, peer}", "no_such_option": "{no_such_option, 1}"}[what]
                f.write("[{server, [" + ", ".join(node + [opt]) + "]}, {client, [" + ", ".join(node) + "]}].\n")
            else:
                f.write(text)
        rc, out = run_cnode(c, "--tls-optfile", path)
        assert rc == 1 and want in out, (what, rc, out)
    rc, out = run_cnode(c, "--tls-cert", pki.path("node.pem"), "--tls-key", pki.path("node.key"))
    assert rc == 1 and "needs the CAs that vouch for them: --tls-cacerts" in out, out
    rc, out = run_cnode(c, "--tls-cert", pki.path("missing.pem"), "--tls-cacerts", pki.path("ca.pem"))
    assert rc == 1 and "cannot load the certificate" in out and "missing.pem" in out, out
    rc, out = run_cnode(c, "--tls-cert", pki.path("node.pem"), "--tls-key", pki.path("other.key"), "--tls-cacerts",
                        pki.path("ca.pem"))
    assert rc == 1 and "does not belong to the certificate" in out, out
    rc, out = run_cnode(c, "--tls-versions", "1.1", "--tls-cert", pki.path("node.pem"))
    assert rc == 2 and "unknown TLS version" in out, out
    rc, out = run_cnode(c, "--tls-verify", "none")
    assert rc == 2 and "need --tls-cert FILE or --tls-optfile FILE" in out, out
    # options that change nothing about trust are accepted and named in the log
    conf = optfile(c, "tuning", node + ["{secure_renegotiate, true}", "{hibernate_after, 1000}"], node)
    cn = start_cnode(c, extra=["--tls-optfile", conf])
    assert "server option secure_renegotiate is not mapped onto OpenSSL" in cn.output()
    assert "server option hibernate_after is not mapped onto OpenSSL" in cn.output()


harness.main(globals())
