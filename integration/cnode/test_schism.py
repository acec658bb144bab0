"""Issue 12: partitions the way Elixir teams make them (the schism library's cookies and disconnects over erpc),
with cnode taking part as a BEAM node does. Every scenario runs twice: with cnode as `cn`, and with an Elixir node
in its place (the reference: what must hold is what holds on the BEAM).

a and b are Elixir nodes, cn is cnode (or Elixir), drv a hidden Elixir node that makes the calls. All run pg's
default scope and global; a process on a and one on cn join pg group :g and register a global name each."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
import schism  # noqa: E402
from cnode_node import start_cnode  # noqa: E402


def q(node):
    return f':"{node}"'


def setup(c, kind):
    c.epmd()
    if kind == "cnode":
        cn = start_cnode(c, sname="cn")
    else:
        cn = c.elixir("cn")
        cn.eval("{:ok, _} = :pg.start(:pg); :ok")
    a, b = c.elixir("a"), c.elixir("b")
    for n in (a, b):
        n.eval("{:ok, _} = :pg.start(:pg); :ok")
    drv = c.elixir("drv", hidden=True)
    everyone = [a.node, b.node, cn.node]
    assert drv.eval(f"Enum.all?([{', '.join(q(n) for n in everyone)}], &Node.connect/1)") == "true"
    for n in (a, b):
        assert n.eval(f"Enum.all?([{', '.join(q(x) for x in everyone if x != n.node)}], &Node.connect/1)") == "true"
    harness.wait_until(lambda: all(len(schism.nodes(drv, n)) == 2 for n in everyone), 30, "the full mesh")
    # A member on a and on cn: in pg group :g and under a global name each.
    a.eval("p = spawn(fn -> receive do :stop -> :ok end end); Process.put(:m, p); :ok = :pg.join(:g, p); "
           ":yes = :global.register_name(:left, p); :ok")
    if kind == "cnode":
        drv.eval(f"p = :erpc.call({q(cn.node)}, :cnode, :spawn_probe, [self()]); Process.put(:m, p); "
                 ":ok = GenServer.call(p, {:pg_join, :pg, :g}); "
                 ":yes = GenServer.call(p, {:global_register, :right}, 30_000); :ok")
    else:
        drv.eval(f"p = Node.spawn({q(cn.node)}, fn -> receive do :stop -> :ok end end); Process.put(:m, p); "
                 f":ok = :erpc.call({q(cn.node)}, :pg, :join, [:g, p]); "
                 f":yes = :erpc.call({q(cn.node)}, :global, :register_name, [:right, p]); :ok")
    return a, b, cn, drv


def g_nodes(drv, node):
    """The nodes of pg group :g's members as node sees them."""
    return drv.eval(f":erpc.call({q(node)}, :pg, :get_members, [:g]) |> Enum.map(&node/1) |> Enum.sort()")


def global_at(drv, node, name):
    """The node of the process registered as name, as node sees it (:undefined if none)."""
    return drv.eval(f"case :erpc.call({q(node)}, :global, :whereis_name, [:{name}]) do "
                    ":undefined -> :undefined; p -> node(p) end")


def sorted_list(*nodes):
    return "[" + ", ".join(f":{n}" for n in sorted(nodes)) + "]"


def sync_ok(drv, n, timeout=30):
    """:global.sync() returns :ok on n within the timeout (on cnode through erpc, which runs no Erlang funs)."""
    if getattr(n, "elixir", False):
        return n.eval(f"t = Task.async(fn -> :global.sync() end); case Task.yield(t, {timeout * 1000}) do "
                      "{:ok, r} -> r; nil -> Task.shutdown(t); :hang end", timeout=timeout + 10) == ":ok"
    return drv.eval(f":erpc.call({q(n.node)}, :global, :sync, [], {timeout * 1000})", timeout=timeout + 10) == ":ok"


def converged(drv, a, b, cn):
    """pg and global agree everywhere: both members in :g on a and cn, both names on every node."""
    both = sorted_list(a.node, cn.node)
    harness.wait_until(lambda: g_nodes(drv, a.node) == both and g_nodes(drv, cn.node) == both, 30,
                       "pg's :g to hold both members on a and on cn")
    for n in (a, b, cn):
        assert sync_ok(drv, n), n.node
        harness.wait_until(lambda: global_at(drv, n.node, "left") == f":{a.node}" and
                           global_at(drv, n.node, "right") == f":{cn.node}", 30, f"both global names on {n.node}")


