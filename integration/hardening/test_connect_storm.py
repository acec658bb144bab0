"""Hardening (issue 15): sends to a node that does not exist do not dial it again and again (after a failed
connect: 100 ms, doubling to 4 s), and the failures are logged a few lines at a time. Live: cnode, a real epmd,
a real Elixir node driving cnode's probe process."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import elixir_with_cn, lines_with, metrics, start_http_cnode  # noqa: E402

SECONDS = 6


def test_reconnect_storm_backs_off(c):
    c.epmd()
    cn = start_http_cnode(c)
    ex = elixir_with_cn(c, cn)
    assert ex.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:p, p); "
                   "is_pid(p)") == "true"
    f0 = metrics(cn.http).get("cnode_dist_connect_failures_total") or 0
    # as many sends as the probe takes in SECONDS seconds (at most 200 000), each a call that returns once sent
    out = ex.eval(f"t = System.monotonic_time(:millisecond); "
                  f"n = Stream.repeatedly(fn -> GenServer.call(Process.get(:p), "
                  f"{{:send, {{:some, :\"dead@localhost\"}}, :msg}}) end) |> Stream.take(200_000) "
                  f"|> Stream.take_while(fn _ -> System.monotonic_time(:millisecond) - t < {SECONDS * 1000} end) "
                  f"|> Enum.count(); {{n, System.monotonic_time(:millisecond) - t}}", timeout=60)
    sends, ms = map(int, re.fullmatch(r"\{(\d+), (\d+)\}", out).groups())
    m = metrics(cn.http)
    failures = (m.get("cnode_dist_connect_failures_total") or 0) - f0
    lines = lines_with(cn, "cannot connect to dead@localhost")
    print(f"{sends} sends to dead@localhost in {ms} ms: {failures:.0f} failed connects "
          f"(cnode_dist_connect_failures_total), {len(lines)} 'cannot connect' lines; first: {lines[:1]}")
    assert sends >= 1000, f"only {sends} sends in {ms} ms: sends to an unreachable node wait on its connect"
    # attempts at 0, 0.1, 0.3, 0.7, 1.5, 3.1 s (6.3 s is past the loop): about 6, give or take scheduling
    assert 2 <= failures <= 12, f"{failures} connect attempts in {ms} ms of sends"
    assert 1 <= len(lines) <= 5, lines  # 5 a key per 10 s
    assert len(lines) <= failures, (lines, failures)
    # during the back-off a monitor gets noconnection at once, without a dial
    out = ex.eval("t = System.monotonic_time(:millisecond); "
                  "r = GenServer.call(Process.get(:p), {:monitor, {:some, :\"dead@localhost\"}}); "
                  "receive do {:probe, _, {:DOWN, ^r, :process, _, why}} -> "
                  "{why, System.monotonic_time(:millisecond) - t} after 10_000 -> :no_down end")
    print(f"a monitor of {{:some, :dead@localhost}} during the back-off: {out}")
    why, down_ms = re.fullmatch(r"\{(:\w+), (\d+)\}", out).groups()
    assert why == ":noconnection" and int(down_ms) < 1000, out
    # cnode still talks to the live node, and its probe is alive
    assert ex.eval("GenServer.call({:echo, Process.get(:cn)}, :ok)") == ":ok"
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :is_process_alive, [Process.get(:p)])") == "true"


harness.main(globals())
