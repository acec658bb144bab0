"""Overload: a node that answers slowly does not stall calls to other nodes. A cnode (hub) calls a slow cnode (every
packet it sends waits 500 ms) from many processes at once while two other processes call an erl node and another
cnode; the fast calls must go at their usual pace (they share the hub's scheduler and its distribution layer, not
the slow connection). In the second phase the hub's link to the slow node is also limited in rate, so what the
hub sends there queues up (the slow connection's outbound buffer, not the others').

overload.burst: a 1 000 000-message burst from cnode, a flood to a consumer that takes it slowly (its link limited)
and a burst against cnode (echoed) keep the hub's memory within its outbound limit and, against it, the echo's
queue; other nodes are answered meanwhile. overload.frozen: a consumer
frozen with SIGSTOP behind a forwarder on a hub with --max-mailbox: the forwarder is killed, memory stays bounded
and comes back."""
from run import Scenario
from world import World
from rss import Peak, rss as rss_of

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


# ---- bursts and a frozen consumer (issue 16's overload; issue 15's slow consumer)

LIMIT_KB = 4096  # the hub's --dist-buf-busy-limit in these scenarios: large enough to show in the figures
SLOW_KBIT = 50000  # the slow consumer's link: 50 Mbit/s, about 6 000 messages of 1 KiB a second (the hub makes 40 000+)


def rss(node):
    """The node's resident set in bytes (its process is visible from here: only the network is namespaced)."""
    return rss_of(node.p.pid)


def load_drv(w, node):
    """faults_drv loaded on a BEAM node of the world besides the driver (for burst_sink/2 there)."""
    from world import DRV_SRC
    r = w.e(f'{{ok, faults_drv, B}} = compile:file("{DRV_SRC}", [binary, return_errors]), '
            f'erpc:call(\'{node.node}\', code, load_binary, [faults_drv, "{DRV_SRC}", B])')
    assert r.startswith("{module,faults_drv}"), r


def others_start(w, hub, fc):
    """Two callers that are not part of the load, each a call after the other (20 ms apart) until stopped: the
    driver calling the hub's net_kernel over its own connection, and a probe on another cnode (fc) calling it. (Not
    the echo: a call to a process the load keeps busy waits behind its mailbox, on cnode as on the BEAM.)"""
    w.e(f"Hub = '{hub.node}', Me = self(), Pc = faults_drv:member('{fc.node}', cnode), put(pc, Pc), "
        f"put(loops, [faults_drv:call_loop(fun() -> yes = gen_server:call({{net_kernel, Hub}}, {{is_auth, node()}}, "
        f"10000) end, others, Me), "
        f"faults_drv:call_loop(fun() -> {{ok, yes}} = gen_server:call(Pc, {{call, {{net_kernel, Hub}}, "
        f"{{is_auth, '{fc.node}'}}, 10000}}, 15000) end, others, Me)]), ok")


def others_stop(w):
    """Stops the callers: {calls, p50, p99, max, errors} in ms."""
    r = w.e("faults_drv:stop_loops(get(loops)), {L, E} = faults_drv:collect(others, 2), "
            "catch gen_server:call(get(pc), stop, 2000), "
            "P = fun(X) -> case faults_drv:percentile(L, X) of none -> -1; V -> V end end, "
            "{length(L), P(50), P(99), P(100), length(E), lists:sublist(E, 3)}", timeout=90)
    head = r.strip("{}").split(",", 5)
    return dict(zip(["n", "p50", "p99", "max", "err"], [float(x) for x in head[:5]]), raw=r)


def others_ok(what, o):
    assert o["err"] == 0 and o["n"] >= 2, f"{what}: other nodes' calls failed: {o['raw']}"
    # served at their usual pace: a loaded machine may add a hiccup, not a stall behind the load
    assert o["p99"] < 250, f"{what}: other nodes' calls stalled: {o['raw']}"
    return f"{o['n']:.0f} calls by others p50 {o['p50']:.1f} / p99 {o['p99']:.1f} / max {o['max']:.0f} ms"


def memory_back(w, hub, base, what, margin=24 << 20, timeout=40):
    """RSS back within margin of base (freed memory is trimmed every 5 s); the seconds it took and the RSS."""
    import time
    import harness
    t0 = time.monotonic()
    last = [rss(hub)]

    def back():
        last[0] = rss(hub)
        return last[0] <= base + margin
    try:
        harness.wait_until(back, timeout, "RSS back", interval=0.25)
    except AssertionError:
        raise AssertionError(f"{what}: RSS {last[0] / 1e6:.0f} MB after {timeout} s, baseline {base / 1e6:.0f} MB")
    return time.monotonic() - t0, last[0]


