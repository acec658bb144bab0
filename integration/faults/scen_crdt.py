"""The CRDT service (--crdt) under network faults: cnode replicas in namespaces of their own, two of them with
skewed clocks (--crdt-test-clock-offset-ms, one ahead, one behind). Rounds of faults — a split into two sides, a
one-way cut, a replica that hears no one — each with writes on every replica (counter adds, set adds, map puts of
shared and own keys, register puts) made through the driver while the fault lasts. What must hold: after the heal
every replica holds the same value of every name, the counter is the sum of every add, the set and the map hold
every element and key written anywhere, and a register written while apart on the replica whose clock is ahead
and later on the one behind holds the first write everywhere (the skew is real); measured: the time from the heal to convergence (the driver dials the mesh
again, as an operator or libcluster does) and the bytes sent per update (the replicas' bytes_out)."""
import re
import time

import harness
from run import Scenario
from world import World

NAMES = ['<<"c">>', '<<"s">>', '<<"m">>', '<<"r">>']
SYNC_MS = 200


def crdt_converge(bed, ctx):
    """writes on every side of splits, one-way cuts and a deaf replica, with skewed clocks, converge after the heal"""
    n = 3 if ctx.quick else 5
    names = [f"r{i}" for i in range(1, n + 1)]
    for x in names:
        bed.host(x)
    full = [f"{x}@{bed.host(x).ip}" for x in names]
    skew = {names[0]: 5000, names[1]: -3000}  # ms: r1 ahead, r2 behind

    def args(x):
        a = ["--crdt", ",".join(full), "--crdt-sync-ms", str(SYNC_MS)]
        return a + (["--crdt-test-clock-offset-ms", str(skew[x])] if x in skew else [])
    w = World(bed, ctx, [(x, "cnode") for x in names], cnode_args=args)
    nodes = w.all()
    w.wait_mesh()
    expect = {"counter": 0, "set": 0, "keys": set(), "updates": 0}
    seq = [0]

    def writes(node, k):
        """k writes of each kind on one replica (one erl expression through the driver)."""
        reqs = []
        for _ in range(k):
            seq[0] += 1
            i = seq[0]
            by = ctx.rng.randint(-3, 9)
            shared = ctx.rng.randrange(8)  # map keys every replica writes: concurrent puts, LWW by the skewed HLCs
            reqs += [f'{{counter_add, <<"c">>, {by}}}', f'{{set_add, <<"s">>, {i}}}',
                     f'{{map_put, <<"m">>, <<"k{shared}">>, {i}}}', f'{{map_put, <<"m">>, <<"own{i}">>, {i}}}',
                     f'{{register_put, <<"r">>, {i}}}']
            expect["counter"] += by
            expect["set"] += 1
            expect["keys"] |= {f"k{shared}", f"own{i}"}
            expect["updates"] += 5
        r = w.e(f"lists:usort([gen_server:call({{crdt, '{node.node}'}}, R, 5000) || R <- [{', '.join(reqs)}]])")
        assert r == "[ok]", f"writes on {node.short}: {r}"

    meter = {"last": {}, "total": 0}

    def sample():
        """Adds what each replica wrote to each peer since the last sample. bytes_out is per connection: a
        connection that went down and came back starts again from 0 (counted from there)."""
        ns = "[" + ", ".join(f"'{m}'" for m in full) + "]"
        r = w.e("[[{atom_to_list(N), atom_to_list(P), B} || {P, B} <- maps:to_list(maps:get(bytes_out, "
                f"gen_server:call({{crdt, N}}, status, 5000)))] || N <- {ns}]")
        for a, b, v in re.findall(r'\{"([^"]+)","([^"]+)",(\d+)\}', r.replace(" ", "").replace("\n", "")):
            v, last = int(v), meter["last"].get((a, b))
            meter["total"] += v - last if last is not None and v >= last else v if last is not None else 0
            meter["last"][(a, b)] = v
        return meter["total"]

    def converged():
        """true once every replica holds the same values and they are what was written."""
        ns = "[" + ", ".join(f"'{m}'" for m in full) + "]"
        r = w.e(f"Vs = [[catch gen_server:call({{crdt, N}}, {{value, K}}, 2000) || K <- [{', '.join(NAMES)}]] "
                f"|| N <- {ns}], "
                "case lists:usort(Vs) of [[{ok, C}, {ok, S}, {ok, M}, {ok, _}]] -> "
                "{C, length(S), lists:sort([binary_to_list(K) || K <- maps:keys(M)])}; _ -> differ end")
        if r == "differ":
            return False
        want = f'{{{expect["counter"]},{expect["set"]},[{",".join(chr(34) + k + chr(34) for k in sorted(expect["keys"]))}]}}'
        return r.replace(" ", "").replace("\n", "") == want

    def register_winner():
        r = w.e(f"gen_server:call({{crdt, '{full[0]}'}}, {{value, <<\"r\">>}}, 2000)")
        return r

    figures = []

    skew_seen = []

    def skew_writes():
        """While r1 (clock +5 s) and r2 (-3 s) cannot hear each other: r1 puts the register <<"skew">>, r2 puts it
        later in real time. LWW by the hybrid logical clocks must keep r1's write (its timestamp is ahead by 8 s
        less the gap); with clocks that agree, r2's later one would win."""
        a, b = nodes[0], nodes[1]

        def put(x, v):
            r = w.e(f"gen_server:call({{crdt, '{x.node}'}}, {{register_put, <<\"skew\">>, {v}}}, 5000)")
            assert r == "ok", f"register_put on {x.short}: {r}"
        put(a, 1)
        t_a = time.monotonic()
        time.sleep(0.5)  # r2's write half a second later in real time: the point of the check, not a synchronisation
        put(b, 2)
        expect["updates"] += 2
        skew_seen.append(time.monotonic() - t_a)

    def skew_held():
        ns = "[" + ", ".join(f"'{m}'" for m in full) + "]"
        r = w.e(f"lists:usort([catch gen_server:call({{crdt, N}}, {{value, <<\"skew\">>}}, 2000) || N <- {ns}])")
        assert r == "[{ok,1}]", (f"the register written on r1 (clock +5 s) and {skew_seen[0]:.1f} s later on r2 "
                                 f"(clock -3 s) while apart: every replica must keep r1's write (LWW by the skewed "
                                 f"clocks), they hold {r}")

    def round_(label, faults_fn, skew=False):
        b0, u0 = sample(), expect["updates"]
        faults = faults_fn()
        t0 = time.monotonic()
        if skew:
            skew_writes()
        for x in nodes:
            writes(x, 10 if ctx.quick else 25)
            sample()
        # long enough for the links across the fault to go down (net_ticktime 4 s), writes again meanwhile
        harness.wait_until(lambda: time.monotonic() - t0 > 5, 30, "the fault's length", interval=0.2)
        for x in nodes:
            writes(x, 5)
        sample()
        for f in faults:
            f.undo()
        th = time.monotonic()
        last = [0.0]

        def ok():
            if time.monotonic() - last[0] > 2:  # the driver dials what is not connected, as wait_mesh does
                last[0] = time.monotonic()
                w.connect()
            sample()
            return converged()
        harness.wait_until(ok, 60, f"convergence after {label}", interval=0.05)
        took = time.monotonic() - th
        if skew:
            skew_held()
        w.wait_mesh()
        harness.wait_until(lambda: sample() == sample(), 10, "quiet", interval=SYNC_MS / 1000 * 3)
        per = (sample() - b0) / max(1, expect["updates"] - u0)
        figures.append(f"{label}: converged {took:.2f}s after the heal, {per:.0f} B sent per update")
        ctx.log(figures[-1])

    def split(apart=False):
        order = list(nodes)
        ctx.rng.shuffle(order)
        k = ctx.rng.randint(1, len(order) // 2)
        sides = [order[:k], order[k:]]
        if apart and (nodes[0] in sides[0]) == (nodes[1] in sides[0]):  # r1 and r2 on different sides
            mine = sides[0] if nodes[0] in sides[0] else sides[1]
            other = sides[1] if mine is sides[0] else sides[0]
            x = other[0]
            mine[mine.index(nodes[1])], other[0] = x, nodes[1]
        return [bed.partition(sides)]

    def one_way():
        a, b = ctx.rng.sample(nodes, 2)
        return [bed.cut(a, b, one_way=True)]

    def deaf():
        v = ctx.rng.choice(nodes)
        return [bed.cut(x, v, one_way=True) for x in nodes if x is not v]

    rounds = [("split", lambda: split(apart=True), True), ("one-way cut", one_way, False),
              ("deaf replica", deaf, False)]
    if not ctx.quick:
        rounds += [("split", split, False), ("one-way cut", one_way, False)]
    for label, fn, skew in rounds:
        round_(label, fn, skew)
    return (f"{n} replicas (clocks +5 s and -3 s on two), {expect['updates']} updates, every value the same "
            f"everywhere and complete (counter {expect['counter']}, {expect['set']} set elements, "
            f"{len(expect['keys'])} map keys, register {register_winner()}); the skewed clocks decide: a register "
            f"written on r2 {skew_seen[0]:.1f}s after r1 while apart kept r1's write everywhere; " + "; ".join(figures))


SCENARIOS = [Scenario("crdt.converge", crdt_converge)]
