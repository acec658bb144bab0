"""Connection setup started by the node under test: `:erpc.call(t, :net_adm, :ping, [b])` right after
`:erlang.disconnect_node(b)` on t, N times, with t a cnode and then a BEAM node in its place (both hidden, driven by
the same Elixir node a; b is an Elixir node). Prints p50 and mean in microseconds and the ratios cnode / BEAM.
It measures the whole connect path: EPMD lookup, handshake, and how soon the waiting caller hears the outcome
(before 2026-12 cnode polled the attempt's state every 5 ms).
Usage: CNODE_BIN_DIR=build/bin python3 bench/connect/bench_connect.py [N=200]"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "integration", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "integration", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402


def run(kind, n):
    c = harness.Cluster()
    try:
        c.epmd()
        t = start_cnode(c, sname="t", hidden=True) if kind == "cnode" else c.elixir("t", hidden=True)
        a = c.elixir("a", hidden=True)
        b = c.elixir("b", hidden=True)
        a.eval(f"Process.put(:t, :\"{t.node}\"); true = Node.connect(Process.get(:t))")
        r = a.eval(
            f"t = Process.get(:t); b = :\"{b.node}\"; :pong = :erpc.call(t, :net_adm, :ping, [b]); "
            f"ts = for _ <- 1..{n} do "
            "true = :erpc.call(t, :erlang, :disconnect_node, [b]); "
            "Stream.repeatedly(fn -> not Enum.member?(:erpc.call(t, :erlang, :nodes, [:connected]), b) end) "
            "|> Enum.find(& &1); "
            "{us, :pong} = :timer.tc(fn -> :erpc.call(t, :net_adm, :ping, [b]) end); us end; "
            "s = Enum.sort(ts); \"#{Enum.at(s, div(length(s), 2))} #{Enum.sum(s) / length(s)}\"",
            timeout=600)
        p50, mean = r.strip('"').split()
        return float(p50), float(mean)
    finally:
        c.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    beam = run("beam", n)
    cn = run("cnode", n)
    print(f"connect (ping after disconnect, {n} times), microseconds:")
    print("| | BEAM | cnode | ratio |")
    print("| --- | --- | --- | --- |")
    for i, label in enumerate(("p50", "mean")):
        print(f"| {label} | {beam[i]:,.0f} | {cn[i]:,.0f} | {cn[i] / beam[i]:.2f} |")
    print("ratio = cnode / BEAM (below 1: cnode connects sooner)")


if __name__ == "__main__":
    main()
