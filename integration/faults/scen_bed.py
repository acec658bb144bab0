"""The test bed checks itself: every fault does what it says between two namespaces, and undoing it restores the
path (UDP and TCP probes of integration/lib/netprobe.py, no cluster)."""
import json
import os
import sys

import netns
from run import Scenario

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib", "netprobe.py")


def _probe(h, *args, timeout=60):
    return json.loads(h.run([sys.executable, PROBE] + [str(x) for x in args], timeout=timeout).stdout.splitlines()[-1])


def bed_faults(bed, ctx):
    """each fault measured between two namespaces, and gone once undone"""
    a, b = bed.host("a"), bed.host("b")
    echo_b = bed.start(b, [sys.executable, PROBE, "udp-echo", 9000])
    echo_a = bed.start(a, [sys.executable, PROBE, "udp-echo", 9000])
    sink = bed.start(b, [sys.executable, PROBE, "tcp-sink", 9001])
    for p in (echo_a, echo_b, sink):
        p.wait_for_line("ready")

    def rtt(x, y, n=20, t=0.5):
        return _probe(x, "udp-rtt", y.ip, 9000, n, t)
    figures = []
    base = rtt(a, b)
    assert base["replied"] == 20, f"no clean path a <-> b: {base}"
    # isolation: no route out of a node's namespace, nothing of the bed in the machine's own
    routes = a.run(["ip", "-4", "route"]).stdout.split()
    assert "default" not in routes and routes[0] == netns.NET, f"a's routes: {routes}"
    own = netns.run(["ip", "-4", "addr"]).stdout + netns.run(["ip", "link"]).stdout
    assert "198.18." not in own and "br0" not in own, "the bed shows in the machine's own namespace"
    with bed.cut(a, b):
        r1, r2 = rtt(a, b, 3, 0.2), rtt(b, a, 3, 0.2)
        assert r1["replied"] == 0 and r2["replied"] == 0, f"cut both ways: a->b {r1}, b->a {r2}"
    with bed.cut(a, b, one_way=True):
        cnt = bed.start(b, [sys.executable, PROBE, "udp-count", 9002, 1])
        cnt.wait_for_line("ready")
        _probe(a, "udp-send", b.ip, 9002, 50, 0)
        got_b = json.loads(cnt.wait_for_line("received", 10))["received"]
        cnt = bed.start(a, [sys.executable, PROBE, "udp-count", 9002, 2])
        cnt.wait_for_line("ready")
        _probe(b, "udp-send", a.ip, 9002, 50, 0)
        got_a = json.loads(cnt.wait_for_line("received", 10))["received"]
        assert got_b == 0 and got_a == 50, f"one-way cut a->b: b got {got_b}/50, a got {got_a}/50"
    figures.append("cuts hold (both ways, one way)")
    with bed.delay(a, b, 100, jitter_ms=20):
        r = rtt(a, b)
        lo, hi = r["rtt_ms"][0], r["rtt_ms"][-1]
        assert r["replied"] == 20 and lo >= 78 and hi < 400, f"delay 100+-20 ms a->b: {r}"
        back = rtt(b, a, 5)  # the delay is on a's side: b's requests wait only for a's answers
        assert back["rtt_ms"][0] >= 78, f"answers a->b are delayed too: {back}"
    figures.append(f"delay 100+-20ms: rtt {lo:.0f}..{hi:.0f}ms")
    cnt = bed.start(b, [sys.executable, PROBE, "udp-count", 9005, 5])
    cnt.wait_for_line("ready")
    with bed.loss(a, b, 30):
        _probe(a, "udp-send", b.ip, 9005, 400, 0.2)
        lost = 400 - json.loads(cnt.wait_for_line("received", 10))["received"]
    assert 60 <= lost <= 180, f"30% loss a->b: {lost}/400 lost"
    figures.append(f"loss 30%: {lost}/400 lost")
    cnt = bed.start(b, [sys.executable, PROBE, "udp-count", 9003, 2])
    cnt.wait_for_line("ready")
    with bed.duplicate(a, b, 50):
        _probe(a, "udp-send", b.ip, 9003, 200, 1)
    d = json.loads(cnt.wait_for_line("received", 10))
    assert d["unique"] == 200 and 50 <= d["duplicates"] <= 150, f"50% duplication a->b: {d}"
    figures.append(f"duplicate 50%: {d['duplicates']}/200 twice")
    cnt = bed.start(b, [sys.executable, PROBE, "udp-count", 9004, 3])
    cnt.wait_for_line("ready")
    with bed.delay(a, b, 30, jitter_ms=25, seed=ctx.seed):
        _probe(a, "udp-send", b.ip, 9004, 200, 1)
        d = json.loads(cnt.wait_for_line("received", 10))
    assert d["unique"] == 200 and d["reordered"] > 0, f"jitter 25 ms on 1 ms spacing reorders: {d}"
    figures.append(f"jitter reorders {d['reordered']}/200")
    with bed.limit(a, b, 2000):
        r = _probe(a, "tcp-send", b.ip, 9001, 250_000, 30)
        kbit = r["bytes"] * 8 / 1000 / r["seconds"]
        assert kbit < 2000 * 1.25, f"2000 kbit/s limit a->b: {kbit:.0f} kbit/s"
    free = _probe(a, "tcp-send", b.ip, 9001, 400_000, 30)
    free_kbit = free["bytes"] * 8 / 1000 / free["seconds"]
    assert free_kbit > 2000 * 2, f"no limit once undone: {free_kbit:.0f} kbit/s"
    figures.append(f"limit 2000kbit: {kbit:.0f} kbit/s (undone: {free_kbit / 1000:.0f} Mbit/s)")
    # freeze stops the process (its socket still takes datagrams, nothing answers); thaw answers again
    class N:  # a "node" for freeze(): the echo process
        p = echo_b.p
        short = "echo_b"
    with bed.freeze(N):
        assert rtt(a, b, 3, 0.3)["replied"] == 0, "a frozen echo answered"
    assert rtt(a, b, 5)["replied"] == 5, "the thawed echo does not answer"
    figures.append("freeze/thaw")
    # every fault is undone: no table, queue rule or tc class left, the path as clean as at the start
    assert bed.faults == [], bed.faults
    for h in (a, b):
        assert "cnft_" not in h.run(["nft", "list", "ruleset"]).stdout, h.run(["nft", "list", "ruleset"]).stdout
        assert "NFQUEUE" not in h.run(["iptables", "-w", "-S"]).stdout
    assert "cnft_" not in netns.run(["ip", "netns", "exec", bed.sw, "nft", "list", "ruleset"]).stdout
    assert "class htb" not in a.run(["tc", "class", "show", "dev", "eth0"]).stdout
    after = rtt(a, b)
    assert after["replied"] == 20 and after["rtt_ms"][-1] < 100, f"path after undo: {after}"
    return "; ".join(figures) + "; all undone"


SCENARIOS = [Scenario("bed.faults", bed_faults)]
