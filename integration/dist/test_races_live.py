"""Connection races against live OTP 25 nodes: simultaneous connects end with one connection; a node that comes
back under the same name while the other side still holds the old connection gets through ("alive")."""
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from distwire import Probe, erl_port  # noqa: E402


def _simultaneous(c, erl_name):
    c.epmd()
    p = Probe(c)
    a = c.erl(erl_name)
    node = f"{erl_name}@localhost"
    port = erl_port(c, erl_name)
    results = {}
    # Both sides dial at the same moment.
    t = threading.Thread(target=lambda: results.update(erl=a.eval("net_kernel:connect_node('probe@localhost')")))
    t.start()
    p.connect(node, port)
    t.join(30)
    assert results.get("erl") == "true", results
    harness.wait_until(lambda: p.lines(f"up {node}"), 10, "our side up")
    harness.wait_until(lambda: a.eval("nodes()") == "[probe@localhost]", 10, "erl side up")
    # Settled: still exactly one connection, nothing went down, and it stays so for a while.
    harness.wait_until(lambda: a.eval("length(nodes())") == "1", 5)
    p.send(f"stats {node}")
    p.wait_for_line(f"stats {node} bytes_in")
    assert len(p.lines(f"up {node}")) == 1, p.proc.output()
    assert not p.lines(f"down {node}"), p.proc.output()
    print(f"  {node}: losing attempts: {p.lines('refused ') or 'none (no overlap this time)'}", flush=True)
    return p, a


def test_simultaneous_connect_erl_smaller_name(c):
    # 'a@localhost' < 'probe@localhost'
    _simultaneous(c, "a")


def test_simultaneous_connect_erl_greater_name(c):
    # 'zz@localhost' > 'probe@localhost'
    _simultaneous(c, "zz")


def test_simultaneous_connect_repeated(c):
    """Many rounds, so that some really overlap: each round must end with exactly one connection."""
    c.epmd()
    a = c.erl("a")
    z = c.erl("zz")
    ports = {"a": erl_port(c, "a"), "zz": erl_port(c, "zz")}
    overlaps = 0
    for rnd in range(6):
        p = Probe(c, name=f"p{rnd}")
        for n, node in ((a, "a"), (z, "zz")):
            results = {}
            t = threading.Thread(target=lambda: results.update(r=n.eval(f"net_kernel:connect_node('p{rnd}@localhost')")))
            t.start()
            p.connect(f"{node}@localhost", ports[node])
            t.join(30)
            assert results.get("r") == "true", (rnd, node, results, p.proc.output())
            harness.wait_until(lambda: p.lines(f"up {node}@localhost"), 10)
            harness.wait_until(lambda: n.eval(f"lists:member('p{rnd}@localhost', nodes())") == "true", 10)
        harness.wait_until(lambda: len(p.lines("up ")) == 2 and not p.lines("down "), 5,
                           f"round {rnd}: one connection each, none dropped")
        overlaps += len(p.lines("refused "))
        p.proc.stop()
        p.unregister()
        for n in (a, z):
            harness.wait_until(lambda: n.eval(f"lists:member('p{rnd}@localhost', nodes())") == "false", 10)
    print(f"  {overlaps} of 12 rounds really overlapped (an attempt lost on our side)", flush=True)


def test_we_come_back_while_erl_holds_the_old_connection(c):
    """Our initiator meets "alive": the old probe is frozen (erl still thinks it is up); a new probe with the same
    name connects, answers true, erl drops the old connection and accepts the new one."""
    c.epmd()
    a = c.erl("a")
    port = erl_port(c, "a")
    old = Probe(c, register=False)
    old.connect("a@localhost", port)
    old.wait_for_line("up a@localhost")
    harness.wait_until(lambda: a.eval("nodes()") == "[probe@localhost]", 10)
    os.killpg(old.proc.p.pid, signal.SIGSTOP)
    try:
        new = Probe(c, register=False)
        new.connect("a@localhost", port)
        line = new.wait_for_line("up a@localhost", 15)
        assert "published=true" in line
        assert new.lines("alive a@localhost answer=true"), new.proc.output()
        harness.wait_until(lambda: a.eval("nodes()") == "[probe@localhost]", 10)
        # erl really uses the new connection: it answers over it.
        new.send("stats a@localhost")
        new.wait_for_line("stats a@localhost bytes_in")
    finally:
        old.proc.kill9()
    assert not new.lines("down "), new.proc.output()


def test_erl_comes_back_while_we_hold_the_old_connection(c):
    """Our acceptor meets an old connection still up: erl a is frozen, a new erl a (behind a second EPMD) dials us;
    we send "alive", it answers true, we take the old connection down and let the new one in."""
    c.epmd()
    p = Probe(c)
    a1 = c.erl("a")
    assert a1.eval("net_kernel:connect_node('probe@localhost')") == "true"
    p.wait_for_line("up a@localhost")
    epmd2 = harness.free_port()
    c.start(["epmd", "-port", str(epmd2)], name="epmd2")
    harness.wait_until(lambda: harness._connects(epmd2), 10, "second epmd")
    p.register(epmd2, "probe")
    os.killpg(a1.p.pid, signal.SIGSTOP)
    try:
        n = p.line_count()
        a2 = c.erl("a", env={"ERL_EPMD_PORT": str(epmd2)})
        assert a2.eval("net_kernel:connect_node('probe@localhost')") == "true"
        down = p.wait_for_new_line("down a@localhost", n)
        up = p.wait_for_new_line("up a@localhost", n)
        assert "reason=disconnected" in down, down
        assert p.lines("replacing a@localhost"), p.proc.output()
        assert a2.eval("nodes()") == "[probe@localhost]"
        out = p.proc.output().splitlines()[n:]
        assert out.index(down) < out.index(up), out  # the old one went first
    finally:
        os.killpg(a1.p.pid, signal.SIGCONT)
        a1.kill9()


harness.main(globals())
