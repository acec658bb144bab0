"""The Raft KV with --data-dir: every member killed with -9 and restarted from its directory comes back with
everything that was acknowledged (entries and a snapshot, locks included); a member restarted alone rejoins
(ra #179); a corrupt log refuses to start with the file and offset."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402
from test_kv import leader  # noqa: E402

NAMES = ["kv1", "kv2", "kv3"]


def flags(d, name):
    members = ",".join(f"{s}@{harness.HOST}" for s in NAMES)
    return ["--raft-group", f"kv={members}", "--raft-election-ms", "300", "--raft-heartbeat-ms", "50",
            "--raft-request-timeout-ms", "3000", "--raft-snapshot-entries", "50",
            "--data-dir", os.path.join(d, name)]


def call(ex, node, req):
    return ex.eval(f"GenServer.call({{:kv, :\"{node}\"}}, {req}, 5000)")


def test_restart_every_member_from_its_directory(c):
    d = tempfile.mkdtemp(prefix="cnode-raft-")
    c.epmd()
    nodes = {s: start_cnode(c, s, extra=flags(d, s)) for s in NAMES}
    ex = c.elixir("client")
    ex.eval("Process.put(:m, [" + ", ".join(f":\"{p.node}\"" for p in nodes.values()) + "])")
    lead = harness.wait_until(lambda: leader(ex), 15, "a leader")
    assert call(ex, lead, "{:status}") == "{:error, :badarg}"
    assert ex.eval(f"GenServer.call({{:kv, :\"{lead}\"}}, :status).durable") == "true"
    assert ex.eval(f"for i <- 1..120, do: GenServer.call({{:kv, :\"{lead}\"}}, {{:incr, :n, 1}}); :ok") == ":ok"
    assert call(ex, lead, "{:put, :last, \"acknowledged\"}") == ":ok"
    snap = int(ex.eval(f"GenServer.call({{:kv, :\"{lead}\"}}, :status).snapshot_index"))
    assert snap > 0
    # Every member dies at once: nothing but the directories is left.
    for p in nodes.values():
        p.kill9()
    nodes = {s: start_cnode(c, s, extra=flags(d, s)) for s in NAMES}
    lead = harness.wait_until(lambda: leader(ex), 20, "a leader after the restart")
    assert call(ex, lead, "{:get, :n}") == "{:ok, 120}"
    assert call(ex, lead, "{:get, :last}") == '{:ok, "acknowledged"}'
    assert call(ex, lead, "{:incr, :n, 1}") == "{:ok, 121}"
    # One member restarted alone (the others go on) rejoins and catches up.
    follower = next(s for s in NAMES if f"{s}@{harness.HOST}" != lead)
    nodes[follower].kill9()
    assert call(ex, lead, "{:put, :while_down, 1}") == ":ok"
    nodes[follower] = start_cnode(c, follower, extra=flags(d, follower))
    harness.wait_until(lambda: call(ex, f"{follower}@{harness.HOST}", "{:get, :while_down, :local}") == "{:ok, 1}",
                       15, "the restarted member to catch up")
    assert call(ex, f"{follower}@{harness.HOST}", "{:get, :n, :local}") == "{:ok, 121}"
    # A damaged record before the end of a log refuses to start, naming the file.
    for p in nodes.values():
        p.stop()
    wal_dir = os.path.join(d, follower, "raft", "kv")
    segs = sorted(f for f in os.listdir(wal_dir) if f.startswith("wal-"))
    seg = os.path.join(wal_dir, segs[-1])
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.seek(size // 3)
        b = f.read(1)
        f.seek(size // 3)
        f.write(bytes([b[0] ^ 0xFF]))
    bad = start_cnode(c, follower, extra=flags(d, follower), wait=False)
    line = bad.wait_for_line("raft group kv", timeout=15)
    assert "wal-" in line, line
    harness.wait_until(lambda: not bad.alive(), 10, "the node to refuse to start")


if __name__ == "__main__":
    harness.main(globals())
