"""Ticks and liveness against live OTP 25 nodes with a short net_ticktime: the connection stays up through many
tick periods, a killed node is noticed at once, a frozen one within net_ticktime."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from distwire import Probe, erl_port, elapsed_until  # noqa: E402

TICK = 4  # seconds, for erl (-kernel net_ticktime 4) and for the probe


def _connected(c, hidden):
    c.epmd()
    p = Probe(c, ticktime=TICK, hidden=hidden)
    a = c.erl("a", args=["-kernel", "net_ticktime", str(TICK)])
    assert a.eval("net_kernel:connect_node('probe@localhost')") == "true"
    p.wait_for_line("up a@localhost")
    return p, a


def _stays_up(p, a, seconds, listing):
    """Polls erl's view for `seconds` (several tick periods): it must list us the whole time."""
    deadline = time.monotonic() + seconds
    polls = 0
    while time.monotonic() < deadline:
        assert a.eval(listing) == "[probe@localhost]", f"dropped after {polls} polls"
        polls += 1
        time.sleep(0.5)  # polling interval of this deadline-bounded check, not synchronisation
    assert not p.lines("down "), p.lines("down ")
    return polls


def test_visible_connection_survives_ticktime_then_kill9_detected(c):
    p, a = _connected(c, hidden=False)
    _stays_up(p, a, 3 * TICK, "nodes()")
    p.send("stats a@localhost")
    stats = p.wait_for_line("stats a@localhost")
    fields = dict(f.split("=") for f in stats.split()[2:])
    assert int(fields["ticks_in"]) >= 2, stats  # erl ticks us...
    # ...and we tick it when we have nothing else to say (or answer its ticks).
    assert int(fields["ticks_out"]) >= 2, stats
    n = p.line_count()
    a.kill9()
    took = elapsed_until(lambda: any("down a@localhost" in l for l in p.proc.output().splitlines()[n:]), TICK,
                         "kill -9 noticed")
    line = p.wait_for_new_line("down a@localhost", n)
    assert "reason=connection_closed" in line, line
    print(f"kill -9 noticed after {took:.3f}s", flush=True)


def test_hidden_connection_survives_ticktime(c):
    p, a = _connected(c, hidden=True)
    _stays_up(p, a, 2 * TICK, "nodes(hidden)")


def test_frozen_peer_dropped_within_ticktime(c):
    p, a = _connected(c, hidden=False)
    n = p.line_count()
    os.killpg(a.p.pid, signal.SIGSTOP)
    try:
        took = elapsed_until(lambda: any("down a@localhost" in l for l in p.proc.output().splitlines()[n:]),
                             TICK * 2 + 2, "frozen peer dropped")
    finally:
        os.killpg(a.p.pid, signal.SIGCONT)
    line = p.wait_for_new_line("down a@localhost", n)
    assert "reason=net_tick_timeout" in line, line
    assert TICK * 0.9 <= took <= TICK * 1.25 + 1, took
    print(f"frozen peer dropped after {took:.3f}s (net_ticktime {TICK}s)", flush=True)


def test_erl_with_shorter_ticktime_than_ours(c):
    """Our ticktime is 60 s, erl's 4 s: answering its ticks keeps us alive in its eyes."""
    c.epmd()
    p = Probe(c)
    a = c.erl("a", args=["-kernel", "net_ticktime", str(TICK)])
    assert a.eval("net_kernel:connect_node('probe@localhost')") == "true"
    p.wait_for_line("up a@localhost")
    _stays_up(p, a, 3 * TICK, "nodes()")


harness.main(globals())
