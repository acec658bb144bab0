"""Diagnostic (no peer to compare with): how long a follower's group process holds its requests while it installs
a snapshot from the leader. kv1, an in-memory group of one, is filled with KEYS keys ({:value, i, <<h::32,
0::768>>}, h = phash2({SEED, i})), so its log is compacted to a snapshot (one every 4 096 entries); then kv2, started
empty as a joiner, is added ({:add_member, kv2}): the leader sends it the snapshot. A client on its own node loops
`{:get, k, :local}` on kv2 (k drawn from SEED) from before the add until kv2 holds every key: the gets' latency
p50 / p99 / p99.9 / max in microseconds, how many, and the time from the add to kv2 holding every key.
Usage: CNODE_BIN_DIR=build/bin python3 bench/raft/install_stall.py [KEYS=1000000] [SEED=1] [ELECTION_MS=1000]"""
import os
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "integration", "cnode"))
sys.path.insert(0, os.path.join(here, "..", "..", "integration", "lib"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

K = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1
ELECTION_MS = int(sys.argv[3]) if len(sys.argv) > 3 else 1000  # the leader sends the snapshot again after as long
c = harness.Cluster()
p1 = p2 = None
try:
    c.epmd()
    n1, n2 = f"kv1@{harness.HOST}", f"kv2@{harness.HOST}"
    common = ["--raft-election-ms", str(ELECTION_MS), "--raft-request-timeout-ms", "600000"]
    t0 = time.monotonic()
    p1 = start_cnode(c, sname="kv1", extra=["--raft-group", f"kv={n1}"] + common)
    # kv2's list does not name it: a joiner, empty until the leader catches it up.
    p2 = start_cnode(c, sname="kv2", extra=["--raft-group", f"kv={n1}"] + common)
    a = c.elixir("a", hidden=True)
    a.eval(f"Process.put(:s1, {{:kv, :\"{n1}\"}}); Process.put(:s2, {{:kv, :\"{n2}\"}}); "
           f"true = Node.connect(:\"{n1}\"); true = Node.connect(:\"{n2}\")")
    harness.wait_until(lambda: a.eval("GenServer.call(Process.get(:s1), :status).role") == ":leader",
                       15 + 2 * ELECTION_MS / 1000, "leader")
    a.eval(f"s = Process.get(:s1); 1..{K} |> Task.async_stream(fn i -> h = :erlang.phash2({{{SEED}, i}}); "
           f":ok = GenServer.call(s, {{:put, i, {{:value, i, <<h::32, 0::768>>}}}}, 60_000) end, max_concurrency: 64, "
           f"timeout: 60_000) |> Stream.run()", timeout=1800)
    harness.wait_until(lambda: int(a.eval("GenServer.call(Process.get(:s1), :status).snapshot_index")) > K - 8192,
                       120, "the leader's snapshot")
    print(f"filled in {time.monotonic() - t0:.0f} s", flush=True)
    r = a.eval(
        f"s1 = Process.get(:s1); s2 = Process.get(:s2); me = self(); "
        f"spawn(fn -> t0 = System.monotonic_time(:millisecond); "
        f"r = GenServer.call(s1, {{:add_member, :\"{n2}\"}}, 600_000); "
        f"w = fn w -> if GenServer.call(s2, :status, 600_000).keys >= {K}, do: :ok, else: (Process.sleep(5); w.(w)) end; "
        f"w.(w); send(me, {{:done, r, System.monotonic_time(:millisecond) - t0}}) end); "
        f"{{ts, res}} = Stream.iterate(0, & &1 + 1) |> Enum.reduce_while({{[], nil}}, fn i, {{acc, _}} -> receive do "
        f"{{:done, r, ms}} -> {{:halt, {{acc, {{r, ms}}}}}} after 0 -> k = rem(:erlang.phash2({{{SEED}, :get, i}}), {K}) + 1; "
        f"{{t, _}} = :timer.tc(fn -> GenServer.call(s2, {{:get, k, :local}}, 600_000) end); {{:cont, {{[t | acc], nil}}}} end end); "
        f"{{add, ms}} = res; s = Enum.sort(ts); n = length(s); "
        f"pc = fn q -> Enum.at(s, min(n - 1, trunc(n * q))) end; "
        f"\"n=#{{n}} #{{pc.(0.5)}} #{{pc.(0.99)}} #{{pc.(0.999)}} "
        f"#{{Enum.max(ts)}} add=#{{inspect(add)}} install_ms=#{{ms}}\"", timeout=1800)
    print(f"{K} keys, seed {SEED}: local get on the installing follower p50 / p99 / p99.9 / max us:", r)
except BaseException:
    for p in (q for q in (p1, p2) if q):
        print(f"--- {p.name}:", "\n".join(p.output().splitlines()[-15:]))
    raise
finally:
    c.close()
