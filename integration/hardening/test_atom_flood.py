"""Hardening (issue 15): atoms learned from the wire are reclaimable. An authenticated peer (the handshake done by
hand, hardening_util.handshake) floods cnode with fresh atoms: first 1 050 000 of them in messages of 10 000 (more
than the table holds, 1 048 576), which cnode decodes and drops, so the connection stays up; then one message of
1 050 000, which fills the table and closes the flooder's connection (`atom_table_full`). After each, the table's
count comes back to its baseline (within COUNT_MARGIN) and RSS within RSS_MARGIN of its baseline within DEADLINE
seconds, the node lives, a well-behaved Elixir peer's messages full of new atoms are accepted and answered by
cnode's echo, and the flooder connects again and is served. Before the atoms were reference-counted the first flood
alone closed the connection and the table stayed full for good (RSS 10 -> 136 MB, never back).

Margins: what may stay is what holds atoms on purpose — each connection's atom cache (2 048 entries at most, the
Elixir peer's) and the unreferenced atoms that linger in the table's shards (2 048 at most, etf/atom.cpp), so
COUNT_MARGIN is 6 000 — and in memory those, the shards' buckets at their shrunk size and malloc's free arena tops
(under 2 MiB each, cnode/host.cpp): RSS_MARGIN is test_memory_back's 8 MiB, far under the ~130 MB a full table
takes. Freed memory goes back every 5 s (malloc_trim), so 30 s is six trims."""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import closed_by_peer, handshake, lines_with, metrics, start_http_cnode  # noqa: E402
from rss import Peak, rss  # noqa: E402

COUNT_MARGIN = 6000
RSS_MARGIN = 8 * 1024 * 1024
DEADLINE = 30.0
FLOOD = 1_050_000
PER_MESSAGE = 10_000


def small_atom(name):
    b = name.encode()
    return b"\x77" + bytes([len(b)]) + b  # SMALL_ATOM_UTF8_EXT


def reg_send(from_node, to_name, atoms):
    """A pass-through REG_SEND packet (4-byte length first): {6, FromPid, '', ToName} and the list of atoms."""
    pid = b"\x58" + small_atom(from_node) + struct.pack(">III", 1, 0, 1)  # NEW_PID_EXT
    control = b"\x83\x68\x04\x61\x06" + pid + small_atom("") + small_atom(to_name)
    payload = b"\x83\x6c" + struct.pack(">I", len(atoms)) + b"".join(atoms) + b"\x6a"
    body = b"\x70" + control + payload
    return struct.pack(">I", len(body)) + body


def fresh_atoms(prefix, start, n):
    return [small_atom(f"{prefix}{i}") for i in range(start, start + n)]


def atoms_now(cn):
    return metrics(cn.http).get("cnode_atoms")


def bytes_in(cn, peer):
    return metrics(cn.http).get("cnode_dist_bytes_in_total", peer=peer) or 0


def wait_back(cn, base_count, base_rss, what):
    t0 = time.monotonic()
    last = {}

    def back():
        last["count"], last["rss"] = atoms_now(cn), rss(cn.p.pid)
        return last["count"] <= base_count + COUNT_MARGIN and last["rss"] <= base_rss + RSS_MARGIN
    try:
        harness.wait_until(back, DEADLINE, "atoms and RSS back", interval=0.2)
    except AssertionError:
        raise AssertionError(f"{what}: {last['count']:.0f} atoms (baseline {base_count:.0f}), RSS "
                             f"{last['rss'] / 1e6:.1f} MB (baseline {base_rss / 1e6:.1f} MB) after {DEADLINE:.0f} s")
    return time.monotonic() - t0, last


def well_behaved(ex, n=1000):
    """n atoms new to both sides, sent by Elixir to cnode's echo and answered: the count of atoms echoed intact."""
    out = ex.eval(f"u = System.unique_integer([:positive]); "
                  f"atoms = for i <- 1..{n}, do: String.to_atom(\"wb_#{{u}}_#{{i}}\"); "
                  f"r = GenServer.call({{:echo, Process.get(:cn)}}, {{:atoms, atoms}}, 10000); "
                  f"if r == {{:atoms, atoms}}, do: length(atoms), else: :mismatch", timeout=30)
    return out


