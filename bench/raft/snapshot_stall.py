"""Diagnostic (no peer to compare with): how long a Raft group process's snapshot holds its other requests. One
in-memory member of group kv, filled with KEYS keys ({:value, i, <<0::800>>}), then 20 000 puts from one caller
(a snapshot every 4 096 entries, the default) while another caller loops `{:get, k, :local}`: the gets' latency
p50 / p99 / p99.9 / max in microseconds, and the snapshot index reached.
Usage: CNODE_BIN_DIR=build/bin python3 bench/raft/snapshot_stall.py [KEYS=100000]"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "integration", "cnode"))
sys.path.insert(0, os.path.join(here, "..", "..", "integration", "lib"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402
K = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
c = harness.Cluster()
try:
    c.epmd()
    node = f"kv1@{harness.HOST}"
    cn = start_cnode(c, sname="kv1", extra=["--raft-group", f"kv={node}", "--raft-election-ms", "300"])
    a = c.elixir("a", hidden=True)
    a.eval(f"Process.put(:s, {{:kv, :\"{node}\"}}); true = Node.connect(:\"{node}\")")
    harness.wait_until(lambda: a.eval("GenServer.call(Process.get(:s), :status).role") == ":leader", 15, "leader")
    a.eval(f"s = Process.get(:s); 1..{K} |> Task.async_stream(fn i -> :ok = GenServer.call(s, {{:put, i, {{:value, i, <<0::800>>}}}}) end, max_concurrency: 64) |> Stream.run()", timeout=600)
    r = a.eval("s = Process.get(:s); me = self(); spawn(fn -> for i <- 1..20000, do: GenServer.call(s, {:put, {:w, i}, i}); send(me, :done) end); "
               "ts = Stream.iterate(0, & &1 + 1) |> Enum.reduce_while([], fn i, acc -> receive do :done -> {:halt, acc} after 0 -> {t, _} = :timer.tc(fn -> GenServer.call(s, {:get, rem(i, 1000) + 1, :local}) end); {:cont, [t | acc]} end end); "
               "st = GenServer.call(s, :status); s2 = Enum.sort(ts); n = length(s2); \"n=#{n} #{Enum.at(s2, div(n, 2))} #{Enum.at(s2, n - div(n, 100))} #{Enum.at(s2, n - div(n, 1000))} #{Enum.max(ts)} snap=#{st.snapshot_index}\"", timeout=600)
    print(f"{K} keys: local get p50 / p99 / p99.9 / max us:", r)
finally:
    c.close()
