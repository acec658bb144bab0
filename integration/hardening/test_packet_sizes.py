"""Hardening (issue 15): cnode's inbound buffers grow with what has arrived, not with what a packet announces, and
--max-message-bytes closes the connection of a peer whose packet is longer. Handshakes are done by hand from
here (hardening_util.handshake) so that the test writes the bytes that follow the cookie."""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import close_all, closed_by_peer, handshake, lines_with, metrics, start_http_cnode  # noqa

N_CONN = 10
ANNOUNCED = 120_000_000


def bytes_in(m, peer):
    return m.get("cnode_dist_bytes_in_total", peer=peer) or 0


def test_announced_but_unsent_packets_cost_what_arrived(c):
    c.epmd()
    cn = start_http_cnode(c)
    names = [f"pk{i}@localhost" for i in range(N_CONN)]
    socks = [handshake(cn.dist, n, c.cookie) for n in names]
    try:
        harness.wait_until(lambda: metrics(cn.http).get("cnode_dist_connections") == N_CONN, 10,
                           f"{N_CONN} connections up")
        m0 = metrics(cn.http)
        rss0 = m0.get("cnode_memory_resident_bytes")
        for s in socks:
            s.sendall(struct.pack(">I", ANNOUNCED) + b"\x70")  # 120 MB announced, one byte sent
        harness.wait_until(lambda: (lambda m: all(bytes_in(m, n) >= bytes_in(m0, n) + 5 for n in names))(
            metrics(cn.http)), 10, "cnode to read the 5 bytes of every connection")
        m1 = metrics(cn.http)
        rss1 = m1.get("cnode_memory_resident_bytes")
        print(f"{N_CONN} packets announcing {ANNOUNCED / 1e6:.0f} MB each ({N_CONN * ANNOUNCED / 1e9:.1f} GB in "
              f"all), 1 byte sent each: RSS {rss0 / 1e6:.1f} MB -> {rss1 / 1e6:.1f} MB "
              f"(+{(rss1 - rss0) / 1e6:.1f} MB)")
        assert rss1 - rss0 < 50e6, f"RSS grew {(rss1 - rss0) / 1e6:.0f} MB for {N_CONN} announced packets"
        assert closed_by_peer(socks) == 0, "an announced packet under --max-message-bytes closed its connection"
        assert m1.get("cnode_dist_connections") == N_CONN, m1.text
        # one of them sends 8 MB more of its packet: the buffer follows what arrives
        s = socks[0]
        s.sendall(b"\x00" * 8_000_000)
        harness.wait_until(lambda: bytes_in(metrics(cn.http), names[0]) >= bytes_in(m1, names[0]) + 8_000_000,
                           10, "the 8 MB read")
        rss2 = metrics(cn.http).get("cnode_memory_resident_bytes")
        print(f"8 MB more of one packet: RSS {rss2 / 1e6:.1f} MB (+{(rss2 - rss1) / 1e6:.1f} MB)")
        assert rss2 - rss1 < 40e6, (rss1, rss2)
    finally:
        close_all(socks)
    # a packet announced over the maximum (128 MiB by default) closes its connection before any of it arrives
    s = handshake(cn.dist, "big@localhost", c.cookie)
    try:
        harness.wait_until(lambda: bytes_in(metrics(cn.http), "big@localhost") > 0 or
                           metrics(cn.http).get("cnode_dist_connections") >= 1, 10, "big@localhost up")
        t0 = time.monotonic()
        s.sendall(struct.pack(">I", 200_000_000) + b"\x70")
        harness.wait_until(lambda: closed_by_peer([s]) == 1, 5, "cnode to close a 200 MB announced packet")
        print(f"a 200 MB packet announced (over the 128 MiB default): closed in {(time.monotonic() - t0) * 1000:.0f} ms")
    finally:
        s.close()
    line = harness.wait_until(lambda: next((l for l in cn.output().splitlines() if "down big@localhost" in l), None),
                              5, "big@localhost's connection down in the log")
    assert "packet_too_large" in line, line


def test_max_message_bytes(c):
    c.epmd()
    cn = start_http_cnode(c, extra=["--max-message-bytes", "100000"])
    ex = c.elixir("ex")
    ex.eval(f"Process.put(:cn, :\"{cn.node}\")")
    echo = ("b = :binary.copy(<<7>>, {n}); send({{:echo, Process.get(:cn)}}, {{self(), b}}); "
            "receive do ^b -> :echoed after 5000 -> :timeout end")
    assert ex.eval(echo.format(n=50_000)) == ":echoed"
    assert ex.eval("Node.monitor(Process.get(:cn), true)") == "true"
    t0 = time.monotonic()
    got = ex.eval("b = :binary.copy(<<7>>, 200_000); send({:echo, Process.get(:cn)}, {self(), b}); "
                  "d = receive do {:nodedown, n} -> {:nodedown, n} after 5000 -> :no_nodedown end; "
                  "{d, receive do ^b -> :echoed after 0 -> :not_echoed end}")
    took = time.monotonic() - t0
    print(f"200 000 bytes to echo under --max-message-bytes 100000: {got} in {took * 1000:.0f} ms")
    assert got == f"{{{{:nodedown, :{cn.node}}}, :not_echoed}}", got
    line = harness.wait_until(lambda: next((l for l in cn.output().splitlines() if "ex@localhost" in l and (
        "packet_too_large" in l or "larger than" in l or "too large" in l or "longer than --max-message-bytes" in l)),
        None), 5,
        "a packet-too-large line about ex@localhost")
    print(f"cnode logged: {line}")
    # the node comes back, and 50 000 bytes still echo
    assert ex.eval(echo.format(n=50_000)) == ":echoed"
    assert ex.eval(echo.format(n=99_000)) == ":echoed"
    # raw: a packet announced at 100 001 bytes closes the connection before its body arrives
    s = handshake(cn.dist, "raw@localhost", c.cookie)
    try:
        harness.wait_until(lambda: metrics(cn.http).get("cnode_dist_connections") == 2, 10, "raw@localhost up")
        s.sendall(struct.pack(">I", 100_001))
        harness.wait_until(lambda: closed_by_peer([s]) == 1, 5, "cnode to close a packet announced over the max")
    finally:
        s.close()


harness.main(globals())
