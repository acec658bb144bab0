"""Issue 7: a 1 000-name registration burst from both sides converges with every node agreeing on every name."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402


def test_burst_both_sides(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.elixir("a")
    a.eval(f"Process.put(:cn, :\"{cn.node}\")")
    assert a.eval("Node.connect(Process.get(:cn))") == "true"
    assert a.eval("t = Task.async(fn -> :global.sync() end); case Task.yield(t, 20_000) do {:ok, r} -> r; "
                  "nil -> :hang end", timeout=30) == ":ok"
    t0 = time.monotonic()
    # 500 from Elixir (concurrent registrations), 500 from cnode (erpc register_name of cnode probes).
    a.eval("me = self(); for i <- 1..500 do spawn(fn -> p = spawn(fn -> Process.sleep(:infinity) end); "
           ":yes = :global.register_name({:ex, i}, p); send(me, :done) end) end; "
           "for _ <- 1..500 do receive do :done -> :ok end end; :ok", timeout=120)
    a.eval("cn = Process.get(:cn); tasks = for i <- 1..500 do Task.async(fn -> "
           "p = :erpc.call(cn, :cnode, :spawn_probe, [self()]); "
           ":yes = :erpc.call(cn, :global, :register_name, [{:cn, i}, p], 60_000) end) end; "
           "Enum.each(tasks, &Task.await(&1, 120_000)); :ok", timeout=180)
    harness.wait_until(lambda: a.eval("cn = Process.get(:cn); ours = :global.registered_names() |> Enum.sort(); "
                                      "theirs = :erpc.call(cn, :global, :registered_names, []) |> Enum.sort(); "
                                      "length(ours) == 1000 and ours == theirs and Enum.all?(ours, fn n -> "
                                      ":global.whereis_name(n) == :erpc.call(cn, :global, :whereis_name, [n]) end)",
                                      timeout=60) == "true", 60, "every name agreed")
    print(f"burst of 1000 names converged in {time.monotonic() - t0:.1f}s", flush=True)


harness.main(globals())
