"""Runs the fault scenarios (issue 16): `scripts/faults [--seed N] [--quick] [--list] [SCENARIO...]`.

Every scenario module is a file scen_*.py next to this one that defines SCENARIOS, a list of Scenario. A scenario is
fn(bed, ctx) -> str: it builds its cluster on the netns.Bed it is given, applies faults, asserts what must hold and
returns what held with its figures (`ctx.rng` is its seeded random source, `ctx.quick` the CI-sized run, `ctx.size`
the --size asked for or None). It fails by
raising; netns.Unsupported (a fault this machine cannot make) reports it as SKIP with the reason. Each scenario gets a
fresh harness.Cluster and Bed, closed (faults undone, processes stopped, namespaces deleted) whatever happens.

One line per scenario on stdout, `PASS name: ...`, `FAIL name: ...` or `SKIP name: ...`; details of a failure
(traceback, the last lines of every node's output) on stderr. Exit 0 only when none failed and one passed.
"""
import argparse
import glob
import importlib
import os
import random
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import netns  # noqa: E402


class Scenario:
    def __init__(self, name, fn, quick=True, doc=""):
        self.name, self.fn, self.quick, self.doc = name, fn, quick, doc or (fn.__doc__ or "").strip().split("\n")[0]


class Ctx:
    def __init__(self, seed, name, quick, size=None):
        self.seed, self.name, self.quick, self.size = seed, name, quick, size
        self.rng = random.Random(f"{seed}/{name}")  # a scenario's draws do not depend on which others run
        self.t0 = time.monotonic()

    def log(self, msg):
        print(f"  [{time.monotonic() - self.t0:6.1f}s {self.name}] {msg}", file=sys.stderr, flush=True)


def scenarios():
    out = []
    for path in sorted(glob.glob(os.path.join(HERE, "scen_*.py"))):
        mod = importlib.import_module(os.path.basename(path)[:-3])
        out += mod.SCENARIOS
    return out


def select(all_scenarios, names, quick):
    if not names:
        return [s for s in all_scenarios if s.quick or not quick]
    chosen = []
    for n in names:
        hit = [s for s in all_scenarios if s.name == n or s.name.startswith(n + ".")]
        if not hit:
            raise SystemExit(f"faults: no scenario {n!r}; known: {', '.join(s.name for s in all_scenarios)}")
        chosen += [s for s in hit if s not in chosen]
    return chosen


def run_one(sc, seed, quick, size=None):
    c = harness.Cluster()
    ctx = Ctx(seed, sc.name, quick, size)
    bed = None
    try:
        bed = netns.Bed(c, ticktime=4)
        held = sc.fn(bed, ctx)
        return "PASS", held, None
    except netns.Unsupported as e:
        return "SKIP", str(e), None
    except Exception as e:
        detail = traceback.format_exc()
        for p in c.procs:
            tail = p.lines[-40:]
            detail += f"--- last {len(tail)} lines of {p.name}:\n" + "\n".join(tail) + "\n"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return "FAIL", first[:400], detail
    finally:
        if bed is not None:
            bed.close()
        c.close()


def main(argv):
    ap = argparse.ArgumentParser(prog="scripts/faults", description="fault scenarios on a network-namespace bed")
    ap.add_argument("--seed", type=int, help="seed of every random choice (random and printed when absent)")
    ap.add_argument("--quick", action="store_true", help="the CI-sized run")
    ap.add_argument("--size", type=int, help="the size of a sized scenario (raft.schedules: schedules, raft.long: "
                    "minutes, overload.burst/frozen: messages; default: its quick or nightly size)")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("scenario", nargs="*", help="names, or prefixes such as pg (default: all)")
    a = ap.parse_args(argv)
    known = scenarios()
    if a.list:
        for s in known:
            print(f"{s.name:20} {'quick' if s.quick else 'long '} {s.doc}")
        return 0
    chosen = select(known, a.scenario, a.quick)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 31)
    again = " ".join(["scripts/faults", "--seed", str(seed)] + (["--quick"] if a.quick else [])
                     + (["--size", str(a.size)] if a.size is not None else []) + a.scenario)
    print(f"faults: seed {seed} ({'quick' if a.quick else 'full'} run of {len(chosen)}); again: {again}", flush=True)
    why = netns.unavailable()
    if why:
        print(f"FAIL bed: network namespaces unavailable: {why}", flush=True)
        print("0 passed, 1 failed", flush=True)
        return 1
    gone = netns.cleanup_stale()
    if gone:
        print(f"faults: deleted {len(gone)} namespaces left by an earlier run", flush=True)
    f = netns.features()
    missing = [f"{k}: {v}" for k, v in f.items() if v]
    try:
        backend = netns.delay_backend()
    except netns.Unsupported as e:
        backend = f"none ({e})"
    print(f"faults: delay by {backend}" + (f"; missing: {'; '.join(missing)}" if missing else ""), flush=True)
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    t_all = time.monotonic()
    for sc in chosen:
        t0 = time.monotonic()
        verdict, text, detail = run_one(sc, seed, a.quick, a.size)
        counts[verdict] += 1
        if detail:
            print(f"--- {sc.name} failed (seed {seed}):\n{detail}", file=sys.stderr, flush=True)
        print(f"{verdict} {sc.name}: {text} [{time.monotonic() - t0:.0f}s]", flush=True)
    leftover = [ns for ns in netns.namespaces() if ns.startswith(f"{netns.PREFIX}{os.getpid()}-")]
    if leftover:
        counts["FAIL"] += 1
        print(f"FAIL cleanup: namespaces left behind: {' '.join(leftover)}", flush=True)
    print(f"faults: {time.monotonic() - t_all:.0f}s; reproduce with: {again}", flush=True)
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", flush=True)
    return 1 if counts["FAIL"] or not counts["PASS"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
