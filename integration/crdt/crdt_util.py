"""Helpers of the CRDT service's live tests: cnode replicas started with --crdt, a hidden Elixir client (hidden, so
that its connections do not mesh the replicas behind a test's back) and calls to {:crdt, node}."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cnode"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

SYNC_MS = 100


def node_name(sname):
    return f"{sname}@{harness.HOST}"


def replica(c, sname, members, extra=(), cookie=None, wait=True, sync_ms=SYNC_MS):
    args = ["--crdt", ",".join(node_name(m) for m in members), "--crdt-sync-ms", str(sync_ms)] + list(extra)
    return start_cnode(c, sname, extra=args, cookie=cookie, wait=wait)


def cluster(c, n=3, extra=(), names=None, extra_for=lambda sname: []):
    """n replicas listing each other (each with extra + extra_for(its sname)) and a hidden Elixir client connected
    to all of them, once every replica is in contact with every other."""
    c.epmd()
    names = names or [f"c{i}" for i in range(1, n + 1)]
    nodes = [replica(c, s, names, extra=list(extra) + list(extra_for(s))) for s in names]
    return nodes, client_in_contact(c, nodes)


def client_in_contact(c, nodes):
    ex = client(c, nodes)
    wait_in_contact(ex, nodes)
    return ex


def client(c, nodes, name="client"):
    ex = c.elixir(name, hidden=True)
    for p in nodes:
        connect(ex, p)
    return ex


def connect(ex, p):
    harness.wait_until(lambda: ex.eval(f"Node.connect(:\"{p.node}\")") == "true", 10, f"the client to reach {p.node}")


def call(ex, p, request, timeout_ms=5000):
    node = p if isinstance(p, str) else p.node
    return ex.eval(f"GenServer.call({{:crdt, :\"{node}\"}}, {request}, {timeout_ms})")


def value(ex, p, name):
    return call(ex, p, f"{{:value, {name}}}")


def wait_value(ex, nodes, name, want, timeout=10, what=None):
    """Every replica in nodes reads `want` (the printed Elixir term) for name."""
    for p in nodes:
        harness.wait_until(lambda p=p: value(ex, p, name) == want, timeout,
                           what or f"{name} = {want} on {p.node}")


def wait_in_contact(ex, nodes, timeout=20):
    """Every replica has heard from every other one."""
    for p in nodes:
        others = sorted(q.node for q in nodes if q is not p)
        want = "[" + ", ".join(f":\"{n}\"" for n in others) + "]"
        harness.wait_until(lambda p=p, want=want: ex.eval(
            f"Enum.sort(GenServer.call({{:crdt, :\"{p.node}\"}}, :status).replicas) == {want}") == "true",
            timeout, f"{p.node} in contact with {others}")


def wait_synced(ex, nodes, timeout=10):
    """Nothing unacknowledged anywhere: every replica's intervals reached every peer."""
    for p in nodes:
        harness.wait_until(lambda p=p: ex.eval(
            f"GenServer.call({{:crdt, :\"{p.node}\"}}, :status).unacked |> Map.values() |> Enum.all?(&(&1 == 0))")
            == "true", timeout, f"{p.node} to have everything acked")
