""":global benchmark: cnode against a BEAM node in the same place, in the same run, on loopback. Each side is a
two-node cluster (Elixir node a and the target t, which is cnode or an Elixir node) with its own EPMD:

  register on t   N sequential :erpc.call(t, :global, :register_name, [name, pid]) from a, pids on t: t's
                  registrar takes global's lock on both nodes and registers everywhere
  register on a   N sequential :global.register_name(name, pid) on a, pids on a: t answers the lock and register
                  calls of a's registrar
  join            a new Elixir node connects to t, which holds the 2N names: time until its :global.sync() returns
                  and every name is seen there (global's exchange from t)

Prints each figure for both targets and the ratio cnode / BEAM (time; below 1 means cnode is faster).
    CNODE_BIN_DIR=build/bin python3 bench/registry/bench_registry.py [N]
Needs the cnode executable built (scripts/bench builds it).
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "..", "integration", "lib"), os.path.join(HERE, "..", "..", "integration",
                                                                                   "cnode")]
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

SYNC = "t = Task.async(fn -> :global.sync() end); case Task.yield(t, 120_000) do {:ok, r} -> r; nil -> :hang end"


def run(kind, n):
    c = harness.Cluster()
    try:
        c.epmd()
        t = start_cnode(c, sname="t").node if kind == "cnode" else c.elixir("t").node
        a = c.elixir("a")
        a.eval(f"Process.put(:t, :\"{t}\"); :ok")
        assert a.eval("Node.connect(Process.get(:t))") == "true"
        assert a.eval(SYNC, timeout=130) == ":ok"
        # n processes on t that live until the end
        if kind == "cnode":
            a.eval(f"ps = for _ <- 1..{n} do :erpc.call(Process.get(:t), :cnode, :spawn_probe, [self()]) end; "
                   "Process.put(:pids, ps); :ok", timeout=120)
        else:
            a.eval(f"ps = for _ <- 1..{n} do Node.spawn(Process.get(:t), fn -> receive do :stop -> :ok end end) end; "
                   "Process.put(:pids, ps); :ok", timeout=120)
        out = {}
        us = int(a.eval("t0 = System.monotonic_time(:microsecond); "
                        "Process.get(:pids) |> Enum.with_index() |> Enum.each(fn {p, i} -> "
                        ":yes = :erpc.call(Process.get(:t), :global, :register_name, [{:on_t, i}, p]) end); "
                        "System.monotonic_time(:microsecond) - t0", timeout=600))
        assert a.eval(f"Enum.count(:global.registered_names(), &match?({{:on_t, _}}, &1))") == str(n)
        out["register on t"] = us
        a.eval(f"ps = for _ <- 1..{n} do spawn(fn -> receive do :stop -> :ok end end) end; Process.put(:mine, ps); :ok")
        us = int(a.eval("t0 = System.monotonic_time(:microsecond); "
                        "Process.get(:mine) |> Enum.with_index() |> Enum.each(fn {p, i} -> "
                        ":yes = :global.register_name({:on_a, i}, p) end); "
                        "System.monotonic_time(:microsecond) - t0", timeout=600))
        out["register on a"] = us
        harness.wait_until(lambda: a.eval(":erpc.call(Process.get(:t), :global, :registered_names, []) |> length()")
                           == str(2 * n), 60, "t to hold every name")
        j = c.elixir("j")
        r = j.eval(f"t0 = System.monotonic_time(:microsecond); true = Node.connect(:\"{t}\"); "
                   f"{SYNC}; w = fn w -> if length(:global.registered_names()) >= {2 * n}, "
                   "do: System.monotonic_time(:microsecond), else: (Process.sleep(1); w.(w)) end; w.(w) - t0",
                   timeout=200)
        out["join"] = int(re.findall(r"-?\d+", r)[-1])
        return out
    finally:
        c.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    beam = run("beam", n)
    cn = run("cnode", n)
    print(f":global, {n} names per direction (times in ms; ratio = cnode / BEAM)")
    for k in beam:
        extra = ""
        if k.startswith("register"):
            extra = f"   ({n / (cn[k] / 1e6):.0f} vs {n / (beam[k] / 1e6):.0f} registrations/s)"
        print(f"  {k:<14} cnode {cn[k] / 1e3:8.1f}   BEAM {beam[k] / 1e3:8.1f}   ratio {cn[k] / beam[k]:5.2f}{extra}")


if __name__ == "__main__":
    main()
