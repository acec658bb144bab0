"""Where a put's time goes: reads the timelines cnode writes with `--raft-trace DIR` (one DIR/<node>-<group>.trace
per member; bench_raft.py --trace DIR passes it) and prints, for the leader's proposals, the time from proposal to
each step (ready taken, own log durable, each follower's acknowledgement, applied and answered), percentiles of
each, and for the slowest 1 % which step was the last to arrive; then the followers' side (append received, write
taken, durable = acknowledgement sent) and the writer threads' fdatasyncs.

    python3 bench/raft/trace_report.py DIR [--from-ms N]   (N: skip the first N ms of the leader's proposals)

Events ("<kind> <ns> <a> <b> <c>"): P proposal (index); T ready taken with a write (last index, entries, appends
sent at once); N ready without a write; S a write durable, seen by the group (index, messages released); A an
acknowledgement received (member number, index, success); E an append received (first, last, commit); K entries
applied and answered (last index, count); U the loop's CPU time, involuntary and voluntary
context switches (when it ran on one thread); L one loop of the group process (messages handled, ns, mailbox left);
W the writer took batches (batches, entries, ns they waited); F its write+fdatasync (ns, ns of the whole write).
"""
import bisect
import glob
import os
import sys


def load(path):
    ev = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) != 5:
                continue
            ev.append((p[0], int(p[1]), int(p[2]), int(p[3]), int(p[4])))
    return ev


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, (len(xs) * q + 99) // 100 - 1))]


def ms(ns):
    return ns / 1e6


def row(name, xs):
    if not xs:
        return f"{name:<34} (none)"
    return (f"{name:<34} n={len(xs):>7}  p50 {ms(pct(xs, 50)):7.2f}  p90 {ms(pct(xs, 90)):7.2f}  "
            f"p99 {ms(pct(xs, 99)):7.2f}  max {ms(max(xs)):7.2f} ms")


def covering(points, i):
    """points: sorted list of (last_index, t) in time order with growing index; the first t whose index >= i."""
    idx = [p[0] for p in points]
    k = bisect.bisect_left(idx, i)
    return points[k][1] if k < len(points) else None


def monotone(points):
    """(index, t) in time order -> the running maximum: the first time each index level was reached."""
    out = []
    hi = 0
    for ix, t in points:
        if ix > hi:
            out.append((ix, t))
            hi = ix
    return out


def side(ev):
    """Per member: index -> time for ready taken (T), durable (S)."""
    writes = [(e[2], e[1]) for e in ev if e[0] == "T"]
    synced = [e[1] for e in ev if e[0] == "S"]
    taken = monotone([(ix, t) for ix, t in writes if ix])
    durable = monotone([(w[0], s) for w, s in zip(writes, synced) if w[0]])
    return taken, durable


