"""Raft benchmark: three cnode members of a `--raft-group` against three BEAM nodes running `ra` 2.2 (from Debian's
rabbitmq-server package) with a KV map as its state machine (bench/raft/raft_bench.erl), on this machine, in the
same run, one after the other.

Workload, from one Erlang driver node: 1, 16 and 64 concurrent callers, each making one request after the other,
256-byte values, keys {caller, 0..63}:
  put    cnode: gen_server:call({kv, Leader}, {put, K, V})  (GenServer.call from Elixir is the same call)
         ra:    ra:process_command({kvbench, Leader}, {put, K, V})
  get    linearizable reads: cnode {get, K} (ReadIndex); ra:consistent_query({kvbench, Leader}, Fun)
Figures: requests/s, p50 and p99 latency; then the ratios cnode/ra (requests/s: above 1 is cnode faster; p99:
below 1 is cnode better).

ra writes its WAL with fsync on (wal_sync_method datasync) in a temporary directory on disk. cnode is given a
`--data-dir` in one when `cnode --help` lists the option; until then its group is in memory and the table says so.

ra missing: the script installs the rabbitmq-server package (root), with a /usr/sbin/policy-rc.d that exits 101 in
place first so that the package starts no broker and no EPMD daemon; ra, aten, gen_batch_server and seshat are then
taken from /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/.

    CNODE_BIN_DIR=build/bin python3 bench/raft/bench_raft.py [--seconds S] [--callers 1,16,64] [--ops put,get]
        [--only cnode|ra] [--perf DIR] [--trace DIR] [--cnode-args "--raft-snapshot-entries N ..."]
(scripts/bench raft builds cnode and runs it.) --perf DIR records each cnode member's CPU time during the cnode
figures (`perf record -e cpu-clock -g`, one DIR/kvN.data per member; `perf report -i DIR/kv1.data` to read it).
"""
import argparse
import signal
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "..", "integration", "lib"), os.path.join(HERE, "..", "..", "integration",
                                                                                   "cnode")]
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

RA_APPS = ("ra", "aten", "gen_batch_server", "seshat")
POLICY = "/usr/sbin/policy-rc.d"
POLICY_DENY = "#!/bin/sh\n# written by cnode's bench/raft/bench_raft.py: no service starts during apt-get install\nexit 101\n"


