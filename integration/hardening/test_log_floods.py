"""Hardening (issue 15): thousands of failed handshakes cost cnode's log a few lines, with a count of what was left
out once the 10 s window is over; every failure is still counted in /metrics. Live: cnode, a real epmd, raw
sockets from here (garbage first messages, wrong-cookie handshakes)."""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import Refused, elixir_with_cn, flood, handshake, lines_with, metrics, start_http_cnode  # noqa

N_GARBAGE = 5000
N_BAD_COOKIE = 300
GARBAGE = b"\x00\x03XYZ"  # a framed first message that is no send_name: refused at once


def garbage_once(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(GARBAGE)
        s.recv(1)
    return True


def test_failed_handshake_flood_is_rate_limited_in_the_log(c):
    c.epmd()
    cn = start_http_cnode(c)
    t0 = time.monotonic()
    done, _, closed = flood(cn.dist, [GARBAGE] * N_GARBAGE, concurrency=100, wait_reply=1, timeout=40)
    took = time.monotonic() - t0
    assert done == N_GARBAGE and closed >= N_GARBAGE * 0.95, (done, closed)
    # wrong cookies, 5 from each of 60 addresses (under the slow-down that starts after 5)
    t1 = time.monotonic()
    refused = 0
    for i in range(N_BAD_COOKIE):
        try:
            handshake(cn.dist, f"guess{i}@localhost", "not" + c.cookie, src=f"127.0.1.{1 + i // 5}").close()
        except Refused:
            refused += 1
    took_bad = time.monotonic() - t1
    assert refused == N_BAD_COOKIE, refused
    m = harness.wait_until(lambda: (lambda x: x if x.sum("cnode_dist_handshakes_refused_total") >=
                                    N_GARBAGE + N_BAD_COOKIE else None)(metrics(cn.http)), 10,
                           "every refusal counted in /metrics")
    lines = lines_with(cn, "refused connection")
    print(f"{N_GARBAGE} garbage handshakes in {took:.2f}s and {N_BAD_COOKIE} wrong cookies in {took_bad:.2f}s: "
          f"{len(lines)} 'refused connection' lines; /metrics refused by reason: "
          f"{[(l['reason'], v) for l, v in m.all('cnode_dist_handshakes_refused_total')]}")
    assert 2 <= len(lines) <= 12, lines  # 5 a kind per 10 s: garbage, and the wrong cookie
    # the next refusal after the window carries the count of the left-out ones of its kind
    t2 = time.monotonic()
    line = harness.wait_until(lambda: garbage_once(cn.dist) and next(
        (l for l in lines_with(cn, "refused connection") if "more like it in the last" in l), None), 15,
        "a refused line with the count of the ones left out", interval=0.25)
    print(f"after {time.monotonic() - t2 + took + took_bad:.1f}s: {line}")
    left_out = int(re.search(r"\(and (\d+) more like it in the last (\d+) s\)", line).group(1))
    assert left_out >= N_GARBAGE - 10 or left_out >= N_BAD_COOKIE - 10, left_out
    assert len(lines_with(cn, "refused connection")) <= 20
    ex = elixir_with_cn(c, cn)
    assert ex.eval("Node.ping(Process.get(:cn))") == ":pong"


harness.main(globals())
