"""Hardening (issue 15): --max-mailbox N kills a process whose mailbox holds more than N messages (reason killed),
or with --max-mailbox-action log logs it once and lets it live. Live: cnode, a real epmd, a real Elixir node that
keeps cnode's probe busy (a {:sleep, Ms} call) and floods it."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import elixir_with_cn, lines_with, metrics, start_http_cnode  # noqa: E402

MAX = 1000
SLEEP_MS = 2000


def busy_probe(ex):
    """A probe on cnode, monitored from here, busy for SLEEP_MS in a call sent by this very process (so that the
    flood that follows lands behind it, in order)."""
    assert ex.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:p, p); "
                   "Process.put(:mon, Process.monitor(p)); "
                   f"send(p, {{:\"$gen_call\", {{self(), make_ref()}}, {{:sleep, {SLEEP_MS}}}}}); is_pid(p)") == "true"


def queue_len(ex):
    out = ex.eval(":erpc.call(Process.get(:cn), :erlang, :process_info, [Process.get(:p), :message_queue_len])")
    return int(re.fullmatch(r"\{:message_queue_len, (\d+)\}", out).group(1))


def flood(ex, n):
    ex.eval(f"Enum.each(1..{n}, fn i -> send(Process.get(:p), {{:flood, i}}) end)")


def test_mailbox_over_the_bound_kills(c):
    c.epmd()
    cn = start_http_cnode(c, extra=["--max-mailbox", str(MAX)])
    ex = elixir_with_cn(c, cn)
    busy_probe(ex)
    flood(ex, 500)
    q1 = queue_len(ex)
    flood(ex, 400)
    q2 = queue_len(ex)
    longest = metrics(cn.http).get("cnode_mailbox_longest")
    print(f"the busy probe's queue: {q1} after 500 sends, {q2} after 900; cnode_mailbox_longest {longest}")
    assert 0 < q1 <= 500 and q1 < q2 <= 900, (q1, q2)
    flood(ex, 4100)  # 5000 in all
    down = ex.eval("r = Process.get(:mon); receive do {:DOWN, ^r, :process, _, why} -> why after 10_000 -> "
                   ":still_alive end")
    line = cn.wait_for_line("over --max-mailbox", timeout=5)
    print(f"after 5000: DOWN {down}; cnode: {line}")
    assert down == ":killed", down
    assert "killing" in line and f"over --max-mailbox {MAX}" in line and f"{MAX + 1} messages" in line, line
    assert len(lines_with(cn, "over --max-mailbox")) == 1, lines_with(cn, "over --max-mailbox")
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :is_process_alive, [Process.get(:p)])") == "false"
    # cnode and its other processes are fine
    assert ex.eval("GenServer.call({:echo, Process.get(:cn)}, :alive)") == ":alive"
    m = metrics(cn.http)
    assert m.get("cnode_mailbox_longest") < MAX, m.text


def test_mailbox_over_the_bound_logs_once(c):
    c.epmd()
    cn = start_http_cnode(c, extra=["--max-mailbox", str(MAX), "--max-mailbox-action", "log"])
    ex = elixir_with_cn(c, cn)
    busy_probe(ex)
    flood(ex, 5000)
    q = queue_len(ex)
    line = cn.wait_for_line("over --max-mailbox", timeout=5)
    print(f"--max-mailbox-action log: queue {q} after 5000 sends; cnode: {line}")
    assert MAX < q <= 5000, q
    assert "killing" not in line and "warning" in line, line
    # the probe lives: once awake it hands every flood message to its owner, the last one too
    got = ex.eval("receive do {:probe, _, {:flood, 5000}} -> :last_one after 15_000 -> :none end", timeout=30)
    assert got == ":last_one", got
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :is_process_alive, [Process.get(:p)])") == "true"
    assert ex.eval("r = Process.get(:mon); receive do {:DOWN, ^r, :process, _, why} -> why after 0 -> :none end") \
        == ":none"
    assert len(lines_with(cn, "over --max-mailbox")) == 1, lines_with(cn, "over --max-mailbox")


harness.main(globals())
