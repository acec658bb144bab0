"""Hardening (issue 15): what a peer says before the cookie creates no state in cnode, and a flood of half-open
connections cannot keep a real node out. Live: cnode, a real epmd, a real Elixir node, raw sockets from here."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import (close_all, closed_by_peer, elixir_with_cn, flood, idle_connections, lines_with,  # noqa
                            metrics, raise_nofile, send_name, start_http_cnode, timed_ping)

N_NAMES = 20_000


def test_send_name_flood_creates_no_atoms(c):
    c.epmd()
    cn = start_http_cnode(c)
    ex = elixir_with_cn(c, cn)
    m0 = metrics(cn.http)
    atoms0, rss0 = m0.get("cnode_atoms"), m0.get("cnode_memory_resident_bytes")
    t0 = time.monotonic()
    # every connection: a valid send_name under a name never seen, cnode's "sok" read back, then a reset
    done, replied, closed = flood(cn.dist, (send_name(f"flood{i}@h") for i in range(N_NAMES)), concurrency=200,
                                  wait_reply=5, timeout=50)
    took = time.monotonic() - t0
    assert done == N_NAMES, (done, replied, closed)
    assert replied >= N_NAMES * 0.95, f"only {replied} of {N_NAMES} send_names answered (closed: {closed})"
    m1 = metrics(cn.http)
    atoms1, rss1 = m1.get("cnode_atoms"), m1.get("cnode_memory_resident_bytes")
    print(f"{N_NAMES} send_names in {took:.2f}s ({N_NAMES / took:.0f}/s), {replied} answered 'ok'; "
          f"cnode_atoms {atoms0:.0f} -> {atoms1:.0f}; RSS {rss0 / 1e6:.1f} MB -> {rss1 / 1e6:.1f} MB; "
          f"refused lines logged: {len(lines_with(cn, 'refused connection'))}")
    assert abs(atoms1 - atoms0) <= 5, f"cnode_atoms {atoms0} -> {atoms1} after {N_NAMES} names before the cookie"
    assert rss1 - rss0 < 30e6, f"RSS grew {(rss1 - rss0) / 1e6:.1f} MB over {N_NAMES} pending handshakes"
    assert m1.get("cnode_dist_connections") == 0, m1.text
    r, ms = timed_ping(ex)
    print(f"Elixir ping right after the flood: {r} in {ms:.1f} ms")
    assert r == ":pong" and ms < 3000, (r, ms)
    # the names tried are not atoms on cnode, nor known nodes
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :nodes, [:known]) |> Enum.any?(fn n -> "
                   "String.starts_with?(Atom.to_string(n), \"flood\") end)") == "false"
    assert len(lines_with(cn, "refused connection")) <= 40, len(lines_with(cn, "refused connection"))
    # a second flood of new names, now with a real peer connected: still no atoms, and memory does not keep
    # growing with the count
    mb = metrics(cn.http)
    flood(cn.dist, (send_name(f"again{i}@h") for i in range(N_NAMES)), concurrency=200, wait_reply=5, timeout=50)
    m2 = metrics(cn.http)
    print(f"a second {N_NAMES} with the Elixir node connected: cnode_atoms {mb.get('cnode_atoms'):.0f} -> "
          f"{m2.get('cnode_atoms'):.0f}, RSS {mb.get('cnode_memory_resident_bytes') / 1e6:.1f} MB -> "
          f"{m2.get('cnode_memory_resident_bytes') / 1e6:.1f} MB")
    assert abs(m2.get("cnode_atoms") - mb.get("cnode_atoms")) <= 5, (mb.get("cnode_atoms"), m2.get("cnode_atoms"))
    assert m2.get("cnode_memory_resident_bytes") - rss1 < 10e6, (rss1, m2.get("cnode_memory_resident_bytes"))


SRCS = tuple(f"127.0.0.{i}" for i in range(2, 10))  # 8 source addresses: cnode's 256 a address and 512 in all
PER_SRC = 300


def test_half_open_flood_does_not_keep_a_node_out(c):
    raise_nofile(len(SRCS) * PER_SRC + 500)
    c.epmd()
    cn = start_http_cnode(c)
    ex = elixir_with_cn(c, cn)
    socks = []
    try:
        t0 = time.monotonic()
        socks = idle_connections(cn.dist, len(SRCS) * PER_SRC, srcs=SRCS)
        opened = time.monotonic() - t0
        # cnode keeps at most 512 under way (256 from one address) and drops the oldest to make room
        still = harness.wait_until(lambda: (lambda n: n if n <= 512 else None)(len(socks) - closed_by_peer(socks)),
                                   5, "cnode to drop all but 512 of the half-open connections")
        per_src = {a: sum(1 for s in socks[i::len(SRCS)] if closed_by_peer([s]) == 0) for i, a in enumerate(SRCS)}
        r, ms = timed_ping(ex)
        m = metrics(cn.http)
        refused = m.get("cnode_dist_handshakes_refused_total", reason="too many handshakes")
        print(f"{len(socks)} idle connections from {len(SRCS)} addresses opened in {opened:.2f}s; still open at "
              f"cnode: {still} (per address: {sorted(per_src.values())}); Elixir ping: {r} in {ms:.1f} ms; "
              f"refused 'too many handshakes': {refused}")
        assert r == ":pong", r
        assert ms < 3000, f"ping took {ms:.0f} ms with {len(socks)} half-open connections"
        assert max(per_src.values()) <= 256, per_src
        assert refused and refused > 0, m.text
        assert refused >= len(socks) - 512 - 10, (refused, len(socks))
        assert len(lines_with(cn, "too many handshakes")) <= 10, lines_with(cn, "too many handshakes")
    finally:
        close_all(socks)
    assert ex.eval("GenServer.call({:echo, Process.get(:cn)}, :still_up)") == ":still_up"


def test_one_address_holds_at_most_256(c):
    c.epmd()
    cn = start_http_cnode(c)
    socks = idle_connections(cn.dist, 300, srcs=("127.0.0.10",))
    try:
        still = harness.wait_until(lambda: (lambda n: n if n <= 256 else None)(300 - closed_by_peer(socks)), 5,
                                   "cnode to keep 256 of one address's 300")
        # the ones dropped are the oldest: the first 44 opened
        first = closed_by_peer(socks[:300 - 256])
        print(f"300 idle connections from one address: {still} still open at cnode, {first} of the 44 oldest closed")
        assert still == 256, still
        assert first == 300 - 256, first
        m = metrics(cn.http)
        assert m.get("cnode_dist_handshakes_refused_total", reason="too many handshakes") == 300 - 256, m.text
    finally:
        close_all(socks)


harness.main(globals())