def overload_burst(bed, ctx):
    """1 000 000-message bursts from and against cnode, a slow consumer: memory within the outbound limit"""
    import time
    n = ctx.size or (200_000 if ctx.quick else 1_000_000)
    w = World(bed, ctx, [("hub", "cnode"), ("fe", "erl"), ("fc", "cnode")],
              cnode_args=lambda s: ["--dist-buf-busy-limit", str(LIMIT_KB)] if s == "hub" else [])
    w.wait_mesh()
    hub, fe, fc = w.n("hub"), w.n("fe"), w.n("fc")
    load_drv(w, fe)
    assert fe.eval(f"put(hub, '{hub.node}'), put(pay, binary:copy(<<\"x\">>, 1024)), "
                   f"gen_server:call({{echo, get(hub)}}, warm, 10000)") == "warm"
    time.sleep(6)  # a trim: the baseline is what the node holds at rest
    base = rss(hub)
    limit = LIMIT_KB * 1024
    figures = [f"hub --dist-buf-busy-limit {LIMIT_KB} KiB, RSS at rest {base / 1e6:.1f} MB"]

    def flood(what, count, expr, link=None, during=None):
        """fe evaluates expr (which ends when its sink on fe got count messages) while the hub's RSS is sampled and
        the others call the hub, with the hub's link to fe limited to link kbit/s if given; during(), if given, runs
        once expr is done, before the others stop. Returns (seconds, RSS growth at peak, what during() gave, the
        others' figures)."""
        others_start(w, hub, fc)
        p = Peak(hub.p.pid)
        t0 = time.monotonic()
        lim = bed.limit(hub, fe, link) if link else None
        try:
            r = fe.eval(f"S = faults_drv:burst_sink(self(), {count}), {expr}, "
                        f"receive {{burst_done, S, Ms}} -> Ms after 600000 -> timeout end", timeout=660)
        finally:
            peak = p.stop()
            if lim:
                lim.undo()
        took = time.monotonic() - t0
        extra = during() if during else None
        o = others_stop(w)
        assert r != "timeout", f"{what}: the sink did not get {count} messages within 600 s"
        grew = peak - base
        ctx.log(f"{what}: {count} in {took:.1f} s, RSS peak {peak / 1e6:.1f} MB (+{grew / 1e6:.1f}), {extra}, "
                f"others {o}")
        return took, grew, extra, others_ok(what, o)

    def from_hub(what, count, link=None):
        """One hub process sends count messages of 1 KiB to the sink (cnode:bench_flood: it waits while the
        connection is over the limit, as a BEAM sender does). The hub's RSS grows by no more than the connection's
        queue (the limit) and what is being written and encoded beside it, nothing per message."""
        took, grew, _, others = flood(what, count, f"ok = erpc:call(get(hub), cnode, bench_flood, "
                                                    f"[S, {count}, {{burst, get(pay)}}])", link=link)
        assert grew <= 2 * limit + (24 << 20), \
            f"{what}: RSS grew {grew / 1e6:.1f} MB over the outbound limit {limit / 1e6:.1f} MB"
        return took, grew, others

    # 1. from cnode, to a sink that keeps up as well as it can
    took, grew, others = from_hub("burst from cnode", n)
    figures.append(f"{n} x 1 KiB from cnode in {took:.1f} s ({n / took / 1000:.0f}k/s): RSS +{grew / 1e6:.1f} MB "
                   f"at peak, {others}")

    # 1b. to a slow consumer: the same flood to fe through a link limited to SLOW_KBIT, so fe takes the messages at
    # that pace (TCP's window closes, the hub's queue to fe stays at the limit for the whole flood). What the hub
    # holds is that queue, however long the consumer takes.
    m = n // 4  # more than the bound: without the limit the queue would pass it
    took, grew, others = from_hub("flood to a slow consumer", m, link=SLOW_KBIT)
    rate = m * 1024 * 8 / 1000 / took
    assert rate < SLOW_KBIT * 1.25, f"the consumer was not slow: {rate:.0f} kbit/s over a {SLOW_KBIT} kbit/s limit"
    figures.append(f"{m} x 1 KiB from cnode to a consumer behind {SLOW_KBIT // 1000} Mbit/s in {took:.1f} s "
                   f"({rate / 1000:.0f} Mbit/s): RSS +{grew / 1e6:.1f} MB at peak, {others}")

    # 2. against cnode: fe sends n messages {Sink, Msg} to the hub's echo, which sends each back to the sink on fe.
    # The echo waits while its connection back is over the limit; what arrives meanwhile queues in its mailbox
    # (the BEAM's semantics: --max-mailbox bounds it, overload.frozen). Memory is that queue and the limit.
    w.e(f"put(mq, faults_drv:max_queue('{hub.node}', echo)), ok")
    took, grew, maxq, others = flood(
        "burst against cnode", n, f"E = {{echo, get(hub)}}, B = get(pay), "
        f"lists:foreach(fun(I) -> E ! {{S, {{I, B}}}} end, lists:seq(1, {n}))",
        during=lambda: int(w.e("get(mq) ! {stop, self()}, receive {max_queue, M} -> M after 5000 -> -1 end")))
    # per queued message: its packet (the binary refers into it), its arena block (up to 4 KiB), the signal
    per_msg = 1024 + 6 * 1024
    assert grew <= 2 * limit + maxq * per_msg + (32 << 20), \
        (f"burst against cnode: RSS grew {grew / 1e6:.1f} MB, more than the outbound limit "
         f"{limit / 1e6:.1f} MB and {maxq} queued messages")
    back_s, back_rss = memory_back(w, hub, base, "burst against cnode")
    figures.append(f"{n} x 1 KiB against cnode, echoed, in {took:.1f} s: echo's queue at most {maxq}, RSS "
                   f"+{grew / 1e6:.1f} MB at peak, back to {back_rss / 1e6:.1f} MB in {back_s:.1f} s, {others}")
    assert hub.alive()
    return "; ".join(figures)


