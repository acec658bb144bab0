"""Issue 7: the notifying resolvers live. A name registered on both sides of a netsplit with
global:notify_all_name/3 or global:random_notify_name/3 is resolved when the split heals exactly as in an all-BEAM
cluster: the same survivor, the same {global_name_conflict, ...} messages to the same pids. Each scenario runs once
with a BEAM node in cnode's place (same node name, own cluster) and once with cnode, and the observations must be
equal."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402
import split  # noqa: E402

SYNC = "t = Task.async(fn -> :global.sync() end); case Task.yield(t, 20_000) do {:ok, r} -> r; nil -> :hang end"

# A process that forwards every message to the evaluating agent as {:probe, Pid, Msg}, as cnode's probe does.
FORWARDER = "me = self(); fn -> f = fn f -> receive do m -> send(me, {:probe, self(), m}); f.(f) end end; f.(f) end"

# Drains the {:probe, _, msg} messages into the process dictionary and returns them all, pids shown as their node
# (the pids differ between the two runs, the node names do not).
SEEN = ("d = fn d, acc -> receive do {:probe, _, m} -> d.(d, [m | acc]) after 0 -> Enum.reverse(acc) end end; "
        "Process.put(:seen, Process.get(:seen, []) ++ d.(d, [])); "
        "Enum.map(Process.get(:seen), fn {:global_name_conflict, n} -> \"conflict #{n}\"; "
        "{:global_name_conflict, n, o} -> \"conflict #{n} with #{node(o)}\"; x -> x end)")


def whereis_node(n, where):
    return n.eval(f"case :erpc.call({where}, :global, :whereis_name, [:dup]) do "
                  ":undefined -> :undefined; p -> node(p) end")


def split_and_register(c, kind, sname, method):
    c.epmd()
    other = start_cnode(c, sname=sname).node if kind == "cnode" else c.elixir(sname).node
    a = c.elixir("a")
    drv = c.elixir("drv", hidden=True)  # drives the other side's holder without taking part in global
    for n in (a, drv):
        n.eval(f"Process.put(:cn, :\"{other}\")")
        assert n.eval("Node.connect(Process.get(:cn))") == "true"
    assert a.eval(SYNC, timeout=30) == ":ok"
    split.cut_off(a, drv)
    m = f"&:global.{method}/3"
    if kind == "cnode":
        drv.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:holder, p); :ok")
        assert drv.eval(f"GenServer.call(Process.get(:holder), {{:global_register, :dup, {m}}}, 30_000)") == ":yes"
    else:
        drv.eval(f"p = Node.spawn(Process.get(:cn), ({FORWARDER})); Process.put(:holder, p); :ok")
        assert drv.eval(f":erpc.call(Process.get(:cn), :global, :register_name, [:dup, Process.get(:holder), {m}])"
                        ) == ":yes"
    a.eval(f"p = spawn(({FORWARDER})); Process.put(:holder, p); :ok")
    assert a.eval(f":global.register_name(:dup, Process.get(:holder), {m})") == ":yes"
    assert a.eval("Node.connect(Process.get(:cn))") == "true"
    assert a.eval(SYNC, timeout=30) == ":ok"
    return a, drv


def observe(c, kind, sname, method, messages):
    """Heals the split, waits until `messages` conflict messages arrived in all and both nodes agree on the name,
    then returns what each side saw."""
    a, drv = split_and_register(c, kind, sname, method)

    def settled():
        seen_a, seen_other = a.eval(SEEN), drv.eval(SEEN)
        on_a, on_other = whereis_node(a, "node()"), whereis_node(drv, "Process.get(:cn)")
        total = seen_a.count("conflict"), seen_other.count("conflict")
        if sum(total) == messages and on_a == on_other:
            return {"a saw": seen_a, "other saw": seen_other, "whereis on a": on_a, "whereis on other": on_other,
                    "a's pid alive": a.eval("Process.alive?(Process.get(:holder))"),
                    "other's pid alive": drv.eval(":erpc.call(Process.get(:cn), :erlang, :is_process_alive, "
                                                  "[Process.get(:holder)])")}
        return None

    return harness.wait_until(settled, 20, f"{method} to settle")


def compare(c, sname, method, messages):
    ref = harness.Cluster()  # the BEAM reference: its own epmd, the same node names
    try:
        beam = observe(ref, "beam", sname, method, messages)
    finally:
        ref.close()
    cn = observe(c, "cnode", sname, method, messages)
    assert cn == beam, ("cnode", cn, "BEAM", beam)
    return beam


def test_notify_all_name(c):
    # both pids are told (each about the other) and the name is unregistered everywhere.
    beam = compare(c, "cnode", "notify_all_name", 2)
    assert beam["whereis on a"] == ":undefined", beam
    assert beam["a saw"] == '["conflict dup with cnode@localhost"]', beam


def test_notify_all_name_cnode_lower(c):
    # 0cn@localhost < a@localhost: cnode's side runs the resolver.
    compare(c, "0cn", "notify_all_name", 2)


def test_random_notify_name(c):
    # a@localhost < cnode@localhost: a's pid keeps the name, cnode's is told {global_name_conflict, Name}.
    beam = compare(c, "cnode", "random_notify_name", 1)
    assert beam["whereis on a"] == ":a@localhost" and beam["other saw"] == '["conflict dup"]', beam


def test_random_notify_name_cnode_lower(c):
    # 0cn@localhost < a@localhost: cnode's pid keeps the name, a's is told.
    beam = compare(c, "0cn", "random_notify_name", 1)
    assert beam["whereis on a"] == ":\"0cn@localhost\"" and beam["a saw"] == '["conflict dup"]', beam


harness.main(globals())
