"""A replica killed with kill -9 comes back with its state: from its --data-dir (shown by restarting it cut off
from its peers), or without one from its peers; either way what it writes afterwards counts (a replica that lost
its state writes under a new id). SIGTERM writes the last state. A damaged state file, a state file of another
node and a data dir in use are refused with a clear error, not a crash."""
import os

from crdt_util import call, client, cluster, connect, harness, node_name, replica, value, wait_in_contact, \
    wait_synced, wait_value

NAMES = ["c1", "c2", "c3"]


def data_dir(c, sname):
    return os.path.join(c.tmp, "data-" + sname)


def persistent_cluster(c):
    return cluster(c, names=NAMES, extra_for=lambda s: ["--data-dir", data_dir(c, s)])


def isolated(c, sname, extra=()):
    """The replica started with a wrong cookie for each other replica: it reaches none of them (nor they it)."""
    cut = []
    for other in NAMES:
        if other != sname:
            cut += ["--node-cookie", f"{node_name(other)}=elsewhere_{other}"]
    return replica(c, sname, NAMES, extra=["--data-dir", data_dir(c, sname)] + cut + list(extra))


def rejoin(ex, p):
    """Gives the isolated replica the cluster's cookie back for its peers (erlang:set_cookie/2 over erpc)."""
    for other in NAMES:
        if node_name(other) != p.node:
            assert ex.eval(f":erpc.call(:\"{p.node}\", :erlang, :set_cookie, [:\"{node_name(other)}\", "
                           f"Node.get_cookie()])") == "true"


def write_some(ex, p):
    assert call(ex, p, "{:counter_add, :n, 10}") == ":ok"
    assert call(ex, p, "{:set_add, :s, :a}") == ":ok"
    assert call(ex, p, "{:set_add, :s, :b}") == ":ok"
    assert call(ex, p, "{:set_remove, :s, :a}") == ":ok"
    assert call(ex, p, "{:map_put, :m, \"k\", {1, 2}}") == ":ok"
    assert call(ex, p, "{:register_put, :r, \"v\"}") == ":ok"


def check_some(ex, nodes, n="{:ok, 10}"):
    wait_value(ex, nodes, ":n", n)
    wait_value(ex, nodes, ":s", "{:ok, [:b]}")
    wait_value(ex, nodes, ":m", "{:ok, %{\"k\" => {1, 2}}}")
    wait_value(ex, nodes, ":r", "{:ok, \"v\"}")


def test_kill9_with_data_dir_comes_back_with_its_state(c):
    nodes, ex = persistent_cluster(c)
    c1, c2, c3 = nodes
    write_some(ex, c1)
    check_some(ex, nodes)
    wait_synced(ex, nodes)
    c1.kill9()
    # Back cut off from its peers: what it has now is what its disk had.
    c1 = isolated(c, "c1")
    connect(ex, c1)
    for name, want in [(":n", "{:ok, 10}"), (":s", "{:ok, [:b]}"), (":m", "{:ok, %{\"k\" => {1, 2}}}"),
                       (":r", "{:ok, \"v\"}")]:
        assert value(ex, c1, name) == want, name
    assert f"objects read back from {data_dir(c, 'c1')}" in c1.output()
    # Writes while cut off, then it rejoins: they count once, on every replica.
    assert call(ex, c1, "{:counter_add, :n, 1}") == ":ok"
    assert call(ex, c2, "{:counter_add, :n, 100}") == ":ok"
    rejoin(ex, c1)
    nodes = [c1, c2, c3]
    wait_in_contact(ex, nodes)
    wait_value(ex, nodes, ":n", "{:ok, 111}")
    wait_synced(ex, nodes)


def test_kill9_without_data_dir_gets_its_state_from_its_peers(c):
    nodes, ex = cluster(c)
    c1, c2, c3 = nodes
    write_some(ex, c1)
    check_some(ex, nodes)
    wait_synced(ex, nodes)
    c1.kill9()
    c1 = replica(c, "c1", NAMES)
    connect(ex, c1)
    nodes = [c1, c2, c3]
    check_some(ex, [c1])
    assert "restarted; it gets the full state" in c2.output()
    # Its own earlier writes came back from the peers under its old id; what it writes now is under a new one, so
    # the counter moves on from 10 instead of being hidden behind its old entry.
    assert call(ex, c1, "{:counter_add, :n, 1}") == ":ok"
    assert call(ex, c1, "{:set_add, :s, :c}") == ":ok"
    wait_value(ex, nodes, ":n", "{:ok, 11}")
    wait_value(ex, nodes, ":s", "{:ok, [:b, :c]}")
    wait_synced(ex, nodes)


def test_sigterm_writes_the_last_state(c):
    nodes, ex = persistent_cluster(c)
    c1 = nodes[0]
    # Written and stopped at once, before a sync round could go by: the stop writes it.
    out = ex.eval(f"for i <- 1..100, do: GenServer.call({{:crdt, :\"{c1.node}\"}}, {{:counter_add, :n, 1}}); :ok")
    assert out == ":ok"
    c1.stop()
    c1 = isolated(c, "c1")
    connect(ex, c1)
    assert value(ex, c1, ":n") == "{:ok, 100}"


def test_bad_state_files_and_a_data_dir_in_use_are_refused(c):
    c.epmd()
    d = data_dir(c, "c1")
    os.makedirs(os.path.join(d, "crdt"))
    with open(os.path.join(d, "crdt", "state"), "wb") as f:
        f.write(b"CNCRDT01" + b"\x00" * 7 + b"\x05" + b"\x00\x00\x00\x00" + b"hello")
    p = replica(c, "c1", NAMES, extra=["--data-dir", d], wait=False)
    line = p.wait_for_line("cannot start", timeout=20)
    assert "checksum mismatch" in line and os.path.join(d, "crdt", "state") in line, line
    assert p.p.wait(10) == 1
    # A state written by another node.
    good = replica(c, "c2", ["c2"], extra=["--data-dir", data_dir(c, "c2")])
    ex = client(c, [good])
    assert call(ex, good, "{:counter_add, :n, 1}") == ":ok"
    good.stop()
    p = replica(c, "c3", NAMES, extra=["--data-dir", data_dir(c, "c2")], wait=False)
    line = p.wait_for_line("cannot start", timeout=20)
    assert "was written by c2@localhost, not by c3@localhost" in line, line
    assert p.p.wait(10) == 1
    # Two nodes on one data dir: the second is refused while the first runs.
    first = replica(c, "c2", ["c2"], extra=["--data-dir", data_dir(c, "c2")])
    p = replica(c, "c4", NAMES, extra=["--data-dir", data_dir(c, "c2")], wait=False)
    line = p.wait_for_line("cannot start", timeout=20)
    assert "in use by another cnode" in line, line
    assert p.p.wait(10) == 1
    assert first.alive()
    # A data dir that cannot be made: a usage error at start.
    blocker = os.path.join(c.tmp, "a-file")
    open(blocker, "w").close()
    p = replica(c, "c5", NAMES, extra=["--data-dir", os.path.join(blocker, "sub")], wait=False)
    p.wait_for_line("--data-dir", timeout=20)
    assert p.p.wait(10) == 1


if __name__ == "__main__":
    harness.main(globals())