def partition_and_heal(c, kind):
    a, b, cn, drv = setup(c, kind)
    converged(drv, a, b, cn)

    split = schism.partition(drv, [a.node], [cn.node])
    # The cut holds both ways: each side's handshake fails on the cookie (a dials with its cookie for cn, cn checks
    # with its own for a, and the other way round).
    assert schism.ping(drv, a.node, cn.node) == "pang"
    assert schism.ping(drv, cn.node, a.node) == "pang"
    assert cn.node not in schism.nodes(drv, a.node) and a.node not in schism.nodes(drv, cn.node)
    # cn still talks to the third node, both ways (global's prevent_overlapping_partitions may have made b drop a
    # side meanwhile; a ping connects again, the cookies between b and either side are untouched).
    harness.wait_until(lambda: schism.ping(drv, b.node, cn.node) == "pong" and
                       schism.ping(drv, cn.node, b.node) == "pong", 30, "b and cn to reach each other")
    assert schism.ping(drv, b.node, a.node) == "pong"
    # pg on each side of the cut has lost the other side's member.
    harness.wait_until(lambda: g_nodes(drv, a.node) == sorted_list(a.node), 30, "a's :g without cn's member")
    harness.wait_until(lambda: g_nodes(drv, cn.node) == sorted_list(cn.node), 30, "cn's :g without a's member")
    # Still cut after all that traffic (b connected to both sides, global's and pg's own attempts).
    assert schism.ping(drv, a.node, cn.node) == "pang"
    assert schism.ping(drv, cn.node, a.node) == "pang"

    split.heal()
    assert schism.ping(drv, a.node, cn.node) == "pong"
    assert schism.ping(drv, cn.node, a.node) == "pong"
    assert b.eval(f"Enum.all?([{q(a.node)}, {q(cn.node)}], &Node.connect/1)") == "true"
    converged(drv, a, b, cn)
    if kind == "cnode":  # neither the cookie nor the partition's cookies reach the log (docs/hardening.md)
        assert c.cookie not in cn.output() and "schism_" not in cn.output(), cn.output()


def test_partition_and_heal_cnode(c):
    partition_and_heal(c, "cnode")


def test_partition_and_heal_beam(c):
    partition_and_heal(c, "beam")


def schism_library_steps(c, kind):
    """Schism.partition([cn]) and Schism.heal([cn]) as the library does them: cn takes a new cookie of its own
    (set_cookie(node(), id)) and disconnects from every node but the manager (drv)."""
    a, b, cn, drv = setup(c, kind)
    own = schism.call(drv, cn.node, "erlang", "get_cookie", [])
    assert schism.call(drv, cn.node, "erlang", "set_cookie", [q(cn.node), ":schism_id"]) == "true"
    assert schism.call(drv, cn.node, "erlang", "get_cookie", []) == ":schism_id"
    for n in schism.nodes(drv, cn.node) - {drv.node}:
        schism.call(drv, cn.node, "erlang", "disconnect_node", [q(n)])
    assert schism.ping(drv, drv.node, cn.node) == "pong"  # the manager's connection stays
    harness.wait_until(lambda: not ({a.node, b.node} & schism.nodes(drv, cn.node)), 30, "cn cut off")
    for n in (a.node, b.node):
        assert schism.ping(drv, n, cn.node) == "pang"
        assert schism.ping(drv, cn.node, n) == "pang"
    # Schism.heal([cn]): the cookie back, then connect.
    assert schism.call(drv, cn.node, "erlang", "set_cookie", [q(cn.node), own]) == "true"
    assert schism.ping(drv, drv.node, cn.node) == "pong"
    for n in (a.node, b.node):
        assert schism.call(drv, cn.node, "net_kernel", "connect_node", [q(n)]) == "true"
    converged(drv, a, b, cn)
    if kind == "cnode":
        assert c.cookie not in cn.output() and "schism_id" not in cn.output(), cn.output()


def test_schism_library_steps_cnode(c):
    schism_library_steps(c, "cnode")


def test_schism_library_steps_beam(c):
    schism_library_steps(c, "beam")


harness.main(globals())
