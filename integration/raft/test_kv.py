"""The Raft KV service (first step, in memory): three cnode members, Elixir clients calling every member with plain
GenServer.call; followers hand calls to the leader; concurrent increments lose nothing; the leader killed with -9
is replaced and what was acknowledged is still there."""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

RAFT = ["--raft-election-ms", "300", "--raft-heartbeat-ms", "50", "--raft-request-timeout-ms", "3000"]


def group(c, n=3):
    c.epmd()
    names = [f"kv{i}" for i in range(1, n + 1)]
    members = ",".join(f"{s}@{harness.HOST}" for s in names)
    nodes = [start_cnode(c, s, extra=["--raft-group", f"kv={members}"] + RAFT) for s in names]
    ex = c.elixir("client")
    ex.eval("Process.put(:m, [" + ", ".join(f":\"{p.node}\"" for p in nodes) + "])")
    return nodes, ex


def leader(ex):
    """The leader every live member agrees on, as an atom text, or None."""
    out = ex.eval("Process.get(:m) |> Enum.map(fn n -> try do GenServer.call({:kv, n}, :status, 500) catch "
                  ":exit, _ -> nil end end) |> Enum.filter(& &1) |> Enum.map(& &1.leader) |> Enum.uniq() |> inspect()")
    found = re.findall(r':"?([\w@]+)"?', out)
    return found[0] if out.count(",") == 0 and found and found[0] != "nil" else None


def test_every_request_on_every_member(c):
    nodes, ex = group(c)
    harness.wait_until(lambda: leader(ex), 15, "a leader")
    for i, p in enumerate(nodes):
        assert ex.eval(f"GenServer.call({{:kv, :\"{p.node}\"}}, {{:put, {{:k, {i}}}, \"v{i}\"}})") == ":ok"
    for p in nodes:
        got = ex.eval(f"for i <- 0..2, do: GenServer.call({{:kv, :\"{p.node}\"}}, {{:get, {{:k, i}}}})")
        assert got == '[ok: "v0", ok: "v1", ok: "v2"]', got
    n1, n2, n3 = (p.node for p in nodes)
    assert ex.eval(f"GenServer.call({{:kv, :\"{n1}\"}}, {{:get, :missing}})") == ":not_found"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n2}\"}}, {{:incr, :c, 5}})") == "{:ok, 5}"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n3}\"}}, {{:incr, :c, -2}})") == "{:ok, 3}"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n1}\"}}, {{:cas, :c, {{:ok, 3}}, 10}})") == ":ok"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n2}\"}}, {{:cas, :c, {{:ok, 3}}, 11}})") == "{:error, {:mismatch, {:ok, 10}}}"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n3}\"}}, {{:cas, :new, :not_found, 1}})") == ":ok"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n1}\"}}, {{:put, :s, \"x\"}})") == ":ok"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n2}\"}}, {{:incr, :s, 1}})") == "{:error, :not_integer}"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n3}\"}}, {{:delete, :s}})") == ":ok"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n1}\"}}, {{:get, :s}})") == ":not_found"
    assert ex.eval(f"GenServer.call({{:kv, :\"{n2}\"}}, :nonsense)") == "{:error, :badarg}"
    # A local read on a follower: the value once applied there.
    harness.wait_until(lambda: ex.eval(f"GenServer.call({{:kv, :\"{n3}\"}}, {{:get, :c, :local}})") == "{:ok, 10}",
                       5, "the local read")
    st = ex.eval(f"s = GenServer.call({{:kv, :\"{n2}\"}}, :status); {{s.role in [:leader, :follower], "
                 "length(s.members), s.commit_index > 0, s.last_applied > 0}")
    assert st == "{true, 3, true, true}", st