def test_atom_floods(c):
    c.epmd()
    cn = start_http_cnode(c)
    ex = c.elixir("ex")
    ex.eval(f"Process.put(:cn, :\"{cn.node}\")")
    assert well_behaved(ex, 10) == "10"
    flooder = "flood@localhost"
    s = handshake(cn.dist, flooder, c.cookie)
    harness.wait_until(lambda: metrics(cn.http).get("cnode_dist_connections") == 2, 10, "both peers connected")
    base_count, base_rss = atoms_now(cn), rss(cn.p.pid)
    limit = metrics(cn.http).get("cnode_atom_limit")
    print(f"baseline: {base_count:.0f} atoms of {limit:.0f}, RSS {base_rss / 1e6:.1f} MB")
    assert FLOOD + base_count > limit

    # 1: more fresh atoms than the table holds, 10 000 a message: decoded, dropped, reclaimed; the peer stays
    peak = Peak(cn.p.pid)
    t0 = time.monotonic()
    sent0 = bytes_in(cn, flooder)
    sent = 0
    try:
        for k in range(FLOOD // PER_MESSAGE):
            pkt = reg_send(flooder, "nobody_here", fresh_atoms("fa", k * PER_MESSAGE, PER_MESSAGE))
            s.sendall(pkt)
            sent += len(pkt)
        harness.wait_until(lambda: bytes_in(cn, flooder) >= sent0 + sent, 60, "cnode to read the whole flood",
                           interval=0.2)
    finally:
        rss_peak = peak.stop()
    took = time.monotonic() - t0
    assert closed_by_peer([s]) == 0, "cnode closed the flooder's connection"
    back_s, last = wait_back(cn, base_count, base_rss, "after 1 050 000 atoms in messages of 10 000")
    print(f"flood 1: {FLOOD} fresh atoms in {FLOOD // PER_MESSAGE} messages ({sent / 1e6:.1f} MB) in {took:.1f} s, "
          f"connection kept; RSS peak {rss_peak / 1e6:.1f} MB; back to {last['count']:.0f} atoms and RSS "
          f"{last['rss'] / 1e6:.1f} MB in {back_s:.1f} s")
    assert well_behaved(ex) == "1000"
    assert metrics(cn.http).get("cnode_dist_connections") == 2

    # 2: one message of 1 050 000 fresh atoms fills the table: that connection is closed, the rest goes on
    peak = Peak(cn.p.pid)
    t0 = time.monotonic()
    try:
        s.sendall(reg_send(flooder, "nobody_here", fresh_atoms("fb", 0, FLOOD)))
        harness.wait_until(lambda: closed_by_peer([s]) == 1, 60, "cnode to close the flooder's connection")
    finally:
        rss_peak = peak.stop()
        s.close()
    took = time.monotonic() - t0
    line = harness.wait_until(lambda: next(iter(lines_with(cn, f"bad control message from {flooder}")), None), 10,
                              "the flooder's connection closed in the log")
    assert "atom table full" in line, line
    back_s, last = wait_back(cn, base_count, base_rss, "after a message of 1 050 000 atoms")
    print(f"flood 2: one message of {FLOOD} fresh atoms closed its connection in {took:.1f} s ({line.strip()}); "
          f"RSS peak {rss_peak / 1e6:.1f} MB; back to {last['count']:.0f} atoms and RSS {last['rss'] / 1e6:.1f} MB "
          f"in {back_s:.1f} s")

    # well-behaved peers are served again: new atoms from Elixir, and from the flooder on a new connection
    for _ in range(3):
        assert well_behaved(ex) == "1000"
    s = handshake(cn.dist, flooder, c.cookie)
    try:
        harness.wait_until(lambda: metrics(cn.http).get("cnode_dist_connections") == 2, 10, "the flooder back")
        before = bytes_in(cn, flooder)
        pkt = reg_send(flooder, "nobody_here", fresh_atoms("fc", 0, 100))
        s.sendall(pkt)
        harness.wait_until(lambda: bytes_in(cn, flooder) >= before + len(pkt), 10, "the flooder's new atoms read")
        assert closed_by_peer([s]) == 0, "new atoms closed a connection after the flood"
    finally:
        s.close()
    assert cn.alive(), "cnode died"
    assert ex.eval("Node.ping(Process.get(:cn))") == ":pong"


if __name__ == "__main__":
    harness.main(globals())
