""":global under faults, in a mixed cluster of Elixir, erl and cnode nodes: a one-way cut, and a three-way split
with the same name registered on every side. What must hold: global:sync() returns on every node within a deadline
(during the fault and after the heal); after the heal one pid per name, the same on every node, and the conflict
resolved as OTP's default resolver (global:random_exit_name/3) does: the pid on the node whose name sorts lowest
survives, the others are killed."""
import time

import harness
from run import Scenario
from world import World


def spec(ctx):
    if ctx.quick:
        return [("e1", "elixir"), ("e2", "erl"), ("c1", "cnode"), ("c2", "cnode")]
    return [("e1", "elixir"), ("e2", "erl"), ("e3", "erl"), ("c1", "cnode"), ("c2", "cnode"), ("c3", "cnode")]


class GlWorld(World):
    def __init__(self, bed, ctx, spec):
        super().__init__(bed, ctx, spec)
        self.regs = {}  # name -> [node that registered it with yes]

    def register(self, n, name):
        r = self.e(f"{{R, P}} = faults_drv:gl_register({self.kinds([n])[1:-1]}, {name}), "
                   f"put({{reg, {name}, '{n.node}'}}, P), R", timeout=60)
        if r == "yes":
            self.regs.setdefault(name, []).append(n)
        return r

    def whereis_on(self, nodes, name):
        """The distinct answers of global:whereis_name(name) on nodes, as 'node of the pid' (or undefined)."""
        r = self.e(f"lists:usort([case P of undefined -> undefined; _ when is_pid(P) -> node(P); E -> E end "
                   f"|| {{_, P}} <- faults_drv:gl_whereis({self.kinds(nodes)}, {name})])")
        return r

    def holds(self, nodes, name, owner):
        """Every node among nodes resolves name to the pid owner registered."""
        return self.e(f"lists:usort([P || {{_, P}} <- faults_drv:gl_whereis({self.kinds(nodes)}, {name})]) "
                      f"=:= [get({{reg, {name}, '{owner.node}'}})]") == "true"

    def alive(self, owner, name):
        return self.e(f"faults_drv:alive(get({{reg, {name}, '{owner.node}'}}))")

    def names_everywhere(self):
        return self.e(f"lists:usort([L || {{_, L}} <- faults_drv:gl_names({self.kinds(self.all())})])")

    def resolved(self, timeout=30):
        """After a heal: every registered name held by one pid everywhere, the winner of a conflict the pid on the
        lowest node name, the losers dead. Returns the conflicts resolved."""
        conflicts = 0
        for name, owners in self.regs.items():
            winner = min(owners, key=lambda n: n.node)
            harness.wait_until(lambda: self.holds(self.all(), name, winner), timeout,
                               f"{name} held by {winner.short}'s pid everywhere (saw {self.whereis_on(self.all(), name)})")
            for loser in owners:
                if loser is not winner:
                    conflicts += 1
                    harness.wait_until(lambda: self.alive(loser, name) == "false", timeout,
                                       f"{loser.short}'s {name} pid killed (random_exit_name)")
            assert self.alive(winner, name) == "true", f"the winner of {name} on {winner.short} died"
        views = self.names_everywhere()
        assert views.count("[") == 2, f"global:registered_names() differs between nodes: {views}"
        for name in self.regs:
            assert name in views, f"{name} missing from registered_names(): {views}"
        return conflicts


