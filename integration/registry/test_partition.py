"""Issue 7: an overlapping partition. Three Elixir nodes (a, b, d) and two cnodes (cn1, cn2) in a full mesh; node a
drops its connection to cn1 (:erlang.disconnect_node) while b and d keep theirs. global's
prevent_overlapping_partitions (default true in OTP 25) then disconnects nodes until no overlap is left. The same
steps run with a BEAM node in cn1's place (own cluster, same node names). Both runs must end without overlapping
partitions, of an end state an all-BEAM cluster reaches (see acceptable/1: the BEAM's own end state varies from run
to run), and :global.sync() must return :ok on every Elixir node within a deadline."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

ELIXIR = ["a", "b", "d"]
CNODES = ["cn1", "cn2"]
ALL = sorted(f"{n}@{harness.HOST}" for n in ELIXIR + CNODES)


def sync_ok(n, timeout=20):
    return n.eval("t = Task.async(fn -> :global.sync() end); "
                  f"case Task.yield(t, {timeout * 1000}) do {{:ok, r}} -> r; nil -> Task.shutdown(t); :hang end",
                  timeout=timeout + 10) == ":ok"


def shape(drv):
    """Every node's visible connections, asked through the hidden driver (it takes part in nothing)."""
    return drv.eval("Enum.map(Process.get(:all), fn n -> {n, Enum.sort(:erpc.call(n, :erlang, :nodes, []))} end)")


def partition(c, cn1_kind):
    c.epmd()
    for n in CNODES:
        if n == "cn1" and cn1_kind == "beam":
            c.elixir(n)
        else:
            start_cnode(c, sname=n)
    ex = {n: c.elixir(n) for n in ELIXIR}
    drv = c.elixir("drv", hidden=True)
    drv.eval("Process.put(:all, [" + ", ".join(f":\"{n}\"" for n in ALL) + "]); :ok")
    assert drv.eval("Enum.all?(Process.get(:all), &Node.connect/1)") == "true"
    others = "[" + ", ".join(f":\"{x}\"" for x in ALL) + "] -- [node()]"

    def meshed():
        # Every Elixir node (re)connects to every other node and the cnodes meet through global's new_nodes. A
        # connection that blips while the mesh forms (two nodes connecting to each other at once) makes global
        # disconnect nodes to prevent overlapping partitions, so the connects are repeated until the mesh stands.
        # It stands when it is whole before and after a round of :global.sync() (global has settled on it).
        def full():
            return drv.eval(f"Enum.all?(Process.get(:all), fn n -> "
                            f"length(:erpc.call(n, :erlang, :nodes, [])) == {len(ALL) - 1} end)") == "true"
        if full() and all(sync_ok(n) for n in ex.values()) and full():
            return True
        for n in ex.values():
            n.eval(f"Enum.each({others}, &Node.connect/1)")
        return False

    harness.wait_until(meshed, 90, "the full mesh", interval=0.5)
    # The cut: a drops cn1, b and d still see it.
    assert ex["a"].eval(f":erlang.disconnect_node(:\"cn1@{harness.HOST}\")") == "true"
    # global settles: sync returns :ok on every Elixir node within the deadline.
    for n in ex.values():
        assert sync_ok(n, timeout=30), n.node
    return drv, list(ex.values())


# The connection graph as a list of components, or :overlap while some node sees two nodes that do not see each
# other (or a connection is seen from one end only): with prevent_overlapping_partitions that state must not last.
COMPONENTS = ("m = Map.new(Process.get(:all), fn n -> {n, MapSet.new([n | :erpc.call(n, :erlang, :nodes, [])])} end); "
              "if Enum.all?(m, fn {_, s} -> Enum.all?(s, fn x -> m[x] == s end) end), "
              "do: m |> Map.values() |> Enum.uniq() |> Enum.map(&Enum.sort(MapSet.to_list(&1))) |> Enum.sort(), "
              "else: :overlap")


def settled_components(drv, ex):
    """Waits until no partitions overlap, syncs every Elixir node again, and returns the components once they are
    non-overlapping again (a reconnect started by that sync may pass through an overlap)."""
    def components():
        r = drv.eval(COMPONENTS)
        return r if r != ":overlap" else None

    try:
        harness.wait_until(components, 30, "no overlapping partitions")
        for n in ex:
            assert sync_ok(n), n.node
        return harness.wait_until(components, 30, "no overlapping partitions after another sync")
    except AssertionError as e:
        raise AssertionError(f"{e}; connections: {shape(drv)}") from None


def acceptable(components):
    """What an all-BEAM cluster may end in after the cut: non-overlapping components (given) in which a and cn1 are
    apart, or the full mesh again. OTP 25.2.3 was seen to end in {a} {cn1} {b cn2 d}, {a b cn2 d} {cn1},
    {a} {b cn1 cn2 d} and the full mesh, depending on which node's global acted first and on whether a later
    message to a known node reconnected it (global's new_nodes then closes the mesh), so the exact components are
    not compared between the runs: the kind of end state is. The check is deliberately that kind (any clean split
    keeping a and cn1 apart), which also admits splits not yet seen from an all-BEAM run, e.g. {a b cn2} {cn1 d}."""
    groups = [g.split(", ") for g in components.strip("[]").split("], [")]
    if len(groups) == 1:
        return len(groups[0]) == len(ALL)
    a, cn1 = f":a@{harness.HOST}", f":cn1@{harness.HOST}"
    return not any(a in g and cn1 in g for g in groups)


def test_overlapping_partition_like_beam(c):
    ref = harness.Cluster()  # the reference: a BEAM node as cn1, its own epmd, the same node names
    try:
        beam = settled_components(*partition(ref, "beam"))
    finally:
        ref.close()
    drv, ex = partition(c, "cnode")
    cn = settled_components(drv, ex)
    print("components: BEAM", beam, "cnode", cn, flush=True)
    assert acceptable(beam), ("BEAM reference", beam)
    assert acceptable(cn), ("cnode", cn)


harness.main(globals())
