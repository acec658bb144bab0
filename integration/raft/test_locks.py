"""The Raft KV service's locks, fencing tokens and watches, against three cnode members from an Elixir client:
contention, unlock, put_fenced, expiry on the leader's clock, the owner's death, and both surviving a change of
leader (a new leader monitors the owners again from the replicated state); watches on any member; the leader
registered in :global as {:raft_leader, group}."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from test_kv import group, leader  # noqa: E402


def call(ex, node, req, timeout=5000):
    return ex.eval(f"GenServer.call({{:kv, :\"{node}\"}}, {req}, {timeout})")


def token(reply):
    m = re.fullmatch(r"\{:ok, (\d+)\}", reply)
    assert m, reply
    return int(m.group(1))


# An Elixir process that takes a lock and holds it until told {:stop, reason}; its reply is kept in the
# dictionary of the evaluating process under the given key.
def holder(ex, key, node, name, ttl):
    ex.eval(f"me = self(); p = spawn(fn -> r = GenServer.call({{:kv, :\"{node}\"}}, {{:lock, {name}, {ttl}}}, 10_000); "
            f"send(me, {{:got, r}}); receive do {{:stop, why}} -> exit(why) end end); "
            f"r = receive do {{:got, r}} -> r after 10_000 -> :timeout end; Process.put({key}, {{p, r}}); :ok")
    return ex.eval(f"elem(Process.get({key}), 1)")


def test_contention_unlock_and_fencing(c):
    nodes, ex = group(c)
    harness.wait_until(lambda: leader(ex), 15, "a leader")
    n1, n2, n3 = (p.node for p in nodes)
    t1 = token(holder(ex, ":h1", n2, ":res", 60_000))
    # Another process (this one) meets the lock held, on every member.
    for n in (n1, n2, n3):
        assert call(ex, n, "{:lock, :res, 1000}") == "{:error, :held}"
    assert call(ex, n3, f"{{:unlock, :res, {t1 + 1000}}}") == "{:error, :not_held}"
    assert call(ex, n1, f"{{:put_fenced, :guarded, 1, {{:res, {t1}}}}}") == ":ok"
    assert call(ex, n3, f"{{:unlock, :res, {t1}}}") == ":ok"
    # The ex-holder's token is stale now: its write is refused, the value stays.
    assert call(ex, n2, f"{{:put_fenced, :guarded, 2, {{:res, {t1}}}}}") == "{:error, :stale_token}"
    assert call(ex, n2, "{:get, :guarded}") == "{:ok, 1}"
    t2 = token(call(ex, n1, "{:lock, :res, 60000}"))
    assert t2 > t1  # tokens strictly increase over every grant
    t3 = token(call(ex, n1, "{:lock, :other, 60000}"))
    assert t3 > t2
    assert call(ex, n1, "{:lock, :bad, 0}") == "{:error, :badarg}"
    assert call(ex, n1, "{:unlock, :res}") == "{:error, :badarg}"


def test_expiry_and_owner_death(c):
    nodes, ex = group(c)
    harness.wait_until(lambda: leader(ex), 15, "a leader")
    n1, n2, _ = (p.node for p in nodes)
    t = token(holder(ex, ":h", n1, ":ttl", 700))
    assert call(ex, n2, "{:lock, :ttl, 60000}") == "{:error, :held}"
    # The ttl runs out on the leader's clock although the owner lives: the lock is free again, the token stale.
    harness.wait_until(lambda: call(ex, n2, "{:lock, :ttl, 60000}").startswith("{:ok,"), 10, "the ttl to expire")
    assert call(ex, n1, f"{{:put_fenced, :x, 1, {{:ttl, {t}}}}}") == "{:error, :stale_token}"
    # An owner that dies loses the lock at once (monitored), whatever its ttl.
    token(holder(ex, ":d", n2, ":owned", 600_000))
    assert call(ex, n1, "{:lock, :owned, 1000}") == "{:error, :held}"
    ex.eval("send(elem(Process.get(:d), 0), {:stop, :crash}); :ok")
    harness.wait_until(lambda: call(ex, n1, "{:lock, :owned, 60000}").startswith("{:ok,"), 10, "the release")


def test_locks_survive_a_change_of_leader(c):
    nodes, ex = group(c)
    lead = harness.wait_until(lambda: leader(ex), 15, "a leader")
    others = [p.node for p in nodes if p.node != lead]
    token(holder(ex, ":h", others[0], ":owned", 600_000))
    token(holder(ex, ":t", others[0], ":timed", 2500))
    next(p for p in nodes if p.node == lead).kill9()
    ex.eval(f"Process.put(:m, Process.get(:m) -- [:\"{lead}\"])")
    harness.wait_until(lambda: (lambda l: l if l and l != lead else None)(leader(ex)), 15, "a new leader")
    assert call(ex, others[1], "{:lock, :owned, 1000}") == "{:error, :held}"
    # The new leader watches the owner again: its death frees the lock.
    ex.eval("send(elem(Process.get(:h), 0), {:stop, :normal}); :ok")
    harness.wait_until(lambda: call(ex, others[1], "{:lock, :owned, 60000}").startswith("{:ok,"), 10,
                       "the release by the new leader")
    # And it runs the ttl again (at most a full ttl from its election): the timed lock goes too.
    harness.wait_until(lambda: call(ex, others[1], "{:lock, :timed, 60000}").startswith("{:ok,"), 15,
                       "the timed lock to expire under the new leader")


def test_watches_and_the_global_leader_name(c):
    nodes, ex = group(c)
    lead = harness.wait_until(lambda: leader(ex), 15, "a leader")
    follower = next(p.node for p in nodes if p.node != lead)
    ref = ex.eval(f"{{:ok, r}} = GenServer.call({{:kv, :\"{follower}\"}}, {{:watch, :w}}); Process.put(:ref, r); "
                  "is_reference(r)")
    assert ref == "true"
    assert call(ex, lead, "{:put, :w, 1}") == ":ok"
    assert call(ex, lead, "{:put, :other, 1}") == ":ok"
    assert call(ex, follower, "{:incr, :w, 2}") == "{:ok, 3}"
    assert call(ex, lead, "{:delete, :w}") == ":ok"
    got = ex.eval("r = Process.get(:ref); for _ <- 1..3, do: (receive do {:kv_event, ^r, k, v} -> {k, v} "
                  "after 5000 -> :none end)")
    assert got == "[w: {:ok, 1}, w: {:ok, 3}, w: :not_found]", got  # in commit order, only for the watched key
    assert call(ex, follower, "{:unwatch, Process.get(:ref)}") == ":ok"
    assert call(ex, lead, "{:put, :w, 9}") == ":ok"
    assert ex.eval("receive do {:kv_event, _, _, _} -> :more after 500 -> :none end") == ":none"
    # The leader is found through :global.
    harness.wait_until(lambda: ex.eval("case :global.whereis_name({:raft_leader, :kv}) do "
                                       ":undefined -> nil; p -> node(p) end") == f":\"{lead}\"" or
                       ex.eval("case :global.whereis_name({:raft_leader, :kv}) do :undefined -> nil; "
                               "p -> node(p) end") == f":{lead}", 10, "the leader in :global")


if __name__ == "__main__":
    harness.main(globals())