def global_oneway(bed, ctx):
    """a one-way cut: names registered on both ends, one pid per name after the heal, sync never hangs"""
    w = GlWorld(bed, ctx, spec(ctx))
    w.wait_mesh()
    w.sync_all()
    for n in w.all():
        assert w.register(n, f"pre_{n.short}") == "yes"
    cn = ctx.rng.choice([n for n in w.all() if n.kind == "cnode"])
    other = ctx.rng.choice([n for n in w.all() if n is not cn])
    a, b = (cn, other) if ctx.rng.random() < 0.5 else (other, cn)
    ctx.log(f"one-way cut {a.short} -> {b.short}")
    t0 = time.monotonic()
    with bed.cut(a, b, one_way=True):
        harness.wait_until(lambda: not w.connected(a, b) and not w.connected(b, a), 30,
                           f"{a.short} and {b.short} to see each other down")
        down = time.monotonic() - t0
        w.wait_stable_shape()
        sync_cut = w.sync_all()
        ra, rb = w.register(a, "dup"), w.register(b, "dup")
        assert ra == "yes" and rb == "yes", f"dup on {a.short}: {ra}, on {b.short}: {rb} (not connected to each other)"
        assert w.register(a, f"u_{a.short}") == "yes" and w.register(b, f"u_{b.short}") == "yes"
        assert w.holds([a], "dup", a) and w.holds([b], "dup", b), "each end holds its own dup"
        shape = w.shape()
    t1 = time.monotonic()
    heal = w.wait_mesh()
    sync_heal = w.sync_all()
    conflicts = w.resolved()
    resolved = time.monotonic() - t1
    assert conflicts == 1, conflicts
    alone = sum(1 for n in w.all() if shape.count(f"'{n.node}'") == 1)
    winner = min((a, b), key=lambda n: n.node)
    return (f"{a.short}->{b.short} down in {down:.1f}s ({alone} node(s) left alone by global), sync during the cut "
            f"{sync_cut} ms; healed in {heal:.1f}s, sync {sync_heal} ms, dup kept on {winner.short} and the other "
            f"killed, {len(w.regs)} names one pid each everywhere {resolved:.1f}s after the heal")


def global_split3(bed, ctx):
    """a three-way split with a name registered on each side: one name per name after the heal"""
    w = GlWorld(bed, ctx, [("e1", "elixir"), ("e2", "erl"), ("e3", "erl"), ("c1", "cnode"), ("c2", "cnode"),
                           ("c3", "cnode")])
    w.wait_mesh()
    w.sync_all()
    figures = []
    for rnd in range(1 if ctx.quick else 2):
        nodes = w.all()
        ctx.rng.shuffle(nodes)
        sides = [nodes[0:2], nodes[2:4], nodes[4:6]]
        w.regs = {}
        tag = f"r{rnd}"
        ctx.log("split " + " | ".join(",".join(n.short for n in s) for s in sides))
        t0 = time.monotonic()
        split = bed.partition(sides)
        harness.wait_until(lambda: w.meshed(sides), 30, "the three sides apart")
        down = time.monotonic() - t0
        sync_split = w.sync_all()
        for i, s in enumerate(sides):
            assert w.register(ctx.rng.choice(s), f"{tag}_dup") == "yes"
            assert w.register(ctx.rng.choice(s), f"{tag}_side{i}") == "yes"
        for s in sides:
            owner = [n for n in w.regs[f"{tag}_dup"] if n in s][0]
            harness.wait_until(lambda: w.holds(s, f"{tag}_dup", owner), 10, "each side holds its own dup")
        staged = not ctx.quick and rnd == 1
        if staged:  # two sides meet first, the third later
            two = bed.partition([sides[0] + sides[1], sides[2]])
            split.undo()
            w.wait_mesh(sides[0] + sides[1])
            w.sync_all()
            first = [n for n in w.regs[f"{tag}_dup"] if n in sides[0] + sides[1]]
            win = min(first, key=lambda n: n.node)
            harness.wait_until(lambda: w.holds(sides[0] + sides[1], f"{tag}_dup", win), 30, "the first merge")
            split = two
        t1 = time.monotonic()
        split.undo()
        heal = w.wait_mesh()
        sync_heal = w.sync_all()
        conflicts = w.resolved()
        resolved = time.monotonic() - t1
        assert conflicts == 2, conflicts
        winner = min(w.regs[f"{tag}_dup"], key=lambda n: n.node)
        figures.append(f"{'staged' if staged else 'at once'}: apart in {down:.1f}s, sync while split "
                       f"{sync_split} ms; mesh {heal:.1f}s after the heal, sync {sync_heal} ms, dup kept on "
                       f"{winner.short}, 2 killed, all {len(w.regs)} names resolved in {resolved:.1f}s")
    return "3 sides of 2 nodes (" + "; ".join(figures) + ")"


SCENARIOS = [Scenario("global.oneway", global_oneway), Scenario("global.split3", global_split3)]
