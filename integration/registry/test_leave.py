"""A cnode that stops cleanly must leave the rest of the mesh as it was. An Elixir node a and two visible cnodes p and
c in a full mesh (global's new_nodes connects p and c); c stops (SIGTERM). On the BEAM, global stops before
net_kernel closes the connections, so a node that shuts down reports no lost connections. A cnode that did
(global's prevent_overlapping_partitions: "c lost p", sent to a while a still saw c) would make a disconnect p, and
a global name a registered meanwhile could be missing on p: the ExUnit probe test's {:global, name} call saw that.
Repeated, since it depends on the order in which c's connections close."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

ROUNDS = 6


def sync_ok(n, timeout=20):
    return n.eval("t = Task.async(fn -> :global.sync() end); "
                  f"case Task.yield(t, {timeout * 1000}) do {{:ok, r}} -> r; nil -> Task.shutdown(t); :hang end",
                  timeout=timeout + 10) == ":ok"


def test_stopping_cnode_leaves_others_connected(c):
    c.epmd()
    p = start_cnode(c, sname="p")
    a = c.elixir("a")
    assert a.eval(f"Node.connect(:\"{p.node}\")") == "true"
    assert sync_ok(a)
    # The monitor stays on for the whole test: any nodedown of p, however short, is a failure.
    assert a.eval(f"Process.put(:p, :\"{p.node}\"); Node.monitor(Process.get(:p), true)") == "true"
    for i in range(ROUNDS):
        cn = start_cnode(c, sname=f"c{i}")
        assert a.eval(f"Node.connect(:\"{cn.node}\")") == "true"
        # p meets c through global (new_nodes), as the cnodes of different test modules do in an ExUnit run.
        harness.wait_until(lambda: cn.node in a.eval(":erpc.call(Process.get(:p), :erlang, :nodes, []) |> inspect()"),
                           20, f"p to connect to {cn.node}")
        assert sync_ok(a)
        name = f"{{:leave_test, {i}}}"
        assert a.eval(f"pid = spawn(fn -> receive do _ -> :ok end end); :global.register_name({name}, pid)") == ":yes"
        cn.stop()
        harness.wait_until(lambda: cn.node not in a.eval("Node.list() |> inspect()"), 20, f"a to see {cn.node} go")
        harness.wait_until(lambda: cn.node not in a.eval(":erpc.call(Process.get(:p), :erlang, :nodes, []) |> "
                                                         "inspect()"), 20, f"p to see {cn.node} go")
        assert sync_ok(a)
        downs = a.eval("receive do {:nodedown, n} -> n after 0 -> :none end")
        assert downs == ":none", f"round {i}: a lost p when {cn.node} stopped"
        assert a.eval("Process.get(:p) in Node.list()") == "true"
        # p has the name a registered while c was still up (the registration reached p directly).
        assert a.eval(f":erpc.call(Process.get(:p), :global, :whereis_name, [{name}]) == "
                      f":global.whereis_name({name})") == "true"


if __name__ == "__main__":
    harness.main(globals())
