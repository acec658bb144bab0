"""Overload: a node that answers slowly does not stall calls to other nodes. A cnode (hub) calls a slow cnode (every
packet it sends waits 500 ms) from many processes at once while two other processes call an erl node and another
cnode; the fast calls must go at their usual pace (they share the hub's scheduler and its distribution layer, not
the slow connection). In the second phase the hub's link to the slow node is also limited in rate, so what the
hub sends there queues up (the slow connection's outbound buffer, not the others')."""
from run import Scenario
from world import World

SPEC = [("hub", "cnode"), ("slow", "cnode"), ("fe", "erl"), ("fc", "cnode")]


def run_phase(w, hub, slow, fe, fc, callers, payload, seconds):
    """callers processes calling {echo, slow} with payload bytes, and one each calling fe and fc, for seconds;
    returns the figures."""
    r = w.e(f"Hub = '{hub.node}', Ps = [faults_drv:member(Hub, cnode) || _ <- lists:seq(1, {callers} + 2)], "
            f"[Pe, Pc | Slow] = Ps, Pay = binary:copy(<<\"x\">>, {payload}), "
            f"Until = erlang:monotonic_time(millisecond) + {int(seconds * 1000)}, "
            f"[faults_drv:echo_loop(P, {{echo, '{slow.node}'}}, Pay, {{slow, self(), Until}}) || P <- Slow], "
            f"faults_drv:echo_loop(Pe, {{net_kernel, '{fe.node}'}}, {{is_auth, Hub}}, {{fast, self(), Until}}), "
            f"faults_drv:echo_loop(Pc, {{echo, '{fc.node}'}}, small, {{fast, self(), Until}}), "
            f"{{S, SE}} = faults_drv:collect(slow, {callers}), {{F, FE}} = faults_drv:collect(fast, 2), "
            f"[catch gen_server:call(P, stop, 2000) || P <- Ps], "
            f"Pc_ = fun(L, X) -> case faults_drv:percentile(L, X) of none -> -1; V -> V end end, "
            f"{{length(S), Pc_(S, 1), Pc_(S, 50), length(F), Pc_(F, 50), Pc_(F, 99), Pc_(F, 100), "
            f"length([X || X <- F, X >= 500]), length(SE), length(FE), FE}}", timeout=seconds + 90)
    head = r.strip("{}").split(",", 10)
    vals = [float(x) for x in head[:10]]
    return dict(zip(["slow_n", "slow_min", "slow_p50", "fast_n", "fast_p50", "fast_p99", "fast_max", "fast_500",
                     "slow_err", "fast_err"], vals), raw=r)


def overload_slow(bed, ctx):
    """a node that answers slowly (500 ms) does not stall calls to other nodes"""
    w = World(bed, ctx, SPEC)
    w.wait_mesh()
    hub, slow, fe, fc = (w.n(s) for s in ("hub", "slow", "fe", "fc"))
    seconds = 5 if ctx.quick else 20
    callers = 16 if ctx.quick else 64
    base = run_phase(w, hub, slow, fe, fc, callers, 1024, 3)
    assert base["fast_err"] == 0 and base["slow_err"] == 0, base["raw"]
    # the hub's link to the slow node carries ~1 MiB of requests at a time in the second phase (its outbound buffer
    # is 1 MiB, --dist-buf-busy-limit): slow callers then wait for room, which must not hold up the fast ones
    big = (1 << 20) // callers
    figures = [f"baseline fast p50 {base['fast_p50']:.1f} ms"]
    with bed.delay(slow, None, 500, seed=ctx.seed):
        phases = [("delay 500ms", None, 16 * 1024)]
        phases.append(("delay 500ms + 2 Mbit/s hub->slow", 2000, big))
        for what, kbit, payload in phases:
            lim = bed.limit(hub, slow, kbit) if kbit else None
            try:
                m = run_phase(w, hub, slow, fe, fc, callers, payload, seconds)
            finally:
                if lim:
                    lim.undo()
            ctx.log(f"{what}: {m}")
            assert m["fast_err"] == 0, f"{what}: fast calls failed: {m['raw']}"
            assert m["slow_n"] >= 1 and m["slow_min"] >= 500, \
                f"{what}: the slow node was not slow ({m['slow_n']:.0f} calls, fastest {m['slow_min']:.0f} ms)"
            # a fast call stuck behind a slow answer would take 500 ms or more: allow a scheduling hiccup or two on
            # a loaded machine, not a stall
            assert m["fast_p99"] < 250 and m["fast_500"] <= 2, \
                (f"{what}: fast calls stalled: p50 {m['fast_p50']:.1f} ms, p99 {m['fast_p99']:.1f} ms, "
                 f"{m['fast_500']:.0f} of {m['fast_n']:.0f} took 500 ms or more (baseline p50 "
                 f"{base['fast_p50']:.1f} ms)")
            figures.append(f"{what}, {callers} callers x {payload // 1024} KiB: {m['slow_n']:.0f} slow calls "
                           f"(p50 {m['slow_p50']:.0f} ms, {m['slow_err']:.0f} timed out), {m['fast_n']:.0f} fast "
                           f"calls p50 {m['fast_p50']:.1f} / p99 {m['fast_p99']:.1f} / max {m['fast_max']:.0f} ms")
    return "; ".join(figures)


SCENARIOS = [Scenario("overload.slow", overload_slow)]