def overload_frozen(bed, ctx):
    """a frozen consumer (SIGSTOP) with --max-mailbox: the forwarding process is killed, memory stays bounded"""
    import time
    max_mailbox = 5000
    pay = 10 * 1024
    n = ctx.size or 200_000  # the issue's probe: 200 000 x 10 KB left 2.02 GB queued without a bound
    w = World(bed, ctx, [("hub", "cnode"), ("sink", "erl"), ("fe", "erl"), ("fc", "cnode")],
              cnode_args=lambda s: ["--max-mailbox", str(max_mailbox)] if s == "hub" else [])
    w.wait_mesh()
    hub, sink, fe, fc = (w.n(s) for s in ("hub", "sink", "fe", "fc"))
    limit = 1024 * 1024  # the default --dist-buf-busy-limit
    # a probe on the hub forwards whatever it gets to a process on sink; the driver monitors the probe
    assert w.e(f"O = spawn('{sink.node}', timer, sleep, [infinity]), "
               f"P = faults_drv:call('{hub.node}', cnode, spawn_probe, [O]), put(fwd, P), "
               f"put(fwd_mon, erlang:monitor(process, P)), is_pid(P)") == "true"
    time.sleep(6)
    base = rss(hub)
    others_start(w, hub, fc)
    p = Peak(hub.p.pid)
    t0 = time.monotonic()
    try:
        with bed.freeze(sink):
            # the flood goes on in the background: fe sends what it has, whatever became of the probe
            # the flood goes on in the background on fe: it sends all it has, whatever became of the forwarder
            w.e(f"P = get(fwd), Me = self(), spawn('{fe.node}', fun() -> B = binary:copy(<<\"y\">>, {pay}), "
                f"lists:foreach(fun(I) -> P ! {{I, B}} end, lists:seq(1, {n})), Me ! flood_done end), ok")
            down = w.e("R = get(fwd_mon), receive {'DOWN', R, process, _, Why} -> Why after 60000 -> alive end",
                       timeout=90)
            killed_at = time.monotonic() - t0
            line = hub.wait_for_line("over --max-mailbox", timeout=10)
            assert w.e("receive flood_done -> ok after 600000 -> timeout end", timeout=620) == "ok"
            sent = time.monotonic() - t0
            mid = rss(hub)
        thawed = time.monotonic() - t0
    finally:
        peak = p.stop()
    o = others_stop(w)
    grew = peak - base
    ctx.log(f"frozen: DOWN {down} at {killed_at:.1f} s ({line.strip()[:160]}), {n} sent by {sent:.1f} s, "
            f"RSS peak {peak / 1e6:.1f} MB (+{grew / 1e6:.1f}), {mid / 1e6:.1f} MB before the thaw, others {o}")
    assert down == "killed", f"the forwarder to the frozen node was not killed over --max-mailbox: {down}"
    # the bound: the connection's queue to the frozen node and max_mailbox messages, each its packet (the binary
    # refers into it), its arena block and the signal; the flood past the kill is read and dropped
    bound = limit + max_mailbox * (pay + 8 * 1024) + (48 << 20)
    assert grew <= bound, (f"frozen consumer: RSS grew {grew / 1e6:.1f} MB, over {bound / 1e6:.1f} MB "
                           f"(--max-mailbox {max_mailbox} x {pay // 1024} KiB and the outbound limit)")
    back_s, back_rss = memory_back(w, hub, base, "frozen consumer")
    w.wait_mesh(timeout=60)
    assert hub.alive()
    return (f"{n} x {pay // 1024} KiB to a forwarder whose consumer is frozen: killed at {killed_at:.1f} s over "
            f"--max-mailbox {max_mailbox}, RSS {base / 1e6:.1f} MB at rest, +{grew / 1e6:.1f} MB at peak (bound "
            f"{bound / 1e6:.0f} MB; without a bound issue 15 measured 2.02 GB), back to {back_rss / 1e6:.1f} MB {back_s:.1f} s after "
            f"the thaw at {thawed:.1f} s; {others_ok('frozen consumer', o)}; the mesh whole again")


SCENARIOS += [Scenario("overload.burst", overload_burst), Scenario("overload.frozen", overload_frozen)]
