""":pg under faults, in a mixed cluster of Elixir, erl and cnode nodes (one namespace each): a netsplit, a one-way
cut and a node frozen for longer than net_ticktime. What must hold: while a fault lasts, every node's view of every
group is its own members plus those of the nodes it is still connected to (pg's promise for connected scopes);
after the heal, the same groups everywhere, every membership counted once, no pg scope restarted."""
import time

import harness
from run import Scenario
from world import World

GROUPS = ["g0", "g1", "g2", "g3"]
GL = "[" + ", ".join(GROUPS) + "]"


def spec(ctx):
    if ctx.quick:
        return [("e1", "elixir"), ("e2", "erl"), ("c1", "cnode"), ("c2", "cnode")]
    return [("e1", "elixir"), ("e2", "erl"), ("e3", "erl"), ("c1", "cnode"), ("c2", "cnode"), ("c3", "cnode")]


class PgWorld(World):
    def __init__(self, bed, ctx):
        super().__init__(bed, ctx, spec(ctx))
        self.members = []  # (index, node short name, group): the memberships that must exist
        self.next = 0

    def join(self, short, group):
        n = self.n(short)
        i = self.next
        self.next += 1
        r = self.e(f"P = faults_drv:pg_join({self.kinds([n])[1:-1]}, {group}, new), "
                   f"put({{m, {i}}}, P), is_pid(P)")
        assert r == "true", f"join on {short}: {r}"
        self.members.append((i, short, group))

    def leave(self, k):
        i, short, group = self.members.pop(k)
        n = self.n(short)
        r = self.e(f"faults_drv:pg_leave({self.kinds([n])[1:-1]}, {group}, get({{m, {i}}}))")
        assert r == "ok", f"leave on {short}: {r}"

    def populate(self, per_node):
        for short in self.order:
            for _ in range(per_node):
                self.join(short, self.ctx.rng.choice(GROUPS))

    def churn(self, nodes, ops):
        """ops random joins and leaves on the given nodes."""
        shorts = {n.short for n in nodes}
        for _ in range(ops):
            mine = [k for k, m in enumerate(self.members) if m[1] in shorts]
            if mine and self.ctx.rng.random() < 0.4:
                self.leave(self.ctx.rng.choice(mine))
            else:
                self.join(self.ctx.rng.choice(sorted(shorts)), self.ctx.rng.choice(GROUPS))

    def consistent(self, nodes=None):
        r = self.e(f"faults_drv:pg_consistent({self.kinds(nodes or self.all())}, {GL})")
        self.last_diff = r
        return r == "ok"

    def wait_consistent(self, nodes=None, timeout=30, what="pg views consistent with the connections"):
        t0 = time.monotonic()
        try:
            harness.wait_until(lambda: self.consistent(nodes), timeout, what, interval=0.2)
        except AssertionError:
            raise AssertionError(f"{what}: not within {timeout}s: {self.last_diff}; shape {self.shape()}")
        return time.monotonic() - t0

    def count(self):
        return self.count_on(self.all())

    def count_on(self, nodes):
        return int(self.e(f"faults_drv:pg_count({self.kinds(nodes)}, {GL})"))

    def scopes(self, nodes=None):
        return self.e(f"faults_drv:scope_pids({self.kinds(nodes or self.all())})")

    def healed(self):
        """Full mesh, views consistent (so: the same groups everywhere), every membership exactly once."""
        t = self.wait_mesh(check=self.consistent, timeout=60)
        n = self.count()
        assert n == len(self.members), f"{n} memberships on the cluster, {len(self.members)} expected"
        return t


def start(bed, ctx):
    w = PgWorld(bed, ctx)
    w.wait_mesh()
    w.populate(5 if ctx.quick else 20)
    w.wait_consistent()
    return w, w.scopes()


def names(nodes):
    return ",".join(n.short for n in nodes)


def pg_netsplit(bed, ctx):
    """a netsplit of a mixed cluster heals to the same groups everywhere"""
    w, scopes = start(bed, ctx)
    figures = []
    for _ in range(1 if ctx.quick else 3):
        nodes = w.all()
        ctx.rng.shuffle(nodes)
        k = ctx.rng.randint(1, len(nodes) - 1)
        sides = [nodes[:k], nodes[k:]]
        ctx.log(f"split {names(sides[0])} | {names(sides[1])}")
        t0 = time.monotonic()
        with bed.partition(sides):
            harness.wait_until(lambda: w.meshed(sides), 30, "the connections across the split to drop")
            w.wait_consistent()
            detect = time.monotonic() - t0
            w.churn(w.all(), 10 if ctx.quick else 40)
            w.wait_consistent(what="changes on both sides seen on their side")
        heal = w.healed()
        figures.append(f"{names(sides[0])}|{names(sides[1])}: split seen in {detect:.1f}s, healed in {heal:.1f}s")
    assert w.scopes() == scopes, f"a pg scope restarted: {scopes} -> {w.scopes()}"
    return (f"{len(w.all())} nodes agree on {len(w.members)} memberships after each heal, changes made on both "
            f"sides kept, no scope restarted; " + "; ".join(figures))


