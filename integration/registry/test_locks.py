"""Issue 7: global locks with a C++ holder. Lock ids are {ResourceId, LockRequesterId}: two requesters of the same
resource exclude each other. The probe's {:global_set_lock, id} / {:global_del_lock, id} / {:global_trans, id, ms}
lock {id, ProbePid}; an Elixir process on node a competes for {:r, self()}. Every scenario runs twice, once with
the probe on cnode as the holder and once with a BEAM process (an Agent on Elixir node h) in its place, and the
observed results must be the same."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402


class holder:
    """The other requester, driven from node a: the probe on cnode, or an Agent process on a BEAM node."""

    def __init__(self, c, kind):
        c.epmd()
        self.a = c.elixir("a")
        if kind == "cnode":
            self.node = start_cnode(c).node
        else:
            self.node = c.elixir("h").node
        a = self.a
        a.eval(f"Process.put(:other, :\"{self.node}\")")
        assert a.eval("Node.connect(Process.get(:other))") == "true"
        # Both ends know each other in global before locks are compared (set_lock on an unknown node is refused).
        assert a.eval("t = Task.async(fn -> :global.sync() end); "
                      "case Task.yield(t, 20_000) do {:ok, r} -> r; nil -> :hang end", timeout=30) == ":ok"
        if kind == "cnode":
            a.eval("p = :erpc.call(Process.get(:other), :cnode, :spawn_probe, [self()]); Process.put(:h, p); :ok")
            self._set = "GenServer.call(Process.get(:h), {:global_set_lock, :r}, 10_000)"
            self._del = "GenServer.call(Process.get(:h), {:global_del_lock, :r}, 10_000)"
            self._trans = "GenServer.call(hh, {:global_trans, :r, MS}, 20_000)"
        else:
            # An Agent runs the fun in its own process, so self() in the fun is the requester, as ProbePid is.
            # Retries 1, as the probe uses.
            a.eval("{:ok, p} = :erpc.call(Process.get(:other), Agent, :start, [fn -> nil end]); "
                   "Process.put(:h, p); :ok")
            nodes = "[node(), :\"a@localhost\"]"
            self._set = f"Agent.get(Process.get(:h), fn _ -> :global.set_lock({{:r, self()}}, {nodes}, 1) end, 10_000)"
            # global:del_lock returns true; the probe call answers :ok.
            self._del = (f"Agent.get(Process.get(:h), fn _ -> true = :global.del_lock({{:r, self()}}, {nodes}); :ok end, "
                         "10_000)")
            # The fun's sleep is the work done while holding the lock, not synchronisation.
            self._trans = (f"Agent.get(hh, fn _ -> :global.trans({{:r, self()}}, "
                           f"fn -> Process.sleep(MS); :ok end, {nodes}, 1) end, 20_000)")

    def set_lock(self):
        return self.a.eval(self._set, timeout=15)

    def del_lock(self):
        return self.a.eval(self._del, timeout=15)

    def trans_async(self, ms):
        # The task is another process: the holder's pid goes in as hh, not through the process dictionary.
        self.a.eval(f"hh = Process.get(:h); "
                    f"Process.put(:trans, Task.async(fn -> {self._trans.replace('MS', str(ms))} end)); :ok")

    def trans_result(self):
        return self.a.eval("Task.await(Process.get(:trans), 30_000)", timeout=40)

    # node a's own process, with retries 0 as in the issue.
    def elixir_set_lock(self):
        return self.a.eval(":global.set_lock({:r, self()}, [node(), Process.get(:other)], 0)")

    def elixir_del_lock(self):
        return self.a.eval(":global.del_lock({:r, self()}, [node(), Process.get(:other)])")

    def lock_seen_on_a(self):
        return self.a.eval(":ets.lookup(:global_locks, :r) != []") == "true"


def holder_first(h):
    # (a) the holder takes :r; a's requester is refused until the holder lets go.
    steps = [h.set_lock(), h.elixir_set_lock(), h.del_lock(), h.elixir_set_lock(), h.elixir_del_lock()]
    # the holder may take it again and give it back (the resource is free again).
    steps += [h.set_lock(), h.del_lock()]
    return steps


def elixir_first(h):
    # (b) the reverse: a's process holds :r, the holder's set_lock is refused until a's del_lock.
    steps = [h.elixir_set_lock(), h.set_lock(), h.elixir_del_lock(), h.set_lock(), h.del_lock()]
    # and a's requester finds it free again once the holder has let go.
    steps += [h.elixir_set_lock(), h.elixir_del_lock()]
    return steps


def trans_steps(h):
    # The holder works 1.5 s inside trans: a's requester is refused while it works, gets the lock after.
    h.trans_async(1500)
    harness.wait_until(h.lock_seen_on_a, 10, "the holder's trans lock on a")
    steps = [h.elixir_set_lock(), h.trans_result(), h.elixir_set_lock()]
    # a holds it now: the holder's trans is aborted (after its one retry), and nothing is left locked by it.
    h.trans_async(0)
    steps += [h.trans_result(), h.elixir_del_lock(), h.set_lock(), h.del_lock()]
    return steps


EXPECTED = {
    "holder_first": ["true", "false", ":ok", "true", "true", "true", ":ok"],
    "elixir_first": ["true", "false", "true", "true", ":ok", "true", "true"],
    "trans": ["false", ":ok", "true", ":aborted", "true", "true", ":ok"],
}
SCENARIOS = {"holder_first": holder_first, "elixir_first": elixir_first, "trans": trans_steps}


def run(c, kind, scenario):
    return SCENARIOS[scenario](holder(c, kind))


def make_test(scenario):
    def test(c):
        # The BEAM reference runs in a cluster of its own (own epmd, same node names), stopped before cnode's run.
        ref = harness.Cluster()
        try:
            beam = run(ref, "beam", scenario)
        finally:
            ref.close()
        cn = run(c, "cnode", scenario)
        assert beam == EXPECTED[scenario], ("BEAM reference", beam)
        assert cn == beam, ("cnode", cn, "BEAM", beam)
    return test


test_holder_first = make_test("holder_first")
test_elixir_first = make_test("elixir_first")
test_trans = make_test("trans")

harness.main(globals())
