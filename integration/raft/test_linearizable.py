"""The Raft KV service under faults, checked for linearizability: three cnode members, concurrent Elixir clients
doing a random mix of put/get/cas/incr/delete on a few keys through every member, while the leader is paused
(SIGSTOP, then SIGCONT: a paused leader must not serve a stale read when it resumes), cut off schism-style
(integration/lib/schism.py: wrong cookies both ways and a disconnect, over erpc), and killed with -9. Two modes:
in memory (the killed leader is not restarted), and with --data-dir on every member (the leader and a follower
each killed with -9 and restarted from its directory while the clients run, then every member killed at once and
restarted). The recorded history (client-side monotonic timestamps) must be linearizable
(integration/lib/linearizability.py), and no acknowledged increment of a counter may be lost.

CNODE_SEED=N replays the clients' choices (the seed is printed); CNODE_LIN_OPS=N sets the number of client
requests (default 2400); CNODE_LIN_CLIENTS=N the number of client processes (8); CNODE_LIN_MODE memory, durable or
both (default). scripts/raft-check runs it in rounds with larger sizes."""
import collections
import os
import random
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cnode"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import harness  # noqa: E402
import linearizability  # noqa: E402
import schism  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

SEED = int(os.environ.get("CNODE_SEED") or random.randrange(1 << 31))
OPS = int(os.environ.get("CNODE_LIN_OPS", "2400"))
CLIENTS = int(os.environ.get("CNODE_LIN_CLIENTS", "8"))
MODE = os.environ.get("CNODE_LIN_MODE", "both")  # memory, durable or both
KEYS = 4
RAFT = ["--raft-election-ms", "300", "--raft-heartbeat-ms", "50", "--raft-request-timeout-ms", "2000"]


def log(msg):
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Group:
    def __init__(self, c, data_dir=None):
        """data_dir: each member gets --data-dir DATA_DIR/<name> (durable; restartable from it), else in memory."""
        self.c = c
        self.data_dir = data_dir
        c.epmd()
        self.names = {f"kv{i}@{harness.HOST}": f"kv{i}" for i in range(1, 4)}
        self.procs = {m: self.start(m) for m in self.names}
        self.live = list(self.procs)
        # Hidden, as schism.py asks of its driver: a visible one's :global would take the cut for overlapping
        # partitions and disconnect every member (OTP 25's prevent_overlapping_partitions).
        self.ex = c.elixir("client", hidden=True)
        self.ex.eval(f'Code.require_file("{os.path.join(HERE, "lin_client.exs")}"); :ok')

    def start(self, member):
        s = self.names[member]
        members = ",".join(f"{n}@{harness.HOST}" for n in self.names.values())
        extra = ["--raft-group", f"kv={members}"] + RAFT
        if self.data_dir:
            # Small snapshots: restarts recover from a snapshot plus a log, and a member that was down long enough
            # is caught up by snapshot.
            extra += ["--data-dir", os.path.join(self.data_dir, s), "--raft-snapshot-entries", "300"]
        return start_cnode(self.c, s, extra=extra)

    def restart(self, member):
        """Start a member that was killed again from its directory; the clients call it again."""
        self.procs[member] = self.start(member)
        if member not in self.live:
            self.live.append(member)
        self.ex.eval(f"LinClient.set_members({self.atoms(self.live)})")

    def atoms(self, nodes):
        return "[" + ", ".join(f':"{n}"' for n in nodes) + "]"

    def leader(self, among=None):
        out = self.ex.eval(f"LinClient.leader({self.atoms(among or self.live)}) |> to_string()")
        name = out.strip('"')
        return name if name else None

    def wait_leader(self, among=None, other_than=None, timeout=20):
        def found():
            l = self.leader(among)
            return l if l and l != other_than else None
        return harness.wait_until(found, timeout, f"a leader other than {other_than}" if other_than else "a leader")

    def progress(self):
        done, finished = self.ex.eval("LinClient.progress() |> Tuple.to_list() |> Enum.join(\" \")").strip('"').split()
        return int(done), int(finished)

    def wait_progress(self, n, timeout=120):
        harness.wait_until(lambda: self.progress()[0] >= n, timeout, f"{n} recorded operations")

    def record(self, member, request):
        return self.ex.eval(f'LinClient.record(:"{member}", {request})', timeout=20)

    def role_of(self, member):
        return self.ex.eval(f'try do s = GenServer.call({{:kv, :"{member}"}}, :status, 500); '
                            f'{{s.role, to_string(s.leader)}} catch :exit, _ -> nil end')

    def signal(self, member, sig):
        os.kill(self.procs[member].p.pid, sig)

    def partition_supported(self):
        """Whether cnode takes erlang:set_cookie/2 and erlang:disconnect_node/1 over erpc (a harmless probe)."""
        m = self.live[0]
        out = self.ex.eval(f'try do :erpc.call(:"{m}", :erlang, :set_cookie, [:"nobody@nowhere", :probe]); '
                           f':erpc.call(:"{m}", :erlang, :disconnect_node, [:"nobody@nowhere"]); :yes '
                           f'catch :error, {{:exception, :undef, _}} -> :no; c, r -> {{c, r}} end')
        return out == ":yes", out