def pg_oneway(bed, ctx):
    """a one-way cut between a cnode and another node: views follow the connections, then heal"""
    w, scopes = start(bed, ctx)
    figures = []
    for _ in range(1 if ctx.quick else 3):
        cn = ctx.rng.choice([n for n in w.all() if n.kind == "cnode"])
        other = ctx.rng.choice([n for n in w.all() if n is not cn])
        a, b = (cn, other) if ctx.rng.random() < 0.5 else (other, cn)
        ctx.log(f"one-way cut {a.short} -> {b.short}")
        t0 = time.monotonic()
        with bed.cut(a, b, one_way=True):
            harness.wait_until(lambda: not w.connected(a, b) and not w.connected(b, a), 30,
                               f"{a.short} and {b.short} to see each other down")
            down = time.monotonic() - t0
            shape = w.wait_stable_shape()
            w.wait_consistent()
            w.churn(w.all(), 10 if ctx.quick else 40)
            w.wait_consistent(what="changes during the cut seen by the nodes connected")
        cut_off = sum(1 for n in w.all() if shape.count(f"'{n.node}'") == 1)  # in no other node's list
        heal = w.healed()
        figures.append(f"{a.short}->{b.short}: down in {down:.1f}s ({cut_off} node(s) left alone), "
                       f"healed in {heal:.1f}s")
    assert w.scopes() == scopes, f"a pg scope restarted: {scopes} -> {w.scopes()}"
    return (f"views matched the connections during the cut and {len(w.members)} memberships everywhere after; "
            + "; ".join(figures))


def pg_freeze(bed, ctx):
    """a node frozen (SIGSTOP) for twice net_ticktime: dropped, then back with its members"""
    w, scopes = start(bed, ctx)
    tick = bed.ticktime
    victims = [ctx.rng.choice([n for n in w.all() if n.kind == "cnode"])]
    if not ctx.quick:
        victims.append(ctx.rng.choice([n for n in w.all() if n.kind != "cnode"]))
    figures = []
    for v in victims:
        others = [n for n in w.all() if n is not v]
        ctx.log(f"freeze {v.short} for {2 * tick}s")
        t0 = time.monotonic()
        with bed.freeze(v):
            harness.wait_until(lambda: not any(w.connected(n, v) for n in others), 3 * tick + 10,
                               f"{v.short} seen down")
            down = time.monotonic() - t0
            w.wait_consistent(others, what="views without the frozen node")
            w.churn(others, 5 if ctx.quick else 20)
            w.wait_consistent(others, what="changes while frozen")
            left = 2 * tick - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)  # the fault's length (twice net_ticktime), not a synchronisation
        frozen = time.monotonic() - t0
        assert v.alive(), f"{v.short} died while frozen"
        heal = w.healed()
        assert down <= 1.25 * tick + 3, f"{v.short} seen down only after {down:.1f}s (net_ticktime {tick}s)"
        figures.append(f"{v.short} ({v.kind}) frozen {frozen:.1f}s: down after {down:.1f}s, back in {heal:.1f}s")
    assert w.scopes() == scopes, f"a pg scope restarted: {scopes} -> {w.scopes()}"
    return (f"net_ticktime {tick}s; the frozen node's members left every view and came back, "
            f"{len(w.members)} memberships everywhere; " + "; ".join(figures))


def pg_crash(bed, ctx):
    """a cnode killed (kill -9): its members leave every view at once; restarted, it takes part again"""
    w, _ = start(bed, ctx)
    v = ctx.rng.choice([n for n in w.all() if n.kind == "cnode"])
    others = [n for n in w.all() if n is not v]
    scopes = w.scopes(others)
    ctx.log(f"kill -9 {v.short}")
    t0 = time.monotonic()
    bed.kill9(v)
    w.members = [m for m in w.members if m[1] != v.short]
    # the kernel closes the dead node's sockets: its peers know at once, not after net_ticktime
    harness.wait_until(lambda: not any(w.connected(n, v) for n in others), bed.ticktime, f"{v.short} seen down")
    w.wait_consistent(others, what="views without the killed node")
    gone = time.monotonic() - t0
    n = w.count_on(others)
    assert n == len(w.members), f"{n} memberships left, {len(w.members)} expected"
    t1 = time.monotonic()
    w.nodes[v.short] = bed.cnode(v.short)  # the same name, a new incarnation
    w.churn([w.n(v.short)], 5 if ctx.quick else 20)
    heal = w.healed()
    back = time.monotonic() - t1
    assert w.scopes(others) == scopes, f"a pg scope restarted: {scopes} -> {w.scopes(others)}"
    return (f"{v.short}'s members gone from every view {gone:.2f}s after kill -9 (net_ticktime {bed.ticktime}s), "
            f"restarted and rejoined with new members in {back:.1f}s (mesh and views {heal:.1f}s after its start), "
            f"{len(w.members)} memberships everywhere")


SCENARIOS = [Scenario("pg.netsplit", pg_netsplit), Scenario("pg.oneway", pg_oneway),
             Scenario("pg.freeze", pg_freeze), Scenario("pg.crash", pg_crash)]
