"""The handshake against live OTP 25 nodes: erl -> us and us -> erl, visible and hidden, wrong cookies both ways,
stalled handshakes, NAME_ME both ways, an Elixir node."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from distwire import Probe, erl_port, elapsed_until  # noqa: E402


def test_erl_connects_to_us_visible(c):
    c.epmd()
    p = Probe(c)
    a = c.erl("a")
    assert a.eval("net_kernel:connect_node('probe@localhost')") == "true"
    line = p.wait_for_line("up a@localhost")
    assert "published=true" in line, line
    assert a.eval("nodes()") == "[probe@localhost]"
    assert a.eval("nodes(hidden)") == "[]"
    # erl talks to a visible peer at once (global, rex): the packets reach the upper-layer hook.
    p.wait_for_line("packet a@localhost len=")


def test_erl_connects_to_us_hidden(c):
    c.epmd()
    p = Probe(c, hidden=True)
    a = c.erl("a")
    assert a.eval("net_kernel:connect_node('probe@localhost')") == "true"
    assert "published=false" in p.wait_for_line("up a@localhost")
    assert a.eval("nodes()") == "[]"
    assert a.eval("nodes(hidden)") == "[probe@localhost]"


def test_we_connect_to_erl_visible_and_hidden(c):
    c.epmd()
    a = c.erl("a")
    port = erl_port(c, "a")
    p = Probe(c, register=False)
    p.connect("a@localhost", port)
    assert "published=true" in p.wait_for_line("up a@localhost")
    harness.wait_until(lambda: a.eval("nodes()") == "[probe@localhost]", 10, "erl to list us as visible")
    h = Probe(c, name="hid", hidden=True, register=False)
    h.connect("a@localhost", port)
    assert "published=false" in h.wait_for_line("up a@localhost")
    harness.wait_until(lambda: a.eval("nodes(hidden)") == "[hid@localhost]", 10, "erl to list us as hidden")
    assert a.eval("nodes()") == "[probe@localhost]"


def test_wrong_cookie_refused_both_ways(c):
    c.epmd()
    p = Probe(c, cookie="notthesame")
    a = c.erl("a")
    # erl -> us: we refuse its challenge reply.
    assert a.eval("net_kernel:connect_node('probe@localhost')") == "false"
    line = p.wait_for_line("refused a@localhost")
    assert "reason=bad_cookie" in line, line
    assert "Connection attempt from node a@localhost rejected. Invalid challenge reply." in line, line
    # us -> erl: erl refuses our reply and closes; we say so, and erl logs its own line.
    p.connect("a@localhost", erl_port(c, "a"))
    line = harness.wait_until(lambda: p.lines("refused a@localhost")[1:], 10, "second refusal")[0]
    assert "wrong cookie?" in line, line
    a.wait_for_line("Invalid challenge reply", 10)
    assert a.eval("nodes(connected)") == "[]"


def test_stalled_handshake_dropped_within_setuptime(c):
    c.epmd()
    p = Probe(c, setuptime=1)
    # Connects and sends nothing.
    s1 = socket.create_connection(("127.0.0.1", p.port))
    took = elapsed_until(lambda: p.lines("refused ? reason=setup_timer_timeout"), 5, "silent peer dropped")
    assert took < 2.5, took
    # Half a send_name.
    s2 = socket.create_connection(("127.0.0.1", p.port))
    s2.sendall(b"\x00\x20N\x00\x00\x00")
    elapsed_until(lambda: len(p.lines("refused ? reason=setup_timer_timeout")) >= 2, 5, "half message dropped")
    for s in (s1, s2):
        s.settimeout(2)
        assert s.recv(10) == b""  # closed by us
        s.close()
    # Garbage first message: closed at once, without a status.
    s3 = socket.create_connection(("127.0.0.1", p.port))
    s3.sendall(b"\x00\x03XYZ")
    s3.settimeout(2)
    assert s3.recv(10) == b""
    p.wait_for_line("refused ? reason=bad_message")
    # The probe still works.
    a = c.erl("a")
    assert a.eval("net_kernel:connect_node('probe@localhost')") == "true"


def test_erl_without_name_is_named_by_us(c):
    """NAME_ME: erl -sname undefined@localhost asks us for a name."""
    c.epmd()
    p = Probe(c)
    d = c.erl("undefined")
    assert d.eval("net_kernel:connect_node('probe@localhost')") == "true"
    line = p.wait_for_line("up ")
    given = line.split()[1]
    assert given.endswith("@localhost") and given != "undefined@localhost", line
    assert d.eval("node()") in (given, f"'{given}'")  # printed quoted: the name is uppercase
    assert d.eval("nodes(hidden)") == "[probe@localhost]"


def test_we_ask_erl_for_a_name(c):
    c.epmd()
    a = c.erl("a")
    p = Probe(c, name_me="localhost", register=False)
    p.connect("a@localhost", erl_port(c, "a"))
    line = p.wait_for_line("up a@localhost")
    ours = [f for f in line.split() if f.startswith("this=")][0][len("this="):]
    assert ours.endswith("@localhost") and ours != "localhost", line
    harness.wait_until(lambda: a.eval("nodes(hidden)") == f"[{ours}]" or a.eval("nodes(hidden)") == f"['{ours}']",
                       10, "erl to list the name it gave us")


def test_elixir_connects_to_us(c):
    c.epmd()
    p = Probe(c)
    e = c.elixir("ex")
    assert e.eval(':net_kernel.connect_node(:"probe@localhost")') == "true"
    p.wait_for_line("up ex@localhost")
    assert e.eval("Node.list()") == "[:probe@localhost]"


harness.main(globals())
