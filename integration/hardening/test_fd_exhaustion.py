"""Hardening (issue 15): cnode out of descriptors (EMFILE) neither spins nor floods its log, and takes a real node
again once descriptors are free. cnode raises its soft descriptor limit to the hard one at start, so the test
lowers both (prlimit --nofile=256:256, which execs cnode: the pid is cnode's)."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import (close_all, closed_by_peer, cpu_seconds, elixir_with_cn, idle_connections,  # noqa
                            lines_with, metrics, start_http_cnode, timed_ping)

LIMIT = 256
N_IDLE = 300
WINDOW = 3.0


def test_emfile_backs_off_and_recovers(c):
    c.epmd()
    cn = start_http_cnode(c, prefix=["prlimit", f"--nofile={LIMIT}:{LIMIT}", "--"])
    with open(f"/proc/{cn.p.pid}/limits") as f:
        lim = next(l for l in f if l.startswith("Max open files")).split()
    assert lim[3:5] == [str(LIMIT), str(LIMIT)], lim  # the pid is cnode's, and its limit is the one set
    ex = elixir_with_cn(c, cn)
    # two source addresses, so that the 256-a-address handshake bound does not free descriptors for cnode
    socks = idle_connections(cn.dist, N_IDLE, srcs=("127.0.0.2", "127.0.0.3"))
    try:
        cn.wait_for_line("accept failed", timeout=5)
        nfd = len(os.listdir(f"/proc/{cn.p.pid}/fd"))
        # one connection to the HTTP port as well: its listener is out of descriptors too
        http_sock = socket.create_connection(("127.0.0.1", cn.http), timeout=5)
        socks.append(http_sock)
        http0 = len(lines_with(cn, "http: accept failed"))
        cpu0 = cpu_seconds(cn.p.pid)
        t0 = time.monotonic()
        time.sleep(WINDOW)  # a measuring window, not a synchronisation: cnode's CPU while it stays out of fds
        cpu = cpu_seconds(cn.p.pid) - cpu0
        window = time.monotonic() - t0
        failed = [l for l in lines_with(cn, "accept failed") if "http:" not in l]
        http_failed = len(lines_with(cn, "http: accept failed")) - http0
        refused_by_reserve = closed_by_peer(socks)
        print(f"{N_IDLE} idle connections against {LIMIT} descriptors: cnode holds {nfd} fds; "
              f"{cpu:.3f}s of CPU in {window:.2f}s; {len(failed)} 'accept failed' lines: {failed}; "
              f"{refused_by_reserve} of ours closed by cnode; 'http: accept failed' lines in the window: {http_failed}")
        assert nfd <= LIMIT, nfd
        assert cpu < 0.5, f"cnode used {cpu:.2f}s of CPU in {window:.1f}s out of descriptors"
        assert 1 <= len(failed) <= 5, failed
        # The HTTP listener pauses 100 ms after each failure (no spin), but logs every one of them, 10 lines a
        # second for as long as a connection waits in its backlog (not rate-limited like the distribution's, and
        # no reserve descriptor to refuse it): bounded here at its pause, reported as a bug.
        assert http_failed <= 4 * WINDOW * 10, http_failed
        assert all("open files" in l or "descriptor" in l.lower() for l in failed), failed
    finally:
        close_all(socks)
    # descriptors free again: a real node gets in
    r, ms = harness.wait_until(lambda: (lambda x: x if x[0] == ":pong" else None)(timed_ping(ex)), 15,
                               "a pong once the idle connections are gone")
    print(f"Elixir ping after closing them: {r} in {ms:.1f} ms")
    assert ex.eval("GenServer.call({:echo, Process.get(:cn)}, :back)") == ":back"
    assert cn.alive()
    assert metrics(cn.http).get("cnode_dist_connections") == 1


harness.main(globals())
