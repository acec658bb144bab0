"""Runtime benchmark (`./scripts/bench runtime [SIZE]`): cnode against a BEAM (Elixir) node in its place, driven by
the same Elixir node a, in one run on loopback, with the physical floor (raw loopback TCP, tcp_floor) measured in the
same run. The target t runs an `echo` process: GenServer.call({:echo, t}, x) returns x, send({:echo, t}, {pid, x})
sends x back, anything else is dropped (cnode's built-in echo; on the BEAM the same loop compiled on t).

  call p50/p99     GenServer.call({:echo, t}, i) one after another, 1 caller: latency percentiles
  calls/s x64      64 concurrent callers doing the same
  oneway           a sends N small 3-tuples to {:echo, t} (integers only / with atoms), then one call: messages/s
  stream           N messages {self(), i} sent at once, until the last answer is back: messages/s
  10 MiB call      GenServer.call with a 10 MiB binary: MB/s counted both ways, against raw TCP bandwidth
  erpc             :erpc.call(t, :erlang, :node, []) one after another
  t<->t            a process on t floods N messages to a process on a second node of the same kind: messages/s
  memory           idle RSS of t; RSS growth per hidden connection (8 cnodes connect to t); per idle process
                   (10 000 processes blocked in receive)

Each row prints the BEAM's figure, cnode's, the ratio (cnode against the BEAM, oriented so that above 1 means
cnode is better for throughputs, and below 1 means cnode is better for latencies), and the goal of issue 14.
The first cnode column runs with --threads 2 (what integration/cnode/cnode_node.py starts every cnode with; the
executable's own default is 1 on a machine of 2 cores or fewer). SIZE (default 1) multiplies the counts:
`scripts/bench runtime 5` for a longer run. CNODE_BENCH_THREADS=1 adds a run of cnode with --threads 1; CNODE_BENCH_ARGS="--dist-atom-cache" passes more options to every cnode.

CNODE_BENCH_CPU=1 adds a second table: t's CPU time (user + system, every thread, from /proc) per operation of each
row, which a loaded machine moves far less than the rates (a rate shrinks when t waits for a core; its CPU per
message does not). The BEAM t then runs with scheduler busy-waiting off (+sbwt none +sbwtdcpu none +sbwtdio none),
so that its CPU figure counts its work and not its schedulers' spinning; that can cost the BEAM some latency, so the
first table of such a run is not the like-for-like one.

CNODE_BENCH_ROWS=big,p50 (or `--rows big,p50` on this script's command line) measures only those rows (the keys:
p50 (with p99), conc, oneway, oneway_atoms, stream, big, erpc, t2t, memory (idle_rss, per_conn, per_proc)); the
BEAM, cnode and the TCP floor are still all measured in the same run.
"""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "..", "integration", "lib"), os.path.join(HERE, "..", "..", "integration",
                                                                                   "cnode")]
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

# What cnode has built in (echo, cnode:bench_sink/2, cnode:bench_flood/3), compiled on a BEAM t.
BEAM_T = ('defmodule Echo do def start, do: (Process.register(self(), :echo); loop()); '
          'defp loop do receive do {:"$gen_call", from, x} -> GenServer.reply(from, x); loop(); '
          '{pid, x} when is_pid(pid) -> send(pid, x); loop(); _ -> loop() end end end; '
          'defmodule Bench do '
          'def sink(owner, n), do: spawn(fn -> take(n); send(owner, {:sink_done, self()}) end); '
          'defp take(0), do: :ok; defp take(n), do: (receive do _ -> take(n - 1) end); '
          'def flood(dest, n, msg), do: (spawn(fn -> for _ <- 1..n, do: send(dest, msg) end); :ok); '
          'def probes(n), do: (for _ <- 1..n, do: spawn(fn -> receive do _ -> :ok end end)); length(Process.list()) '
          'end')

