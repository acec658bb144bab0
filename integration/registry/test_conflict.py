"""Issue 7: a name registered on both sides of a netsplit is resolved when it heals as an all-BEAM cluster resolves
it: random_exit_name keeps the pid on the lower-sorted node and kills the other."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402
import split  # noqa: E402

SYNC = ("t = Task.async(fn -> :global.sync() end); case Task.yield(t, 20_000) do {:ok, r} -> r; nil -> :hang end")


def split_and_register(c, sname):
    c.epmd()
    cn = start_cnode(c, sname=sname)
    a = c.elixir("a")
    drv = c.elixir("drv", hidden=True)  # drives cnode's probe without taking part in global
    for n in (a, drv):
        n.eval(f"Process.put(:cn, :\"{cn.node}\")")
        assert n.eval("Node.connect(Process.get(:cn))") == "true"
    assert a.eval(SYNC, timeout=30) == ":ok"
    split.cut_off(a, drv)
    drv.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:probe, p); :ok")
    assert drv.eval("GenServer.call(Process.get(:probe), {:global_register, :dup}, 30_000)") == ":yes"
    a.eval("p = spawn(fn -> receive do :stop -> :ok end end); Process.put(:ex_p, p); :ok")
    assert a.eval(":global.register_name(:dup, Process.get(:ex_p))") == ":yes"
    assert a.eval("Node.connect(Process.get(:cn))") == "true"
    assert a.eval(SYNC, timeout=30) == ":ok"
    return cn, a, drv


def test_conflict_beam_node_lower(c):
    # a@localhost < cnode@localhost: the Elixir pid survives, the C++ one is killed.
    cn, a, drv = split_and_register(c, "cnode")
    harness.wait_until(lambda: a.eval(":global.whereis_name(:dup) == Process.get(:ex_p)") == "true", 15, "a's pid kept")
    harness.wait_until(lambda: a.eval(":erpc.call(Process.get(:cn), :global, :whereis_name, [:dup]) == "
                                      "Process.get(:ex_p)") == "true", 15, "cnode agrees")
    harness.wait_until(lambda: drv.eval(":erpc.call(Process.get(:cn), :erlang, :is_process_alive, "
                                        "[Process.get(:probe)])") == "false", 15, "the C++ pid killed")
    assert a.eval("Process.alive?(Process.get(:ex_p))") == "true"


def test_conflict_cnode_lower(c):
    # 0cn@localhost < a@localhost: the C++ pid survives (cnode resolves: it is the smaller node).
    cn, a, drv = split_and_register(c, "0cn")
    harness.wait_until(lambda: a.eval("Process.alive?(Process.get(:ex_p))") == "false", 15, "a's pid killed")
    probe = drv.eval(":erlang.pid_to_list(Process.get(:probe))")
    harness.wait_until(lambda: a.eval(":global.whereis_name(:dup) |> node()") == f":\"{cn.node}\"", 15,
                       "cnode's pid registered on a")
    assert drv.eval(":erpc.call(Process.get(:cn), :global, :whereis_name, [:dup]) == Process.get(:probe)") == "true"
    assert probe


harness.main(globals())
