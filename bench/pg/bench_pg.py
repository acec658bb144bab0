"""pg benchmark: sync of a large cnode scope to a newly connected Elixir node, and the time for a join on cnode to
show in pg on every Elixir node (loopback). Needs bench_pg and cnode built:
    CNODE_BIN_DIR=build/bin python3 bench/pg/bench_pg.py [GROUPS PER_GROUP PROCS]
"""
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "..", "integration", "lib")]
import harness  # noqa: E402


def main():
    groups, per, procs = (int(x) for x in (sys.argv[1:4] if len(sys.argv) >= 4 else (10_000, 10, 10_000)))
    c = harness.Cluster()
    try:
        c.epmd()
        name = f"bench@{harness.HOST}"
        b = c.start([harness.bin_path("bench_pg"), name, c.cookie, str(c.epmd_port)], name="bench_pg")
        b.wait_for_line("ready " + name, timeout=20)
        a = c.elixir("a")
        a.eval("{:ok, _} = :pg.start(:pg); :ok")
        assert a.eval(f"Node.connect(:\"{name}\")") == "true"
        fill_us = int(a.eval(f":erpc.call(:\"{name}\", :pg_bench, :fill, [{groups}, {per}, {procs}], 600_000)"))
        members = groups * per
        print(f"filled cnode: {groups} groups, {members} memberships of {procs} processes in {fill_us / 1e3:.0f} ms")
        # a's scope may still be working through the 10k join messages: wait for it
        harness.wait_until(lambda: int(a.eval("Enum.sum(for g <- :pg.which_groups(), do: length(:pg.get_members(g)))",
                                              timeout=120)) == members, 120, "a to see every join")
        print(f"  a (connected during the fill) sees all {members} memberships")

        # sync to a newly connected node: from Node.connect (and from its nodeup) until the whole scope is there
        for run in range(3):
            n = c.elixir(f"new{run}")
            n.eval("{:ok, _} = :pg.start(:pg); :net_kernel.monitor_nodes(true); :ok")
            out = n.eval(
                f"t0 = System.monotonic_time(:microsecond); true = Node.connect(:\"{name}\"); "
                "tu = receive do {:nodeup, _} -> System.monotonic_time(:microsecond) end; "
                f"w = fn w -> if :ets.info(:pg, :size) >= {groups}, do: System.monotonic_time(:microsecond), "
                "else: (Process.sleep(1); w.(w)) end; t1 = w.(w); "
                "m = Enum.sum(for g <- :pg.which_groups(), do: length(:pg.get_members(g))); "
                "{t1 - t0, t1 - tu, m}", timeout=120)
            total, from_up, m = (int(x) for x in re.findall(r"-?\d+", out))
            print(f"sync run {run}: {m} memberships in {groups} groups on a new node {total / 1e3:.1f} ms after "
                  f"Node.connect ({from_up / 1e3:.1f} ms after its nodeup)")
            assert m == members, out

        # join latency: a probe on cnode joins a fresh group; every Elixir node stamps the pg:monitor_scope event
        watchers = [a] + [c.elixir(f"w{i}") for i in range(2)]
        for w in watchers[1:]:
            w.eval("{:ok, _} = :pg.start(:pg); :ok")
            assert w.eval(f"Node.connect(:\"{name}\")") == "true"
            assert w.eval("Node.connect(:a@" + harness.HOST + ")") == "true"
        for w in watchers:
            harness.wait_until(lambda: int(w.eval("length(:pg.which_groups())")) >= groups, 60, "the sync")
            w.eval("me = self(); w = spawn(fn -> {ref, _} = :pg.monitor_scope(:pg); send(me, :ready); "
                   "l = fn l, acc -> receive do {^ref, :join, {:lat, i}, _} -> "
                   "l.(l, [{i, System.os_time(:microsecond)} | acc]); {^ref, _, _, _} -> l.(l, acc); "
                   "{:report, to} -> send(to, {:report, acc}) end end; l.(l, []) end); "
                   "receive do :ready -> :ok end; Process.put(:w, w); :ok")
        rounds = 200
        sent = a.eval(f"p = :erpc.call(:\"{name}\", :cnode, :spawn_probe, [self()]); "
                      f"for i <- 1..{rounds} do t = System.os_time(:microsecond); "
                      ":ok = GenServer.call(p, {:pg_join, :pg, {:lat, i}}); Process.sleep(2); {i, t} end")
        t0 = {int(i): int(t) for i, t in re.findall(r"\{(\d+), (\d+)\}", sent)}
        worst = {}
        for w in watchers:
            rep = w.eval("send(Process.get(:w), {:report, self()}); receive do {:report, r} -> r after 5000 -> "
                         ":timeout end")
            got = {int(i): int(t) for i, t in re.findall(r"\{(\d+), (\d+)\}", rep)}
            assert len(got) == rounds, (w.node, len(got))
            for i, t in got.items():
                worst[i] = max(worst.get(i, 0), t - t0[i])
        lat = sorted(worst.values())
        print(f"join on cnode -> visible in pg on all {len(watchers)} Elixir nodes ({rounds} joins, from the "
              f"GenServer.call on a, cnode holding {members} memberships): median {statistics.median(lat) / 1e3:.2f} "
              f"ms, p99 {lat[int(len(lat) * 0.99) - 1] / 1e3:.2f} ms, max {lat[-1] / 1e3:.2f} ms")
    finally:
        c.close()


if __name__ == "__main__":
    main()
