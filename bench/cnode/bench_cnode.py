"""Runtime benchmark: round trips and a message stream from an Elixir node a to the target t, which is cnode (with
its default threads, and with --threads 1) or an Elixir node in the same place, measured in the same run on
loopback. t runs an `echo` process: GenServer.call({:echo, t}, x) returns x and send({:echo, t}, {pid, x}) sends x
back (cnode's built-in echo; on the BEAM an equivalent process).

  erpc           :erpc.call(t, :erlang, :node, []) one after another (a process spawned on t per call)
  call           GenServer.call({:echo, t}, i) one after another
  stream         N messages {self(), i} to {:echo, t} sent at once, until the last answer is back

Prints microseconds per round trip (per message for the stream) and the ratio cnode / BEAM (below 1: cnode is
faster).
    CNODE_BIN_DIR=build/bin python3 bench/cnode/bench_cnode.py [ROUND_TRIPS [STREAM]]
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "..", "integration", "lib"), os.path.join(HERE, "..", "..", "integration",
                                                                                   "cnode")]
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

# The BEAM's echo, compiled on t like cnode's is compiled C++.
BEAM_ECHO = ('defmodule Echo do def start, do: (Process.register(self(), :echo); loop()); '
             'defp loop do receive do {:"$gen_call", from, x} -> GenServer.reply(from, x); loop(); '
             '{pid, x} when is_pid(pid) -> send(pid, x); loop() end end end')


# Compiled on a, so that the loops cost what they cost in an application, not what erl_eval costs.
LOOPS = ("defmodule BenchLoops do "
         "def erpc(t, n), do: time(fn -> for _ <- 1..n, do: :erpc.call(t, :erlang, :node, []) end) / n; "
         "def call(t, n), do: time(fn -> for i <- 1..n, do: ^i = GenServer.call({:echo, t}, i) end) / n; "
         "def stream(t, n) do e = {:echo, t}; "
         "time(fn -> for i <- 1..n, do: send(e, {self(), i}); wait(1, n) end) / n end; "
         "defp wait(i, n) when i > n, do: :ok; "
         "defp wait(i, n), do: (receive do ^i -> wait(i + 1, n) end); "
         "defp time(f) do t0 = System.monotonic_time(:microsecond); f.(); "
         "System.monotonic_time(:microsecond) - t0 end end; :ok")


def start_beam_echo(a):
    """Compiles and starts the BEAM's echo on the node a keeps as Process.get(:t)."""
    code = BEAM_ECHO.replace("\\", "\\\\").replace('"', '\\"')
    a.eval(f":erpc.call(Process.get(:t), Code, :eval_string, [\"{code}\"]); "
           "Node.spawn(Process.get(:t), Echo, :start, []); :ok")
    harness.wait_until(lambda: a.eval(":erpc.call(Process.get(:t), Process, :whereis, [:echo]) |> is_pid()")
                       == "true", 10, "the echo process")


def run(kind, rounds, stream, threads=None):
    c = harness.Cluster()
    try:
        c.epmd()
        if kind == "cnode":
            t = start_cnode(c, sname="t", extra=["--threads", threads] if threads else []).node
        else:
            t = c.elixir("t").node
        a = c.elixir("a")
        a.eval(f"Process.put(:t, :\"{t}\"); true = Node.connect(Process.get(:t)); :ok")
        if kind == "beam":
            start_beam_echo(a)
        a.eval(LOOPS)
        out = {}
        for k, n in (("erpc", rounds), ("call", rounds), ("stream", stream)):
            out[k] = float(a.eval(f"BenchLoops.{k}(Process.get(:t), {n})", timeout=600))
        return out
    finally:
        c.close()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    stream = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    beam = run("beam", rounds, stream)
    runs = [("cnode", run("cnode", rounds, stream)), ("cnode --threads 1", run("cnode", rounds, stream, "1"))]
    print(f"runtime: {rounds} round trips, a stream of {stream} messages (microseconds; ratio = cnode / BEAM)")
    for k in beam:
        row = "   ".join(f"{name} {r[k]:7.1f} ({r[k] / beam[k]:4.2f})" for name, r in runs)
        print(f"  {k:<7} BEAM {beam[k]:7.1f}   {row}")


if __name__ == "__main__":
    main()
