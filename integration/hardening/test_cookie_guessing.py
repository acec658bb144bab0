"""Hardening (issue 15): an address that fails the cookie more than 5 times in a minute waits 50 ms more per
further failure, a second at most; other addresses are not slowed. Live: cnode, a real epmd, raw handshakes
from here with a wrong cookie, a real Elixir node."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import Refused, elixir_with_cn, handshake, metrics, start_http_cnode  # noqa: E402

N = 50
GUESSER = "127.0.2.1"


def attempt(port, cookie, src, name):
    t0 = time.monotonic()
    try:
        handshake(port, name, cookie, src=src, timeout=10).close()
        ok = True
    except Refused:
        ok = False
    return ok, time.monotonic() - t0


def test_cookie_guesses_slow_down(c):
    c.epmd()
    cn = start_http_cnode(c)
    took = []
    for i in range(N):
        ok, t = attempt(cn.dist, "guess" + str(i), GUESSER, "guesser@localhost")
        assert not ok, f"guess {i} accepted"
        took.append(t)
    ms = [round(t * 1000) for t in took]
    print(f"{N} wrong-cookie handshakes from {GUESSER}, ms each: {ms}; total {sum(took):.1f}s")
    first5, last10 = took[:5], took[-10:]
    assert max(first5) < 0.3, ms
    # failure n+1 waits 50 ms * (n - 5): the 7th 50 ms, the 10th 200 ms, the 25th and later the 1 s cap
    assert 0.04 <= took[6] - min(first5) < 0.5, ms
    assert 0.19 <= took[9] - min(first5) < 0.7, ms
    assert min(last10) >= 0.95 and max(last10) < 2.0, ms
    assert sum(last10) / 10 > 10 * sum(first5) / 5, ms
    # another address is not slowed: a right cookie from it is answered at once, and so is a real node
    ok, t = attempt(cn.dist, c.cookie, "127.0.2.2", "honest@localhost")
    print(f"the right cookie from another address: {ok} in {t * 1000:.1f} ms")
    assert ok and t < 0.5, t
    ex = elixir_with_cn(c, cn)
    out = ex.eval("t = System.monotonic_time(:millisecond); r = Node.ping(Process.get(:cn)); "
                  "{r, System.monotonic_time(:millisecond) - t}")
    print(f"a real Elixir node (127.0.0.1): {out}")
    assert out.startswith("{:pong, ") and int(out[8:-1]) < 1000, out
    # the guesser itself, right cookie now: still made to wait (the slow-down is by address, not by cookie)
    ok, t = attempt(cn.dist, c.cookie, GUESSER, "guesser2@localhost")
    print(f"the right cookie from the guessing address: {ok} in {t * 1000:.1f} ms")
    assert ok and t >= 0.95, t
    m = metrics(cn.http)
    assert m.get("cnode_dist_handshakes_refused_total", reason="invalid challenge digest (cookie mismatch)") == N, \
        m.text


harness.main(globals())
