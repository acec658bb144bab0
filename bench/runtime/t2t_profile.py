"""The node->node row of bench_runtime alone, cnode to cnode, with each side's CPU per message and perf on one side.

usage: CNODE_BIN_DIR=build/bin [THREADS=1] [PERF_G="--call-graph dwarf,16384"] python3 bench/runtime/t2t_profile.py \
           N REPS [sender|receiver|none]
Prints the rate of each of REPS floods of N messages ({hello, 1, "abc"}, cnode:bench_flood -> cnode:bench_sink) and
the sender's and receiver's CPU (user + system) per message; with sender/receiver, perf records that node to
/tmp/t2t/SIDE.perf while the floods run. Not a timed test: a tool for profiling the send and receive paths.
"""
import os, sys, subprocess, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runtime as br
harness = br.harness
n = int(sys.argv[1]); reps = int(sys.argv[2]); who = sys.argv[3] if len(sys.argv) > 3 else "none"
c = harness.Cluster()
try:
    c.epmd()
    extra = os.environ.get("CNODE_BENCH_ARGS", "").split()
    if os.environ.get("THREADS"): extra += ["--threads", os.environ["THREADS"]]
    tp = br.start_cnode(c, sname="t", extra=extra)
    t2p = br.start_cnode(c, sname="t2", extra=extra)
    a = c.elixir("a")
    a.eval(f"Process.put(:t, :\"{tp.node}\"); Process.put(:t2, :\"{t2p.node}\"); true = Node.connect(Process.get(:t)); "
           "true = Node.connect(Process.get(:t2)); :ok")
    a.eval("; ".join(l.strip() for l in br.LOOPS.strip().splitlines()))
    a.eval(f"RB.t2t(Process.get(:t), Process.get(:t2), :cnode, 10000)")
    pid = {"sender": tp.p.pid, "receiver": t2p.p.pid}.get(who)
    perf = None
    if pid:
        os.makedirs("/tmp/t2t", exist_ok=True)
        if os.path.exists(f"/tmp/t2t/{who}.perf"):
            os.remove(f"/tmp/t2t/{who}.perf")
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", *os.environ.get("PERF_G", "-g").split(), "-p", str(br.proc_pid(pid)), "-o",
                                 f"/tmp/t2t/{who}.perf"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # perf writes its file's header once it has attached: wait for that (bounded) before the floods start.
        out = f"/tmp/t2t/{who}.perf"
        deadline = time.monotonic() + 10
        while not (os.path.exists(out) and os.path.getsize(out) > 0) and time.monotonic() < deadline:
            time.sleep(0.02)
    cs0, cr0 = br.cpu_seconds(br.proc_pid(tp.p.pid)), br.cpu_seconds(br.proc_pid(t2p.p.pid))
    rates = []
    for _ in range(reps):
        rates.append(float(a.eval(f"RB.t2t(Process.get(:t), Process.get(:t2), :cnode, {n})", timeout=600)))
    cs1, cr1 = br.cpu_seconds(br.proc_pid(tp.p.pid)), br.cpu_seconds(br.proc_pid(t2p.p.pid))
    if perf: perf.send_signal(2); perf.wait()
    tot = n * reps
    print("rates", [round(r) for r in rates], "sender ns/msg %.0f receiver ns/msg %.0f" % ((cs1-cs0)*1e9/tot, (cr1-cr0)*1e9/tot))
finally:
    c.close()