def pause_leader(g, keys):
    """SIGSTOP the leader; a new leader takes a write of every key; then reads of every key are sent to the paused
    leader, and it is resumed (SIGCONT). Those reads began after the writes had completed: answering them from the
    state it had when it was paused is a stale read, which the checker finds."""
    old = g.wait_leader()
    g.signal(old, signal.SIGSTOP)
    try:
        log(f"SIGSTOP {old} (leader)")
        others = [m for m in g.live if m != old]
        new = g.wait_leader(among=others, other_than=old)
        acked = sum(g.record(new, f"{{:put, {k}, {-1000 - k}}}") == ":ok" for k in range(keys))
        assert acked > 0, "no write acknowledged by the new leader"
        log(f"{new} leads while {old} is paused; {acked} writes through it")
        sofar = int(g.ex.eval('LinClient.recorded("paused-reader")'))
        for k in range(keys):
            g.ex.eval(f'LinClient.record_async(:"{old}", {{:get, {k}}}, "paused-reader")')
        harness.wait_until(lambda: int(g.ex.eval(f'LinClient.inflight(:"{old}")')) >= keys, 10,
                           f"{keys} reads waiting at {old}")
    finally:
        g.signal(old, signal.SIGCONT)
    log(f"SIGCONT {old} ({g.ex.eval(f'LinClient.inflight(:{chr(34)}{old}{chr(34)})')} requests waiting there)")
    harness.wait_until(lambda: g.role_of(old) == f'{{:follower, "{new}"}}', 20, f"{old} to follow {new}")
    harness.wait_until(lambda: g.ex.eval('LinClient.recorded("paused-reader")') == str(sofar + keys), 30,
                       f"the reads that waited at {old} to be answered")
    log(f"{old} follows {new}; the reads that waited there are answered")


def partition_leader(g):
    ok, probe = g.partition_supported()
    if not ok:
        log(f"SKIP the schism-style partition: cnode does not take erlang:set_cookie/2 and erlang:disconnect_node/1 "
            f"over erpc yet (probe: {probe})")
        return False
    old = g.wait_leader()
    others = [m for m in g.live if m != old]
    log(f"partition: {old} (leader) cut off from {others} (schism-style: wrong cookies both ways, disconnect)")
    split = schism.partition(g.ex, [old], others)
    try:
        new = g.wait_leader(among=others, other_than=old)
        log(f"{new} leads the majority side")
        acked = sum(g.record(new, f"{{:put, {k}, {-2000 - k}}}") == ":ok" for k in range(KEYS))
        assert acked > 0, "no write acknowledged by the majority side"
        # Reads of every key sent to the cut-off leader after those writes: its old state would be stale.
        sofar = int(g.ex.eval('LinClient.recorded("cut-off-reader")'))
        for k in range(KEYS):
            g.ex.eval(f'LinClient.record_async(:"{old}", {{:get, {k}}}, "cut-off-reader")')
        # The cut-off leader steps down (check-quorum) and cannot commit: what it is asked now is refused or waits.
        harness.wait_until(lambda: (lambda r: r != "nil" and not r.startswith("{:leader"))(g.role_of(old)),
                           20, f"{old} to step down")
        harness.wait_until(lambda: g.ex.eval(f'LinClient.recorded("cut-off-reader")') == str(sofar + KEYS), 30,
                           f"the reads sent to {old} while cut off to be answered")
    finally:
        split.heal()
    log("partition healed (cookies restored, pairs connected)")
    harness.wait_until(lambda: g.role_of(old) == f'{{:follower, "{new}"}}', 30, f"{old} to follow {new}")
    return True