def _policy_denies():
    if not os.access(POLICY, os.X_OK):
        return False
    return subprocess.run([POLICY, "rabbitmq-server", "start"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 101


def install_rabbitmq():
    """apt-get install rabbitmq-server with every service start refused (policy-rc.d exiting 101); an existing
    policy-rc.d that already refuses is kept, any other is put back afterwards."""
    if os.geteuid() != 0:
        raise SystemExit("bench_raft: ra is not installed; run as root to install Debian's rabbitmq-server, or "
                         "install it yourself (with service starts disabled)")
    wrote, saved = False, None
    if not _policy_denies():
        if os.path.exists(POLICY):
            saved = open(POLICY, "rb").read()
        with open(POLICY, "w") as f:
            f.write(POLICY_DENY)
        os.chmod(POLICY, 0o755)
        wrote = True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        print("bench_raft: installing rabbitmq-server for ra (service starts refused by policy-rc.d)", flush=True)
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "rabbitmq-server"]
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    finally:
        if wrote and saved is not None:
            with open(POLICY, "wb") as f:
                f.write(saved)
        elif wrote:
            os.remove(POLICY)


def ra_code_paths(tmp):
    """The ebin directories of ra and its dependencies: plugin directories as they are, .ez archives unpacked."""
    plugins = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"))
    if not plugins:
        install_rabbitmq()
        plugins = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"))
    if not plugins:
        raise SystemExit("bench_raft: no /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins after installing")
    paths, versions = [], {}
    for app in RA_APPS:
        found = sorted(glob.glob(os.path.join(plugins[-1], f"{app}-*")))
        if not found:
            raise SystemExit(f"bench_raft: {app} not found in {plugins[-1]}")
        p = found[-1]
        name = os.path.basename(p)
        if p.endswith(".ez"):
            with zipfile.ZipFile(p) as z:
                z.extractall(tmp)
            name = name[:-3]
            p = os.path.join(tmp, name)
        paths.append(os.path.join(p, "ebin"))
        versions[app] = name[len(app) + 1:]
    return paths, versions


def parse(out):
    m = re.fullmatch(r"\{(\d+),(\d+),(\d+),(\d+),(\d+)\}", out.replace(" ", ""))
    if not m:
        raise AssertionError(f"unexpected result {out}")
    rate, p50, p99, errors, n = map(int, m.groups())
    return {"rate": rate, "p50": p50, "p99": p99, "errors": errors, "n": n}


def measure(driver, kind, target, callers, seconds, trace=None):
    warm = min(1000, int(seconds * 1000) // 4)
    calls = f'"{os.path.join(trace, f"driver-{kind}-{callers}.calls")}"' if trace else "none"
    out = driver.eval(f"raft_bench:run({kind}, {target}, {callers}, {int(seconds * 1000)}, {warm}, {calls})",
                      timeout=seconds + 60)
    return parse(out)


def driver_node(c, ebin, paths):
    return c.erl("driver", args=["-pa", ebin] + sum((["-pa", p] for p in paths), []))


def bench_cnode(ebin, paths, callers, seconds, data_dir, ops=("put", "get"), perf=None, more_args=(), trace=None):
    c = harness.Cluster()
    try:
        c.epmd()
        names = [f"kv{i}" for i in range(1, 4)]
        procs = []
        members = ",".join(f"{s}@{harness.HOST}" for s in names)
        nodes = []
        for s in names:
            extra = ["--raft-group", f"kv={members}"] + list(more_args)
            if data_dir:
                d = os.path.join(c.tmp, s)
                os.makedirs(d, exist_ok=True)
                extra += ["--data-dir", d]
            procs.append(start_cnode(c, s, extra=extra))
            nodes.append(procs[-1].node)
        d = driver_node(c, ebin, paths)
        atoms = "[" + ",".join(f"'{n}'" for n in nodes) + "]"

        def leader():
            out = d.eval(f"lists:usort([catch maps:get(leader, gen_server:call({{kv, N}}, status, 1000)) "
                         f"|| N <- {atoms}])")
            m = re.fullmatch(r"\['?([\w@]+)'?\]", out)
            return m.group(1) if m and m.group(1) not in ("nil", "undefined") else None

        lead = harness.wait_until(leader, 30, "a cnode leader")
        recorders = []
        if perf:
            os.makedirs(perf, exist_ok=True)
            for s, p in zip(names, procs):
                out = os.path.join(perf, f"{s}{'-leader' if lead.startswith(s + '@') else ''}.data")
                # BENCH_PERF_CALLGRAPH=dwarf: call graphs through code built without frame pointers
                cg = os.environ.get("BENCH_PERF_CALLGRAPH")
                argv = ["perf", "record", "-q", "-e", "cpu-clock"] + (["--call-graph", cg] if cg else ["-g"])
                recorders.append(subprocess.Popen(argv + ["-p", str(p.p.pid), "-o", out], stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL))
        res = {}
        try:
            for op in ops:
                for n in callers:
                    res[(op, n)] = measure(d, f"cnode_{op}", f"'{lead}'", n, seconds, trace)
                    print(f"  cnode {op} x{n}: {fmt(res[(op, n)])}", flush=True)
        finally:
            for r in recorders:
                r.send_signal(signal.SIGINT)
                r.wait(timeout=60)
        return res, lead
    finally:
        c.close()


def bench_ra(ebin, paths, callers, seconds, ops=("put", "get")):
    c = harness.Cluster()
    try:
        c.epmd()
        args = ["-pa", ebin] + sum((["-pa", p] for p in paths), [])
        ras = [c.erl(f"ra{i}", args=args) for i in range(1, 4)]
        sync = set()
        for r in ras:
            d = os.path.join(c.tmp, r.node.split("@")[0])
            os.makedirs(d, exist_ok=True)
            out = r.eval(f'raft_bench:start_ra("{d}")')
            sync.add(out)
        atoms = "[" + ",".join(f"'{r.node}'" for r in ras) + "]"
        assert ras[0].eval(f"raft_bench:start_cluster({atoms})") == "3"
        d = driver_node(c, ebin, paths)
        lead = harness.wait_until(lambda: (lambda o: o if o != "none" else None)(
            d.eval(f"raft_bench:ra_leader('{ras[0].node}')")), 30, "a ra leader")
        res = {}
        for op in ops:
            for n in callers:
                res[(op, n)] = measure(d, f"ra_{op}", f"{{kvbench, {lead}}}", n, seconds)
                print(f"  ra {op} x{n}: {fmt(res[(op, n)])}", flush=True)
        return res, lead, sorted(sync)
    finally:
        c.close()


def fmt(r):
    return f"{r['rate']}/s p50 {r['p50'] / 1000:.2f} ms p99 {r['p99'] / 1000:.2f} ms ({r['errors']} errors)"


def cnode_has_data_dir():
    out = subprocess.run([harness.bin_path("cnode"), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True).stdout
    return "--data-dir" in out


def main():
    ap = argparse.ArgumentParser(description="cnode's Raft KV against ra 2.2")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per figure (default 5)")
    ap.add_argument("--callers", default="1,16,64", help="concurrent callers, comma-separated (default 1,16,64)")
    ap.add_argument("--ops", default="put,get", help="put, get or both (default put,get)")
    ap.add_argument("--only", choices=("cnode", "ra"), help="run one side only (no ratios)")
    ap.add_argument("--perf", metavar="DIR", help="perf record -e cpu-clock -g each cnode member into DIR")
    ap.add_argument("--trace", metavar="DIR", help="cnode members write their timelines into DIR (--raft-trace; "
                    "read them with bench/raft/trace_report.py DIR)")
    ap.add_argument("--cnode-args", default="", help="more options for each cnode member (e.g. \"--raft-snapshot-entries 100000\")")
    a = ap.parse_args()
    callers = [int(x) for x in a.callers.split(",")]
    if a.trace:
        a.trace = os.path.abspath(a.trace)
        os.makedirs(a.trace, exist_ok=True)
    ops = [x for x in a.ops.split(",") if x]
    tmp = tempfile.mkdtemp(prefix="bench-raft-")
    try:
        paths, versions = ra_code_paths(tmp)
        ebin = os.path.join(tmp, "ebin")
        os.makedirs(ebin)
        subprocess.run(["erlc", "-pa", paths[0], "-o", ebin, os.path.join(HERE, "raft_bench.erl")], check=True)
        data_dir = cnode_has_data_dir()
        durable = "--data-dir, fsync on" if data_dir else "IN MEMORY: cnode has no fsync until --data-dir lands"
        print(f"bench_raft: 3 cnode members ({durable}) vs 3 BEAM nodes with ra {versions['ra']} "
              f"(aten {versions['aten']}, gen_batch_server {versions['gen_batch_server']}, seshat {versions['seshat']}; "
              f"WAL on disk, fsync on); {a.seconds:g} s per figure, 256-byte values", flush=True)
        cn, cn_lead = bench_cnode(ebin, paths, callers, a.seconds, data_dir, ops, a.perf,
                                           a.cnode_args.split() + (["--raft-trace", a.trace] if a.trace else []), a.trace) if a.only != "ra" else ({}, "-")
        ra, ra_lead, sync = bench_ra(ebin, paths, callers, a.seconds, ops) if a.only != "cnode" else ({}, "-", [])
        if a.only:
            return
        print(f"\nleaders: cnode {cn_lead}, ra {ra_lead}; ra's WAL: {', '.join(sync)}")
        if not data_dir:
            print("NOTE: cnode ran IN MEMORY (no --data-dir yet, so no fsync); ra fsyncs every WAL batch. The write "
                  "figures are not like for like until --data-dir lands.")
        head = (f"{'op':<5}{'callers':>8} | {'cnode/s':>9}{'p50 ms':>8}{'p99 ms':>8} | {'ra/s':>9}{'p50 ms':>8}"
                f"{'p99 ms':>8} | {'rate x':>7}{'p99 x':>7}")
        print("\n" + head + "\n" + "-" * len(head))
        for op in ops:
            for n in callers:
                x, y = cn[(op, n)], ra[(op, n)]
                rate = x["rate"] / y["rate"] if y["rate"] else float("inf")
                p99 = x["p99"] / y["p99"] if y["p99"] else float("inf")
                print(f"{op:<5}{n:>8} | {x['rate']:>9}{x['p50'] / 1000:>8.2f}{x['p99'] / 1000:>8.2f} | "
                      f"{y['rate']:>9}{y['p50'] / 1000:>8.2f}{y['p99'] / 1000:>8.2f} | {rate:>7.2f}{p99:>7.2f}")
        errs = sum(r["errors"] for r in cn.values()), sum(r["errors"] for r in ra.values())
        print(f"\nrate x: cnode requests/s over ra's (above 1: cnode faster); p99 x: cnode's p99 over ra's (below 1: "
              f"cnode better). Errors: cnode {errs[0]}, ra {errs[1]}. put = writes, get = linearizable reads.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