def test_concurrent_increments_sum_exactly(c):
    nodes, ex = group(c)
    harness.wait_until(lambda: leader(ex), 15, "a leader")
    # 6 Elixir processes, 50 increments each, spread over the three members.
    out = ex.eval("ms = Process.get(:m); 1..6 |> Enum.map(fn w -> Task.async(fn -> "
                  "for i <- 1..50, do: GenServer.call({:kv, Enum.at(ms, rem(w + i, 3))}, {:incr, :n, 1}, 10_000) end) end) "
                  "|> Enum.flat_map(&Task.await(&1, 60_000)) |> Enum.map(fn {:ok, v} -> v end) |> Enum.sort() "
                  "|> then(&(&1 == Enum.to_list(1..300)))", timeout=90)
    assert out == "true", out  # every reply distinct: no increment lost, none applied twice
    for p in nodes:
        harness.wait_until(lambda p=p: ex.eval(f"GenServer.call({{:kv, :\"{p.node}\"}}, {{:get, :n, :local}})")
                           == "{:ok, 300}", 5, f"300 on {p.node}")


def test_leader_killed_acknowledged_writes_survive(c):
    nodes, ex = group(c)
    lead = harness.wait_until(lambda: leader(ex), 15, "a leader")
    for i in range(20):
        assert ex.eval(f"GenServer.call({{:kv, :\"{lead}\"}}, {{:put, {i}, {i * i}}})") == ":ok"
    victim = next(p for p in nodes if p.node == lead)
    victim.kill9()
    ex.eval(f"Process.put(:m, Process.get(:m) -- [:\"{lead}\"])")
    new = harness.wait_until(lambda: (lambda l: l if l and l != lead else None)(leader(ex)), 15, "a new leader")
    assert new != lead
    for p in nodes:
        if p.node == lead:
            continue
        got = ex.eval(f"for i <- 0..19, do: GenServer.call({{:kv, :\"{p.node}\"}}, {{:get, i}}, 5000)")
        assert got == "[" + ", ".join(f"ok: {i * i}" for i in range(20)) + "]", got
    assert ex.eval(f"GenServer.call({{:kv, :\"{new}\"}}, {{:put, :after, 1}})") == ":ok"
    # With one member of three gone the group still has a majority; a call to the dead member exits as usual.
    assert ex.eval(f"try do GenServer.call({{:kv, :\"{lead}\"}}, :status, 2000) catch :exit, _ -> :exited end") \
        == ":exited"


def test_a_frozen_member_or_client_stalls_nothing(c):
    """A follower frozen with SIGSTOP (and a frozen client node with calls pending) must not slow the group: the
    leader keeps answering the healthy client; its sends to the frozen nodes never suspend it."""
    nodes, ex = group(c)
    lead = harness.wait_until(lambda: leader(ex), 15, "a leader")
    frozen = next(p for p in nodes if p.node != lead)
    slow = c.elixir("slowclient")
    # The slow client watches a key, then freezes: the events it is owed (40 MB below) go far beyond the kernel's
    # socket buffers and the distribution's busy limit.
    assert slow.eval(f"GenServer.call({{:kv, :\"{lead}\"}}, {{:watch, :big}}) |> elem(0)") == ":ok"
    stopped = [frozen.p.pid, slow.p.pid]
    try:
        for pid in stopped:
            os.killpg(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        # (Errors are summed up short: a failed call's message would carry the megabyte value.)
        out = ex.eval(f"try do for i <- 1..40, do: GenServer.call({{:kv, :\"{lead}\"}}, {{:put, :big, "
                      f"String.duplicate(<<rem(i, 256)>>, 1_000_000)}}, 5000); "
                      f"for i <- 1..300, do: GenServer.call({{:kv, :\"{lead}\"}}, {{:put, i, "
                      f"String.duplicate(\"v\", 1000)}}, 5000); :ok catch :exit, {{r, _}} -> {{:exit, r}} end",
                      timeout=60)
        took = time.monotonic() - t0
        assert out == ":ok", out
        print(f"40 puts of 1 MB and 300 of 1 KB with a member and a watching client frozen: {took:.2f} s")
        assert took < 20, took
        assert ex.eval(f"GenServer.call({{:kv, :\"{lead}\"}}, {{:get, 300}})") == '{:ok, "' + "v" * 1000 + '"}'
    finally:
        for pid in stopped:
            try:
                os.killpg(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    # Thawed, the follower catches up.
    harness.wait_until(lambda: ex.eval(f"GenServer.call({{:kv, :\"{frozen.node}\"}}, {{:get, 300, :local}}) "
                                       "|> elem(0)") == ":ok", 20, "the thawed follower to catch up")


if __name__ == "__main__":
    harness.main(globals())
