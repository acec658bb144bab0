"""TLS distribution benchmark: what TLS costs a connection, with cnode and with a BEAM node at the far end, in the
same run on loopback. An Elixir node a calls t (cnode's built-in echo, or an Elixir node with an echo process), both
plain and both TLS (TLS 1.3, P-256 certificates made by integration/tls/tls_util.py):

  call     GenServer.call({:echo, t}, i) one after another
  stream   N messages {self(), i} sent at once, until the last answer is back
  echo     an 8 MB binary called to t and back, ten times

    CNODE_BIN_DIR=build/bin python3 bench/tls/bench_tls.py [CALLS [STREAM [ROUNDS]]]
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "..", "integration", "lib"), os.path.join(HERE, "..", "..", "integration",
                                                                                   "tls"), os.path.join(HERE, "..", "cnode")]
import harness  # noqa: E402
import tls_util as T  # noqa: E402
from bench_cnode import LOOPS, start_beam_echo  # noqa: E402

BIG = ("b = :crypto.strong_rand_bytes(8_000_000); t0 = System.monotonic_time(:microsecond); "
       "for _ <- 1..10, do: ^b = GenServer.call({:echo, Process.get(:t)}, b, 60_000); "
       "(System.monotonic_time(:microsecond) - t0) / 10")


def run(tls, beam, calls, stream):
    c = harness.Cluster()
    try:
        pki = T.standard_pki(c)
        c.epmd()
        conf = T.beam_optfile(c, pki, "beam")
        if beam:
            t = T.tls_elixir(c, "t", conf) if tls else c.elixir("t")
        else:
            t = T.tls_cnode(c, pki, sname="t") if tls else T.start_cnode(c, sname="t")
        a = T.tls_elixir(c, "a", conf) if tls else c.elixir("a")
        a.eval(f"Process.put(:t, :\"{t.node}\"); true = Node.connect(Process.get(:t)); :ok")
        if beam:
            start_beam_echo(a)
        a.eval(LOOPS)
        return (float(a.eval(f"BenchLoops.call(Process.get(:t), {calls})", timeout=600)),
                float(a.eval(f"BenchLoops.stream(Process.get(:t), {stream})", timeout=600)),
                float(a.eval(BIG, timeout=600)) / 1000)
    finally:
        c.close()


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    stream = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    print(f"TLS distribution: {calls} calls, a stream of {stream}, ten 8 MB echoes (call us, stream us/msg, echo ms)")
    for _ in range(rounds):
        for beam in (False, True):
            for tls in (False, True):
                call, st, big = run(tls, beam, calls, stream)
                print(f"  {'BEAM ' if beam else 'cnode'} {'TLS  ' if tls else 'plain'} call {call:7.1f}   "
                      f"stream {st:5.1f}   echo {big:7.1f}", flush=True)


if __name__ == "__main__":
    main()