# Compiled on a, so that the loops cost what they cost in an application, not what erl_eval costs.
LOOPS = r'''
defmodule RB do
  defp now, do: System.monotonic_time(:nanosecond)
  def lat(t, n) do
    e = {:echo, t}
    for i <- 1..200, do: ^i = GenServer.call(e, i)
    s = (for i <- 1..n do t0 = now(); ^i = GenServer.call(e, i); now() - t0 end) |> Enum.sort() |> List.to_tuple()
    {elem(s, div(n, 2)) / 1000, elem(s, div(n * 99, 100)) / 1000}
  end
  def conc(t, callers, n) do
    e = {:echo, t}; me = self(); t0 = now()
    for _ <- 1..callers, do: spawn_link(fn -> for i <- 1..n, do: ^i = GenServer.call(e, i); send(me, :done) end)
    for _ <- 1..callers, do: (receive do :done -> :ok end)
    callers * n * 1.0e9 / (now() - t0)
  end
  def oneway(t, n, atoms) do
    e = {:echo, t}; t0 = now()
    if atoms, do: (for i <- 1..n, do: send(e, {:hello, :world, i})), else: (for i <- 1..n, do: send(e, {1, 2, i}))
    :ok = GenServer.call(e, :ok, 60_000)
    n * 1.0e9 / (now() - t0)
  end
  def stream(t, n) do
    e = {:echo, t}; t0 = now()
    for i <- 1..n, do: send(e, {self(), i})
    wait(1, n)
    n * 1.0e9 / (now() - t0)
  end
  defp wait(i, n) when i > n, do: :ok
  defp wait(i, n), do: (receive do ^i -> wait(i + 1, n) end)
  def big(t, n) do
    e = {:echo, t}; b = :binary.copy(<<7>>, 10 * 1024 * 1024)
    10_485_760 = byte_size(GenServer.call(e, b, 60_000))
    t0 = now()
    for _ <- 1..n, do: 10_485_760 = byte_size(GenServer.call(e, b, 60_000))
    2 * n * 10.48576 * 1.0e9 / (now() - t0)
  end
  def erpc(t, n) do
    for _ <- 1..100, do: :erpc.call(t, :erlang, :node, [])
    t0 = now()
    for _ <- 1..n, do: :erpc.call(t, :erlang, :node, [])
    (now() - t0) / n / 1000
  end
  def t2t(t1, t2, mod, n) do
    me = self()
    run = fn k ->
      sink = :erpc.call(t2, mod, if(mod == :cnode, do: :bench_sink, else: :sink), [me, k])
      t0 = now()
      :ok = :erpc.call(t1, mod, if(mod == :cnode, do: :bench_flood, else: :flood), [sink, k, {:hello, 1, "abc"}])
      receive do {:sink_done, ^sink} -> :ok after 120_000 -> raise "sink timeout" end
      k * 1.0e9 / (now() - t0)
    end
    run.(1000)
    run.(n)
  end
end
:ok
'''


def proc_pid(pid):
    """pid, or the beam.smp below it."""
    for _ in range(4):
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        if "beam" in name or name == "cnode":
            return pid
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        if not kids:
            break
        pid = int(kids[0])
    raise RuntimeError(f"no beam or cnode process under {pid}")


def rss_kib(pid):
    """VmRSS of pid, or of the beam.smp below it (elixir is a script that starts erl)."""
    with open(f"/proc/{proc_pid(pid)}/status") as f:
        return int(re.search(r"^VmRSS:\s*(\d+)", f.read(), re.M).group(1))


def settle_rss(pid):
    """RSS once it has stopped moving (a few samples 0.2 s apart)."""
    last = rss_kib(pid)
    for _ in range(10):
        time.sleep(0.2)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


