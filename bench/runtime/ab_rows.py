"""Two cnode option sets against each other on bench_runtime's request/response rows, without the BEAM's run in
between (whose own figures move 90-210 us from run to run and take the ratios with them).

usage: CNODE_BIN_DIR=build/bin flock /work/.bench.lock python3 bench/runtime/ab_rows.py PAIRS "ARGS A" "ARGS B"
Each pair starts a fresh t (start_cnode: --threads 2, then ARGS) and the driver a, once with A and once with B, in
alternating order (A B, B A, ...), and prints: GenServer.call p50 and p99 (1 caller, 20 000 calls) and t's CPU per
call, :erpc.call (5 000) and t's CPU per call, the echoed stream's messages/s (100 000), and the load. Not a timed
test: a tool to tell a change from the noise.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runtime as br  # noqa: E402

harness = br.harness


def one(extra):
    c = harness.Cluster()
    try:
        c.epmd()
        tp = br.start_cnode(c, sname="t", extra=extra)
        a = c.elixir("a")
        a.eval(f"Process.put(:t, :\"{tp.node}\"); true = Node.connect(Process.get(:t)); :ok")
        a.eval("; ".join(line.strip() for line in br.LOOPS.strip().splitlines()))
        tpid = br.proc_pid(tp.p.pid)
        out = {}
        c0 = br.cpu_seconds(tpid)
        p50, p99 = a.eval("RB.lat(Process.get(:t), 20000) |> Tuple.to_list() |> Enum.join(\" \")",
                          timeout=600).strip('"').split()
        out["lat_cpu"] = (br.cpu_seconds(tpid) - c0) * 1e6 / 20200
        out["p50"], out["p99"] = float(p50), float(p99)
        c0 = br.cpu_seconds(tpid)
        out["erpc"] = float(a.eval("RB.erpc(Process.get(:t), 5000)", timeout=600))
        out["erpc_cpu"] = (br.cpu_seconds(tpid) - c0) * 1e6 / 5100
        out["stream"] = float(a.eval("RB.stream(Process.get(:t), 100000)", timeout=600))
        return out
    finally:
        c.close()


def main():
    pairs = int(sys.argv[1])
    variants = [("A", sys.argv[2].split()), ("B", sys.argv[3].split())]
    print(f"A = {sys.argv[2]!r}, B = {sys.argv[3]!r}")
    for i in range(pairs):
        for name, extra in (variants if i % 2 == 0 else variants[::-1]):
            r = one(extra)
            print(f"{name} call p50 {r['p50']:.1f} p99 {r['p99']:.1f} us, CPU {r['lat_cpu']:.1f} us/call | "
                  f"erpc {r['erpc']:.1f} us, CPU {r['erpc_cpu']:.1f} us/call | stream {r['stream']:,.0f}/s | "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