def main():
    d = sys.argv[1]
    skip_ms = 0
    if "--from-ms" in sys.argv:
        skip_ms = float(sys.argv[sys.argv.index("--from-ms") + 1])
    files = sorted(glob.glob(os.path.join(d, "*.trace")))
    members = {os.path.basename(f).rsplit("-", 1)[0]: load(f) for f in files}
    lead = max(members, key=lambda m: sum(1 for e in members[m] if e[0] == "P"))
    ev = members[lead]
    props = [(e[2], e[1]) for e in ev if e[0] == "P"]
    if not props:
        raise SystemExit("no proposals in the traces")
    t_first = props[0][1]
    props = [(i, t) for i, t in props if t >= t_first + skip_ms * 1e6]
    taken, durable = side(ev)
    applied = monotone([(e[2], e[1]) for e in ev if e[0] == "K"])
    peers = sorted({e[2] for e in ev if e[0] == "A"})
    acks = {p: monotone([(e[3], e[1]) for e in ev if e[0] == "A" and e[2] == p and e[4]]) for p in peers}
    others = [m for m in members if m != lead]
    print(f"leader {lead}; followers {', '.join(others)}; {len(props)} proposals traced")
    stages = {"ready taken": [], "own log durable": [], "quorum (2nd of 3)": [], "applied+answered": []}
    for p in peers:
        stages[f"ack from member {p}"] = []
    last_step = {}
    per = []
    for i, t in props:
        tt, td, tk = covering(taken, i), covering(durable, i), covering(applied, i)
        ta = {p: covering(acks[p], i) for p in peers}
        if None in (tt, td, tk) or None in ta.values():
            continue
        stages["ready taken"].append(tt - t)
        stages["own log durable"].append(td - t)
        for p in peers:
            stages[f"ack from member {p}"].append(ta[p] - t)
        q = sorted([td] + list(ta.values()))[1]
        stages["quorum (2nd of 3)"].append(q - t)
        stages["applied+answered"].append(tk - t)
        per.append((tk - t, i, t, tt, td, ta, q, tk))
    print("\nleader: from proposal to ...")
    for k, xs in stages.items():
        print(row(k, xs))
    per.sort(reverse=True)
    slow = per[: max(1, len(per) // 100)]
    print(f"\nthe slowest 1 % ({len(slow)} proposals, {ms(slow[-1][0]):.2f} ms and more): mean ms per step")
    n = len(slow)
    mean = lambda xs: sum(xs) / len(xs) / 1e6
    print(f"  proposal -> ready taken        {mean([s[3] - s[2] for s in slow]):7.2f}")
    print(f"  ready taken -> own durable     {mean([s[4] - s[3] for s in slow]):7.2f}")
    for p in peers:
        print(f"  ready taken -> ack member {p}    {mean([s[5][p] - s[3] for s in slow]):7.2f}")
    print(f"  ready taken -> quorum          {mean([s[6] - s[3] for s in slow]):7.2f}")
    print(f"  quorum -> applied+answered     {mean([s[7] - s[6] for s in slow]):7.2f}")
    lastc = {}
    for s in slow:
        cands = {"own": s[4]}
        cands.update({f"m{p}": s[5][p] for p in peers})
        order = sorted(cands, key=cands.get)
        lastc[order[1]] = lastc.get(order[1], 0) + 1
    print(f"  what completed the quorum: {lastc}")
    when = sorted(s[2] for s in slow)
    print(f"  proposed at (ms from the first traced): {[round(ms(w - t_first)) for w in when[:40]]}")
    for path in sorted(glob.glob(os.path.join(d, "driver-cnode_put-*.calls"))):
        byid = {(e[3], e[4]): (e[2], e[1]) for e in ev if e[0] == "P" and e[3]}
        legs = []
        for line in open(path):
            p = line.split()
            if len(p) != 5 or p[0] != "D":
                continue
            sent, got, c, q = map(int, p[1:])
            if (c, q) not in byid:
                continue
            i, tp = byid[(c, q)]
            tk = covering(applied, i)
            if tk is None:
                continue
            legs.append((got - sent, tp - sent, tk - tp, got - tk))
        if not legs:
            continue
        print(f"\ncallers ({os.path.basename(path)}, {len(legs)} puts matched): the caller's time, split")
        print(row("caller: sent -> answered", [x[0] for x in legs]))
        print(row("sent -> proposed on the leader", [x[1] for x in legs]))
        print(row("proposed -> answered (leader)", [x[2] for x in legs]))
        print(row("answered -> caller has it", [x[3] for x in legs]))
        legs.sort(reverse=True)
        slow = legs[: max(1, len(legs) // 100)]
        print(f"  the slowest 1 % ({len(slow)}, {ms(slow[-1][0]):.2f} ms and more): mean ms sent->proposed "
              f"{mean([x[1] for x in slow]):.2f}, proposed->answered {mean([x[2] for x in slow]):.2f}, "
              f"answered->caller {mean([x[3] for x in slow]):.2f}")
    print("\nfollowers: from the leader's ready taken to ...")
    for m in others:
        fev = members[m]
        recv = monotone([(e[3], e[1]) for e in fev if e[0] == "E" and e[3]])
        ftaken, fdur = side(fev)
        r1, r2, r3 = [], [], []
        for i, t in props:
            tt = covering(taken, i)
            a, b, c = covering(recv, i), covering(ftaken, i), covering(fdur, i)
            if None in (tt, a, b, c):
                continue
            r1.append(a - tt)
            r2.append(b - tt)
            r3.append(c - tt)
        print(f" {m}")
        print(row("  append received", r1))
        print(row("  its ready taken", r2))
        print(row("  durable (ack sent)", r3))
    print("\nwriters (per write: batches, entries, fdatasync):")
    for m, mev in members.items():
        w = [e for e in mev if e[0] == "W"]
        f = [e for e in mev if e[0] == "F"]
        if not w:
            continue
        dur = [e[1] for e in mev if e[0] == "T"]
        span = (mev[-1][1] - mev[0][1]) / 1e9
        print(f" {m}: {len(f)} writes ({len(f) / span:.0f}/s over {span:.1f} s), batches/write p50 "
              f"{pct([e[2] for e in w], 50)} max {max(e[2] for e in w)}, entries/write p50 {pct([e[3] for e in w], 50)} "
              f"max {max(e[3] for e in w)}")
        print(row("  write+fdatasync", [e[2] for e in f]))
        print(row("  batch waited for the writer", [e[4] for e in w]))
    print("\ngroup process loops:")
    for m, mev in members.items():
        loops = [e for e in mev if e[0] == "L"]
        if not loops:
            continue
        busy = sum(e[3] for e in loops)
        span = (loops[-1][1] - loops[0][1])
        print(f" {m}: {len(loops)} loops, busy {100 * busy / max(1, span):.0f} % of the time, messages/loop p50 "
              f"{pct([e[2] for e in loops], 50)} max {max(e[2] for e in loops)}, mailbox left p99 "
              f"{pct([e[4] for e in loops], 99)} max {max(e[4] for e in loops)}")
        print(row("  loop duration", [e[3] for e in loops]))
        cpu = {e[1]: e for e in mev if e[0] == "U"}
        long = [(l, cpu[l[1]]) for l in loops if l[3] > 5e6 and l[1] in cpu]
        if long:
            wall = sum(l[3] for l, _ in long)
            print(f"  loops over 5 ms: {len(long)}, {ms(wall):.0f} ms in all, of it on a CPU {ms(sum(u[2] for _, u in long)):.0f}"
                  f" ms; preempted {sum(u[3] for _, u in long)} times, blocked {sum(u[4] for _, u in long)} times")
        gaps = [b[1] - (a[1] + a[3]) for a, b in zip(loops, loops[1:])]
        print(row("  idle between loops", gaps))


if __name__ == "__main__":
    main()
