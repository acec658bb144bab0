"""Issue 17: --allow NODE and --allow-file FILE, as net_kernel:allow/1: every other node is refused at the handshake
with the not_allowed status (dist_util.erl:804 check_allowed), the log names it, and a node not allowed is not
dialled (net_kernel.erl:1806 setup_check). Over TCP and over TLS, against OTP 25 nodes and raw handshakes."""
import os
import re
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "hardening"))
import harness  # noqa: E402
from hardening_util import recv_msg, send_name  # noqa: E402
from tls_util import beam_optfile, closed_by_peer, standard_pki, start_cnode, tls_cnode, tls_erl  # noqa: E402


def dist_port(cn):
    return int(re.search(r"port (\d+)", cn.wait_for_line("registered " + cn.node)).group(1))


def status_for(port, name):
    """The status cnode answers a send_name from `name` with ("ok", "not_allowed", ...), and whether it then
    closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(send_name(name))
        st = recv_msg(s)
        assert st[:1] == b"s", st
        return st[1:].decode(), (closed_by_peer(s, 5) if st[1:] != b"ok" else False)


def test_allow_refuses_every_other_node_with_not_allowed(c):
    c.epmd()
    cn = start_cnode(c, extra=["--allow", "a@localhost"])
    a, b = c.erl("a"), c.erl("b")
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    assert b.eval(f"net_adm:ping('{cn.node}')") == "pang"
    line = cn.wait_for_line("refused connection from b@localhost")
    assert "disallowed node b@localhost" in line, line
    assert b.eval("nodes()") == "[]"
    assert a.eval(f"rpc:call('{cn.node}', erlang, nodes, [])") == "[a@localhost]"
    # the wire: "snot_allowed", then the connection is closed
    port = dist_port(cn)
    assert status_for(port, "intruder@localhost") == ("not_allowed", True)
    assert "disallowed node intruder@localhost" in cn.wait_for_line("refused connection from intruder@localhost")
    assert status_for(port, "a@localhost")[0] in ("ok", "alive")


def test_allow_file_forms(c):
    """net_kernel:allow/1's forms: a node name, a host (any node there), a name before '@' (that name anywhere)."""
    path = os.path.join(c.tmp, "allowed")
    with open(path, "w") as f:
        f.write("# who may connect\n\nexact@host1\n  elsewhere.example   # a host\nworker@\n")
    c.epmd()
    cn = start_cnode(c, extra=["--allow-file", path, "--allow", "extra@localhost"])
    port = dist_port(cn)
    for name, want in (("exact@host1", "ok"), ("exact@host2", "not_allowed"), ("q@elsewhere.example", "ok"),
                       ("q@other.example", "not_allowed"), ("worker@anywhere", "ok"), ("workers@anywhere", "not_allowed"),
                       ("extra@localhost", "ok"), ("b@localhost", "not_allowed")):
        assert status_for(port, name)[0] == want, name
    # a file that cannot be read, or names nobody, stops the node at start
    for bad, why in ((os.path.join(c.tmp, "missing"), "No such file"), (os.path.join(c.tmp, "empty"), "no node")):
        if bad.endswith("empty"):
            with open(bad, "w") as f:
                f.write("# nobody\n")
        p = c.start([harness.bin_path("cnode"), "--sname", "x@localhost", "--cookie", c.cookie, "--epmd-port",
                     str(c.epmd_port), "--allow-file", bad], name="x")
        p.wait_for_line(why)
        harness.wait_until(lambda: not p.alive(), 10, "cnode to exit")
        assert p.p.returncode == 1


def test_disallowed_nodes_are_not_dialled(c):
    c.epmd()
    a, b = c.erl("a"), c.erl("b")
    cn = start_cnode(c, extra=["--allow", "a@localhost", "--connect", a.node, "--connect", b.node])
    cn.wait_for_line("up a@localhost", timeout=20)
    line = cn.wait_for_line("cannot connect to b@localhost", timeout=20)
    assert "Connection attempt with disallowed node b@localhost" in line, line
    assert b.eval("nodes()") == "[]"
    # a message from cnode to b (through a probe owned by a) is not a reason to dial it either
    a.eval(f"P = erpc:call('{cn.node}', cnode, spawn_probe, [self()]), put(p, P), ok")
    assert a.eval("gen_server:call(get(p), {call, {x, 'b@localhost'}, hi, 3000})") == "{error,{nodedown,b@localhost}}"
    assert b.eval("nodes()") == "[]"


def test_a_beam_that_does_not_allow_cnode(c):
    c.epmd()
    a = c.erl("a")
    assert a.eval("net_kernel:allow(['someone@localhost'])") == "ok"
    cn = start_cnode(c, extra=["--connect", a.node])
    line = cn.wait_for_line("cannot connect to a@localhost", timeout=20)
    assert "not allowed" in line, line
    a.wait_for_line("disallowed node cnode@localhost")
    assert a.eval("nodes()") == "[]"


def test_allow_over_tls(c):
    pki = standard_pki(c)
    c.epmd()
    cn = tls_cnode(c, pki, extra=["--allow", "a@localhost", "--allow", "imposter@localhost"])
    a = tls_erl(c, "a", beam_optfile(c, pki, "a"))
    b = tls_erl(c, "b", beam_optfile(c, pki, "b"))
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    assert b.eval(f"net_adm:ping('{cn.node}')") == "pang"
    assert "disallowed node b@localhost" in cn.wait_for_line("refused connection from b@localhost")
    # an allowed name, but a certificate (trusted CA) issued neither to localhost nor to 127.0.0.1
    imp = tls_erl(c, "imposter", beam_optfile(c, pki, "imposter", client_cert="wronghost"))
    assert imp.eval(f"net_adm:ping('{cn.node}')") == "pang"
    line = cn.wait_for_line("connection from imposter@localhost")
    assert "certificate is issued neither to localhost nor to 127.0.0.1" in line, line
    assert "disallowed node imposter@localhost" in cn.wait_for_line("refused connection from imposter@localhost")
    assert a.eval(f"rpc:call('{cn.node}', erlang, nodes, [])") == "[a@localhost]"


harness.main(globals())