def kill_leader(g):
    old = g.wait_leader()
    g.procs[old].kill9()
    g.live.remove(old)
    g.ex.eval(f"LinClient.set_members({g.atoms(g.live)})")
    log(f"kill -9 {old} (leader; not restarted)")
    new = g.wait_leader(other_than=old)
    log(f"{new} leads {g.live}")


def check_counter(ops):
    """No acknowledged increment lost, none applied twice: the replies of acknowledged increments of :counter are
    distinct, and its final value lies between their number and that plus the unknown ones."""
    incrs = [o for o in ops if o.key == "counter" and o.f == "incr"]
    acked = [o for o in incrs if o.outcome == "ok"]
    unknown = len(incrs) - len(acked)
    replies = [o.result[1] for o in acked]
    dup = [v for v, n in collections.Counter(replies).items() if n > 1]
    assert not dup, f"increments answered with the same value: {dup[:10]}"
    finals = [o for o in ops if o.key == "counter" and o.f == "get" and o.client == "final" and o.outcome == "ok"]
    assert finals, "no final read of the counter"
    for o in finals:
        v = o.result[1] if o.result != "not_found" else 0
        assert len(acked) <= v <= len(acked) + unknown, \
            f"counter {v}: {len(acked)} increments acknowledged, {unknown} unknown"
        if replies:
            assert v >= max(replies), f"counter {v} below an acknowledged reply {max(replies)}"
    return len(acked), unknown, finals[0].result