def cpu_seconds(pid):
    """User + system CPU time of every thread of pid, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (whole process)


def floor(size):
    tf = harness.bin_path("tcp_floor")
    rtt = subprocess.run([tf, "rtt", str(20000 * size)], capture_output=True, text=True, check=True).stdout.split()
    bw = subprocess.run([tf, "bw", str(2000)], capture_output=True, text=True, check=True).stdout.split()
    return {"rtt_p50": float(rtt[1]), "rtt_p99": float(rtt[2]), "bw": float(bw[1])}


ROWS = None  # None: every row; else the set of row keys to measure


def want(*keys):
    return ROWS is None or any(k in ROWS for k in keys)


def run(kind, size, threads=None):
    c = harness.Cluster()
    try:
        c.epmd()
        extra = ["--threads", threads] if threads else []
        extra += os.environ.get("CNODE_BENCH_ARGS", "").split()  # e.g. CNODE_BENCH_ARGS=--dist-atom-cache
        if kind == "cnode":
            tp = start_cnode(c, sname="t", extra=extra)
            t2 = start_cnode(c, sname="t2", extra=extra).node
        else:
            args = ["--erl", "+sbwt none +sbwtdcpu none +sbwtdio none"] if os.environ.get("CNODE_BENCH_CPU") else []
            tp = c.elixir("t", args=args)
            t2 = c.elixir("t2", args=args).node
        t = tp.node
        a = c.elixir("a")
        a.eval(f"Process.put(:t, :\"{t}\"); Process.put(:t2, :\"{t2}\"); true = Node.connect(Process.get(:t)); "
               "true = Node.connect(Process.get(:t2)); :ok")
        if kind == "beam":
            code = BEAM_T.replace("\\", "\\\\").replace('"', '\\"')
            for node in ("t", "t2"):
                a.eval(f":erpc.call(Process.get(:{node}), Code, :eval_string, [\"{code}\"]); "
                       f"Node.spawn(Process.get(:{node}), Echo, :start, []); :ok")
                harness.wait_until(lambda: a.eval(f":erpc.call(Process.get(:{node}), Process, :whereis, [:echo]) "
                                                  "|> is_pid()") == "true", 10, "the echo process")
        a.eval("; ".join(line.strip() for line in LOOPS.strip().splitlines()))  # the harness evaluates one line
        out = {}
        tpid = proc_pid(tp.p.pid)
        if want("memory", "idle_rss", "per_conn", "per_proc"):
            memory(c, a, tp, kind, out)
        measure(a, kind, tpid, size, out)
        return out
    finally:
        c.close()


def memory(c, a, tp, kind, out):
    out["idle_rss"] = settle_rss(tp.p.pid) / 1024
    # Memory first, on a fresh node (after the floods, freed memory is reused): per connection (hidden cnodes
    # connecting to t), then per idle process.
    before = settle_rss(tp.p.pid)
    conns = 8
    for i in range(conns):
        h = start_cnode(c, sname=f"h{i}", hidden=True)
        a.eval(f"true = :erpc.call(:\"{h.node}\", :net_kernel, :connect_node, [Process.get(:t)]); :ok")
    out["per_conn"] = (settle_rss(tp.p.pid) - before) / conns
    nproc = 10000
    before = settle_rss(tp.p.pid)
    if kind == "cnode":
        a.eval(f"for _ <- 1..{nproc}, do: :erpc.call(Process.get(:t), :cnode, :spawn_probe, [self()]); :ok",
               timeout=600)
    else:
        a.eval(f":erpc.call(Process.get(:t), Bench, :probes, [{nproc}])", timeout=600)
    out["per_proc"] = (settle_rss(tp.p.pid) - before) * 1024 / nproc


def measure(a, kind, tpid, size, out):
    def timed(key, expr, ops):
        """a.eval(expr), with t's CPU microseconds per operation (ops of them) as out["cpu_" + key]."""
        c0 = cpu_seconds(tpid)
        r = a.eval(expr, timeout=600)
        out["cpu_" + key] = (cpu_seconds(tpid) - c0) * 1e6 / ops
        return r

    n = 20000 * size
    if want("p50", "p99", "lat"):
        p50, p99 = timed("lat", f"RB.lat(Process.get(:t), {n}) |> Tuple.to_list() |> Enum.join(\" \")",
                         n + 200).strip('"').split()
        out["p50"], out["p99"] = float(p50), float(p99)
    if want("conc"):
        out["conc"] = float(timed("conc", f"RB.conc(Process.get(:t), 64, {300 * size})", 64 * 300 * size))
    n = 100000 * size
    if want("oneway"):
        out["oneway"] = float(timed("oneway", f"RB.oneway(Process.get(:t), {n}, false)", n))
    if want("oneway_atoms"):
        out["oneway_atoms"] = float(timed("oneway_atoms", f"RB.oneway(Process.get(:t), {n}, true)", n))
    if want("stream"):
        out["stream"] = float(timed("stream", f"RB.stream(Process.get(:t), {n})", n))
    if want("big"):
        out["big"] = float(timed("big", f"RB.big(Process.get(:t), {10 * size})", 10 * size + 1))
    if want("erpc"):
        out["erpc"] = float(timed("erpc", f"RB.erpc(Process.get(:t), {5000 * size})", 5000 * size + 100))
    if want("t2t"):
        mod = ":cnode" if kind == "cnode" else "Bench"
        out["t2t"] = float(a.eval(f"RB.t2t(Process.get(:t), Process.get(:t2), {mod}, {200000 * size})",
                                  timeout=600))


