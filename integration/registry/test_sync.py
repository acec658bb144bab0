"""Issue 7, first milestone: with cnode connected (visible or hidden), :global.sync() returns :ok on every Elixir
node, and cnode becomes a known global node of each of them."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402


def sync_all(nodes, timeout=20):
    # :global.sync() in a task so a hang shows as :hang instead of blocking the agent.
    for n in nodes:
        r = n.eval("t = Task.async(fn -> :global.sync() end); "
                   f"case Task.yield(t, {timeout * 1000}) do {{:ok, r}} -> r; nil -> Task.shutdown(t); :hang end",
                   timeout=timeout + 10)
        assert r == ":ok", (n.node, r)


def test_sync_with_visible_cnode(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.elixir("a")
    b = c.elixir("b")
    assert a.eval(f"Node.connect(:\"{cn.node}\")") == "true"
    assert b.eval(f"Node.connect(:\"{cn.node}\")") == "true"
    harness.wait_until(lambda: b.eval("length(Node.list())") == "2", 20, "b to see a and cnode")
    sync_all([a, b])
    # cnode is in global's known set on both (global:get_known/0 is a call on the local server).
    for n in (a, b):
        harness.wait_until(lambda: cn.node in n.eval(":gen_server.call(:global_name_server, :get_known) |> inspect()"),
                           20, f"{n.node} to know cnode")
    # a third Elixir node joins later: everybody still syncs.
    d = c.elixir("d")
    assert d.eval("Node.connect(:a@localhost)") == "true"
    harness.wait_until(lambda: d.eval("length(Node.list())") == "3", 20, "d to reach everybody")
    sync_all([a, b, d])


def test_global_sync_on_cnode(c):
    """global:sync/0,1 called on cnode: :ok, and only once the nodes are in sync with it (each is in cnode's
    get_synced by then). A node that is not connected counts as done, as on the BEAM."""
    c.epmd()
    cn = start_cnode(c)
    a = c.elixir("a")
    a.eval(f"Process.put(:cn, :\"{cn.node}\")")
    synced = "fn -> :gen_server.call({:global_name_server, Process.get(:cn)}, :get_synced) end"
    for name in ("b", "d"):
        n = c.elixir(name)
        # the connect and the sync in one expression, so the sync starts while global's handshake is under way
        r = a.eval(f":pong = :rpc.call(:\"{n.node}\", :net_adm, :ping, [Process.get(:cn)]); "
                   ":erpc.call(Process.get(:cn), :global, :sync, [], 30_000)", timeout=40)
        assert r == ":ok", r
        assert a.eval(f":\"{n.node}\" in ({synced}).()") == "true"
    assert a.eval("Node.connect(Process.get(:cn))") == "true"
    assert a.eval(":erpc.call(Process.get(:cn), :global, :sync, [[node()]], 30_000)", timeout=40) == ":ok"
    assert a.eval(f"node() in ({synced}).()") == "true"
    assert a.eval(":erpc.call(Process.get(:cn), :global, :sync, [[:nobody@localhost]], 10_000)",
                  timeout=20) == ":ok"
    # a node that is up but not connected: sync connects to it first (monitor_node does on the BEAM) and waits
    # for global's handshake with it
    e = c.elixir("e")
    assert a.eval(f":erpc.call(Process.get(:cn), :global, :sync, [[:\"{e.node}\"]], 30_000)", timeout=40) == ":ok"
    assert a.eval(f":\"{e.node}\" in ({synced}).()") == "true"


def test_sync_with_hidden_cnode(c):
    c.epmd()
    cn = start_cnode(c, hidden=True)
    a = c.elixir("a")
    b = c.elixir("b")
    assert a.eval(f"Node.connect(:\"{cn.node}\")") == "true"
    assert b.eval("Node.connect(:a@localhost)") == "true"
    sync_all([a, b])
    assert cn.node not in a.eval(":gen_server.call(:global_name_server, :get_known) |> inspect()")
    # on the hidden cnode itself, as on a hidden BEAM node: nodes() is [] and global:sync() returns at once
    assert a.eval(f":erpc.call(:\"{cn.node}\", :global, :sync, [], 5000)", timeout=15) == ":ok"


harness.main(globals())