def kill_and_restart(g, which):
    """kill -9 the leader or a follower while the clients run; the others go on (a new leader if it was the
    leader); then it is restarted from its --data-dir and must rejoin (following the leader)."""
    lead = g.wait_leader()
    victim = lead if which == "leader" else next(m for m in g.live if m != lead)
    g.procs[victim].kill9()
    g.live.remove(victim)
    g.ex.eval(f"LinClient.set_members({g.atoms(g.live)})")
    log(f"kill -9 {victim} ({which})")
    new = g.wait_leader(other_than=victim if which == "leader" else None)
    g.wait_progress(g.progress()[0] + OPS * 5 // 100)
    g.restart(victim)
    harness.wait_until(lambda: (lambda r: r and r.startswith("{:follower") and '""' not in r)(g.role_of(victim)),
                       30, f"{victim} to rejoin")
    log(f"{victim} restarted from its directory; {new} led meanwhile; now {g.role_of(victim)}")


def kill_all_and_restart(g):
    """Every member killed with -9 at once, the requests under way included, and restarted from its directory:
    a write acknowledged before the kill must be there afterwards (it was fsynced on a majority before its ack)."""
    g.ex.eval("LinClient.hold(true)")
    try:
        for m in list(g.live):
            g.procs[m].kill9()
        log(f"kill -9 every member {g.live} (the clients hold new requests)")
        for m in list(g.procs):
            g.restart(m)
        new = g.wait_leader()
        log(f"every member restarted from its directory; {new} leads")
    finally:
        g.ex.eval("LinClient.hold(false)")


def check_history(c, g, t0, seq_after, what):
    took = time.monotonic() - t0
    after = int(g.ex.eval(f"LinClient.acked_since({seq_after}, [:put, :cas, :incr, :delete])"))
    assert after > 0, f"no write acknowledged after {what}"
    # Final linearizable reads of every key through each live member, part of the history.
    for m in g.live:
        for k in list(range(KEYS)) + [":counter"]:
            g.ex.eval(f'LinClient.record(:"{m}", {{:get, {k}}}, "final")', timeout=20)
    path = os.path.join(c.tmp, "history.json")
    n = int(g.ex.eval(f'LinClient.dump("{path}")'))
    ops = linearizability.load(path)
    assert len(ops) == n
    outcomes = collections.Counter(o.outcome for o in ops)
    kinds = collections.Counter(o.f for o in ops if o.outcome == "ok")
    log(f"{n} operations in {took:.1f}s ({n / took:.0f}/s): {dict(outcomes)}; acknowledged: {dict(kinds)}; "
        f"{after} writes acknowledged after {what}")
    res = linearizability.check(ops, timeout=120)
    log(res.explain().splitlines()[0] + ("" if res.ok else f" (history: {path}, times in ns since the clients started)"))
    assert res.ok, res.explain() + f"\nhistory: {path}; replay: CNODE_SEED={SEED} CNODE_LIN_OPS={OPS}"
    acked, unknown, final = check_counter(ops)
    log(f"counter: {acked} increments acknowledged, {unknown} unknown, final {final}")
    for f in ("put", "get", "cas", "incr", "delete"):
        assert kinds[f] > 0, f"no acknowledged {f} in the history"
    os.remove(path)  # kept only when the test fails


def start_clients(g):
    g.wait_leader()
    g.ex.eval(f"LinClient.start({g.atoms(g.live)}, clients: {CLIENTS}, keys: {KEYS}, seed: {SEED}, "
              f"call_timeout: 5_000)")
    return time.monotonic()


def finish_clients(g, fraction=20):
    g.wait_progress(max(OPS, g.progress()[0] + OPS * fraction // 100), timeout=300)
    g.ex.eval("LinClient.stop()")
    harness.wait_until(lambda: g.progress()[1] == CLIENTS, 30, "the clients to finish")


def test_history_under_faults(c):
    if MODE not in ("memory", "both"):
        return log(f"SKIP (CNODE_LIN_MODE={MODE})")
    print(f"  CNODE_SEED={SEED} CNODE_LIN_OPS={OPS} CNODE_LIN_CLIENTS={CLIENTS} (in memory)", flush=True)
    g = Group(c)
    t0 = start_clients(g)
    # Each fault once the clients have made a share of the requests; the rest after the last one.
    # The leader paused three times: whether it hears of the new term before it reads the requests that waited
    # is up to the order it reads its connections in, so one pause finds a stale read only now and then.
    for _ in range(3):
        g.wait_progress(g.progress()[0] + OPS * 10 // 100)
        pause_leader(g, KEYS)
    g.wait_progress(g.progress()[0] + OPS * 20 // 100)
    partitioned = partition_leader(g)
    g.wait_progress(g.progress()[0] + OPS * 20 // 100)
    kill_leader(g)
    seq_after_kill = int(g.ex.eval("LinClient.seq()"))
    finish_clients(g)
    check_history(c, g, t0, seq_after_kill, "the kill" + ("" if partitioned else "; partition skipped"))


def test_history_under_faults_durable(c):
    """The same with --data-dir on every member: the leader and a follower each killed with -9 and restarted from
    its directory while the clients run, the leader paused and cut off, then every member killed at once and
    restarted; nothing acknowledged may be lost."""
    if MODE not in ("durable", "both"):
        return log(f"SKIP (CNODE_LIN_MODE={MODE})")
    print(f"  CNODE_SEED={SEED} CNODE_LIN_OPS={OPS} CNODE_LIN_CLIENTS={CLIENTS} (--data-dir)", flush=True)
    g = Group(c, data_dir=tempfile.mkdtemp(prefix="raft-lin-", dir=c.tmp))
    t0 = start_clients(g)
    for _ in range(2):
        g.wait_progress(g.progress()[0] + OPS * 10 // 100)
        pause_leader(g, KEYS)
    g.wait_progress(g.progress()[0] + OPS * 10 // 100)
    kill_and_restart(g, "leader")
    g.wait_progress(g.progress()[0] + OPS * 10 // 100)
    partition_leader(g)
    g.wait_progress(g.progress()[0] + OPS * 10 // 100)
    kill_and_restart(g, "follower")
    g.wait_progress(g.progress()[0] + OPS * 10 // 100)
    kill_all_and_restart(g)
    seq_after = int(g.ex.eval("LinClient.seq()"))
    finish_clients(g, fraction=10)
    check_history(c, g, t0, seq_after, "every member was restarted")


if __name__ == "__main__":
    harness.main(globals())