def main():
    global ROWS
    args = sys.argv[1:]
    rows_arg = os.environ.get("CNODE_BENCH_ROWS")
    if "--rows" in args:
        i = args.index("--rows")
        rows_arg = args[i + 1]
        del args[i:i + 2]
    if rows_arg:
        ROWS = set(rows_arg.split(","))
    size = int(args[0]) if args else 1
    fl = floor(size)
    beam = run("beam", size)
    runs = [("cnode --threads 2", run("cnode", size))]  # start_cnode's default (integration/cnode/cnode_node.py)
    if os.environ.get("CNODE_BENCH_THREADS"):
        runs.append((f"cnode --threads {os.environ['CNODE_BENCH_THREADS']}",
                     run("cnode", size, os.environ["CNODE_BENCH_THREADS"])))
    fl2 = floor(size)  # the floor again after the runs: the machine's load may have moved
    rtt = min(fl["rtt_p50"], fl2["rtt_p50"])
    bw = max(fl["bw"], fl2["bw"])
    print(f"runtime (size {size}): raw loopback TCP round trip p50 {rtt:.1f} us, p99 "
          f"{min(fl['rtt_p99'], fl2['rtt_p99']):.1f} us; raw loopback TCP bandwidth {bw:.0f} MB/s")
    # key, label, unit, higher is better, goal text, goal test (ratio, cnode figure)
    rows = [
        ("p50", "GenServer.call p50, 1 caller", "us", False, "<=0.7x BEAM, <=2x TCP RTT",
         lambda r, v: r <= 0.7 and v <= 2 * rtt),
        ("p99", "GenServer.call p99, 1 caller", "us", False, "<=0.9x BEAM", lambda r, v: r <= 0.9),
        ("conc", "calls/s, 64 callers", "/s", True, ">=1.2x BEAM", lambda r, v: r >= 1.2),
        ("oneway", "one-way msgs/s, no atoms", "/s", True, ">=1.2x BEAM", lambda r, v: r >= 1.2),
        ("oneway_atoms", "one-way msgs/s, atoms", "/s", True, ">=1.2x BEAM", lambda r, v: r >= 1.2),
        ("stream", "echoed stream msgs/s", "/s", True, ">=1.2x BEAM", lambda r, v: r >= 1.2),
        ("big", "10 MiB GenServer.call MB/s", "MB/s", True, ">=0.5x TCP bw",
         lambda r, v: v >= 0.5 * bw),
        ("erpc", ":erpc.call round trip", "us", False, "<=0.7x BEAM", lambda r, v: r <= 0.7),
        ("t2t", "node->node msgs/s (same kind)", "/s", True, ">=3x BEAM<->BEAM", lambda r, v: r >= 3),
        ("idle_rss", "idle RSS", "MB", False, "<=10 MB", lambda r, v: v <= 10),
        ("per_conn", "RSS per connection", "KiB", False, "<=64 KB", lambda r, v: v <= 64),
        ("per_proc", "RSS per idle process", "B", False, "<=1 KB", lambda r, v: v <= 1024),
    ]
    hdr = "".join(f" | {name} | ratio | goal met" for name, _ in runs)
    print(f"| | BEAM{hdr} | goal |")
    print("| --- | --- |" + " --- | --- | --- |" * len(runs) + " --- |")
    for key, label, unit, higher, goal, ok in rows:
        if key not in beam:
            continue
        cells = []
        for _, r in runs:
            ratio = r[key] / beam[key] if beam[key] else float("inf")
            cells.append(f" | {r[key]:,.1f} {unit} | {ratio:.2f} | {'yes' if ok(ratio, r[key]) else 'no'}")
        print(f"| {label} | {beam[key]:,.1f} {unit}{''.join(cells)} | {goal} |")
    print("ratio = cnode / BEAM (throughputs: above 1 is faster; latencies and memory: below 1 is better)")
    if os.environ.get("CNODE_BENCH_CPU"):
        cpu_rows = [("lat", "GenServer.call, 1 caller"), ("conc", "GenServer.call, 64 callers"),
                    ("oneway", "one-way message, no atoms"), ("oneway_atoms", "one-way message, atoms"),
                    ("stream", "echoed stream message"), ("big", "10 MiB GenServer.call"), ("erpc", ":erpc.call")]
        print()
        print("t's CPU per operation (user + system, all threads), microseconds:")
        print(f"| | BEAM{''.join(f' | {name} | ratio' for name, _ in runs)} |")
        print("| --- | --- |" + " --- | --- |" * len(runs))
        for key, label in cpu_rows:
            if "cpu_" + key not in beam:
                continue
            b = beam["cpu_" + key]
            cells = "".join(f" | {r['cpu_' + key]:,.2f} | {r['cpu_' + key] / b if b else float('inf'):.2f}"
                            for _, r in runs)
            print(f"| {label} | {b:,.2f}{cells} |")
        print("ratio = cnode / BEAM (below 1: cnode spends less CPU per operation); the BEAM ran without busy-waiting")


if __name__ == "__main__":
    main()
