"""Unit tests of the linearizability checker (integration/lib/linearizability.py): histories known linearizable
pass, known violations are found, unknown outcomes are open-ended, random small histories agree with a brute-force
search, and a 10 000-operation history is checked in seconds. Plain unittest; CNODE_SEED=N replays the random ones."""
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linearizability import Op, check, op_from_json, same, step  # noqa: E402

SEED = int(os.environ.get("CNODE_SEED", random.randrange(1 << 30)))


def op(client, f, *args, t=(0, 1), r="ok", key="k", outcome="ok"):
    call, ret = t
    return Op(client, key, f, tuple(args), call, ret if outcome == "ok" else None,
              r if outcome == "ok" else None, outcome)


def assert_lin(tc, ops):
    res = check(ops)
    tc.assertTrue(res.ok, res.explain())


def assert_not_lin(tc, ops):
    res = check(ops)
    tc.assertFalse(res.ok, "expected a violation")
    tc.assertFalse(res.timed_out)
    return res


class Linearizable(unittest.TestCase):
    def test_empty_and_sequential(self):
        assert_lin(self, [])
        assert_lin(self, [op(1, "get", t=(0, 1), r="not_found"),
                          op(1, "put", 5, t=(2, 3)),
                          op(1, "get", t=(4, 5), r=("ok", 5)),
                          op(1, "incr", 2, t=(6, 7), r=("ok", 7)),
                          op(1, "cas", ("ok", 7), 8, t=(8, 9)),
                          op(1, "cas", ("ok", 7), 9, t=(10, 11), r=("error", ("mismatch", ("ok", 8)))),
                          op(1, "delete", t=(12, 13)),
                          op(1, "incr", -3, t=(14, 15), r=("ok", -3)),
                          op(1, "put", b"s", t=(16, 17)),
                          op(1, "incr", 1, t=(18, 19), r=("error", "not_integer")),
                          op(1, "cas", "not_found", 1, t=(20, 21), r=("error", ("mismatch", ("ok", b"s")))),
                          op(1, "delete", t=(22, 23)),
                          op(1, "cas", "not_found", 1, t=(24, 25)),
                          op(1, "get", t=(26, 27), r=("ok", 1))])

    def test_concurrent_write_seen_or_not(self):
        # A read overlapping a write may see either value; once one read saw the new value, later ones must too.
        assert_lin(self, [op(1, "put", 1, t=(0, 10)),
                          op(2, "get", t=(1, 2), r="not_found"),
                          op(2, "get", t=(3, 4), r=("ok", 1)),
                          op(3, "get", t=(5, 6), r=("ok", 1))])

    def test_order_is_by_linearization_point_not_call(self):
        # Two overlapping puts; the reads after both settle on the one linearized last — either may be last.
        for last in (1, 2):
            assert_lin(self, [op(1, "put", 1, t=(0, 5)), op(2, "put", 2, t=(1, 4)),
                              op(3, "get", t=(6, 7), r=("ok", last))])

    def test_concurrent_incrs_in_either_order(self):
        assert_lin(self, [op(1, "incr", 1, t=(0, 10), r=("ok", 2)),
                          op(2, "incr", 1, t=(1, 9), r=("ok", 1)),
                          op(3, "get", t=(11, 12), r=("ok", 2))])

    def test_keys_are_independent(self):
        assert_lin(self, [op(1, "put", 1, key="a", t=(0, 1)), op(1, "get", key="b", t=(2, 3), r="not_found"),
                          op(2, "put", 1, key="b", t=(4, 5)), op(2, "get", key="a", t=(6, 7), r=("ok", 1))])

    def test_equal_times_count_as_concurrent(self):
        assert_lin(self, [op(1, "put", 1, t=(0, 5)), op(2, "get", t=(5, 6), r="not_found")])

    def test_terms_compare_exactly(self):
        self.assertFalse(same(1, 1.0))
        self.assertFalse(same("ok", b"ok"))
        self.assertTrue(same(("ok", (1, b"x")), ("ok", (1, b"x"))))
        assert_not_lin(self, [op(1, "put", 1, t=(0, 1)), op(1, "get", t=(2, 3), r=("ok", 1.0))])


class Violations(unittest.TestCase):
    def test_stale_read_after_completed_write(self):
        res = assert_not_lin(self, [op(1, "put", 1, t=(0, 1)), op(1, "put", 2, t=(2, 3)),
                                    op(2, "get", t=(4, 5), r=("ok", 1))])
        self.assertEqual(res.key, "k")
        self.assertIn("NOT linearizable", res.explain())
        self.assertTrue(any(o.f == "get" for o in res.stuck), res.explain())

    def test_stale_read_from_a_paused_leader(self):
        # The old leader's read returns after a newer write completed, yet began after it too.
        assert_not_lin(self, [op(1, "put", 1, t=(0, 1)),
                              op(2, "put", 2, t=(2, 3)),
                              op(3, "get", t=(3.5, 20), r=("ok", 1))])

    def test_lost_write(self):
        assert_not_lin(self, [op(1, "put", 1, t=(0, 1)), op(2, "get", t=(2, 3), r="not_found")])
        assert_not_lin(self, [op(1, "incr", 5, t=(0, 1), r=("ok", 5)), op(2, "get", t=(2, 3), r=("ok", 0))])

    def test_read_goes_back(self):
        assert_not_lin(self, [op(1, "put", 1, t=(0, 10)),
                              op(2, "get", t=(1, 2), r=("ok", 1)),
                              op(3, "get", t=(3, 4), r="not_found")])

    def test_non_monotonic_incr(self):
        # A counter that hands out the same number twice, or goes down.
        assert_not_lin(self, [op(1, "incr", 1, t=(0, 10), r=("ok", 1)), op(2, "incr", 1, t=(1, 9), r=("ok", 1))])
        assert_not_lin(self, [op(1, "incr", 1, t=(0, 1), r=("ok", 1)), op(1, "incr", 1, t=(2, 3), r=("ok", 2)),
                              op(2, "incr", 1, t=(4, 5), r=("ok", 2))])
        assert_not_lin(self, [op(1, "incr", 1, t=(0, 1), r=("ok", 2))])

    def test_cas_anomalies(self):
        # Two concurrent cas from the same expected value both succeeding.
        assert_not_lin(self, [op(1, "cas", "not_found", 1, t=(0, 10)), op(2, "cas", "not_found", 2, t=(1, 9))])
        # A mismatch reporting a value the key never had.
        assert_not_lin(self, [op(1, "put", 1, t=(0, 1)),
                              op(2, "cas", ("ok", 2), 3, t=(2, 3), r=("error", ("mismatch", ("ok", 7))))])
        # A mismatch although the expected value was there.
        assert_not_lin(self, [op(1, "put", 1, t=(0, 1)),
                              op(2, "cas", ("ok", 1), 3, t=(2, 3), r=("error", ("mismatch", ("ok", 1))))])
        # A cas that succeeded but whose new value is never seen.
        assert_not_lin(self, [op(1, "cas", "not_found", 1, t=(0, 1)), op(1, "get", t=(2, 3), r="not_found")])

    def test_incr_type_errors(self):
        assert_not_lin(self, [op(1, "put", b"x", t=(0, 1)), op(1, "incr", 1, t=(2, 3), r=("ok", 1))])
        assert_not_lin(self, [op(1, "incr", 1, t=(0, 1), r=("error", "not_integer"))])

    def test_the_failing_key_is_named(self):
        res = assert_not_lin(self, [op(1, "put", 1, key="a", t=(0, 1)), op(1, "get", key="a", t=(2, 3), r=("ok", 1)),
                                    op(1, "put", 1, key="b", t=(0, 1)), op(1, "get", key="b", t=(2, 3), r=("ok", 2))])
        self.assertEqual(res.key, "b")


class Unknown(unittest.TestCase):
    def test_unknown_write_may_apply_late_or_never(self):
        w = op(1, "put", 1, t=(0, 1), outcome="unknown")
        assert_lin(self, [w, op(2, "get", t=(5, 6), r="not_found")])
        assert_lin(self, [w, op(2, "get", t=(5, 6), r=("ok", 1))])
        # It may take effect long after the client gave up on it...
        assert_lin(self, [w, op(2, "get", t=(5, 6), r="not_found"), op(2, "get", t=(100, 101), r=("ok", 1))])
        # ...but not before its call, and once seen it cannot be unseen.
        assert_not_lin(self, [op(2, "get", t=(0, 1), r=("ok", 1)), op(1, "put", 1, t=(2, 3), outcome="unknown")])
        assert_not_lin(self, [w, op(2, "get", t=(5, 6), r=("ok", 1)), op(2, "get", t=(7, 8), r="not_found")])

    def test_unknown_incr_counts_zero_or_one_time(self):
        u = op(1, "incr", 1, t=(0, 1), outcome="unknown")
        assert_lin(self, [u, op(2, "incr", 1, t=(2, 3), r=("ok", 1))])
        assert_lin(self, [u, op(2, "incr", 1, t=(2, 3), r=("ok", 2))])
        assert_not_lin(self, [u, op(2, "incr", 1, t=(2, 3), r=("ok", 3))])
        assert_not_lin(self, [u, op(2, "incr", 1, t=(2, 3), r=("ok", 2)), op(2, "incr", 1, t=(4, 5), r=("ok", 2))])

    def test_unknown_cas(self):
        u = op(1, "cas", "not_found", 7, t=(0, 1), outcome="unknown")
        assert_lin(self, [u, op(2, "get", t=(2, 3), r=("ok", 7))])
        assert_lin(self, [op(2, "put", 1, t=(0, 0.5)), u, op(2, "get", t=(2, 3), r=("ok", 1))])
        # Its condition was false at every moment after its call: it cannot have written 7.
        assert_not_lin(self, [op(2, "put", 1, t=(0, 0.5)), u, op(2, "get", t=(2, 3), r=("ok", 7))])

    def test_failed_and_unknown_reads_are_dropped(self):
        res = check([op(1, "put", 1, t=(0, 1), outcome="fail"), op(2, "get", t=(2, 3), r="not_found"),
                     op(3, "get", t=(4, 5), outcome="unknown")])
        self.assertTrue(res.ok)
        self.assertEqual(res.ops, 1)

    def test_json_form(self):
        d = {"client": 3, "key": 1, "f": "cas", "args": [{"t": [{"a": "ok"}, {"b": "x"}]}, 5], "call": 10,
             "ret": 20, "result": {"t": [{"a": "error"}, {"t": [{"a": "mismatch"}, {"a": "not_found"}]}]}}
        o = op_from_json(d)
        self.assertEqual(o.args, (("ok", b"x"), 5))
        self.assertEqual(o.result, ("error", ("mismatch", "not_found")))
        self.assertEqual(step(None, o), (True, None))


# --- random histories against a brute-force search ------------------------------------------------------------------

def brute(ops):
    """Every order of the operations that respects real time (a before b when a returned before b was called),
    unknown ones also left out; True if one explains every reply. Over all keys at once, with no memoization."""
    ops = [o for o in ops if o.outcome != "fail"]
    n = len(ops)
    ret = [o.ret if o.outcome == "ok" else float("inf") for o in ops]

    def go(placed, state):
        left = [i for i in range(n) if not placed >> i & 1]
        if all(ops[i].outcome != "ok" for i in left):
            return True
        for i in left:
            if any(ret[j] < ops[i].call for j in left if j != i):
                continue  # some open operation returned before this one was called: it must come first
            ok, new = step(state.get(ops[i].key), ops[i])
            if ok:
                s2 = dict(state)
                s2[ops[i].key] = new
                if go(placed | 1 << i, s2):
                    return True
        return False

    return go(0, {})


VALUES = [1, 2, b"x"]


def random_result(rng, f):
    if f in ("put", "delete"):
        return "ok"
    cur = lambda: rng.choice(["not_found"] + [("ok", v) for v in VALUES + [3, 4]])  # noqa: E731
    if f == "get":
        return cur()
    if f == "cas":
        return "ok" if rng.random() < 0.5 else ("error", ("mismatch", cur()))
    return rng.choice([("ok", rng.randint(-1, 4)), ("error", "not_integer")])


def random_args(rng, f):
    if f == "put":
        return (rng.choice(VALUES),)
    if f == "cas":
        return (rng.choice(["not_found", ("ok", 1), ("ok", 2)]), rng.choice(VALUES))
    if f == "incr":
        return (rng.choice([1, 2, -1]),)
    return ()


def simulate(rng, n_ops, n_clients, keys, unknown_p=0.05, mutate_p=0.0, spread=3.0):
    """A history of a linearizable register system: every operation takes effect at one random moment inside its
    interval (an unknown one also later, or never), and its reply is the one at that moment; with mutate_p, some
    replies are then replaced by random ones."""
    t = [0.0] * n_clients
    pending = []
    for i in range(n_ops):
        c = rng.randrange(n_clients)
        call = t[c] + rng.random()
        ret = call + rng.random() * spread
        t[c] = ret
        f = rng.choice(["put", "get", "get", "cas", "incr", "delete"])
        unknown = rng.random() < unknown_p
        point = rng.uniform(call, ret)
        if unknown and rng.random() < 0.5:
            point = ret + rng.random() * spread * 5 if rng.random() < 0.7 else float("inf")
        pending.append((point, c, rng.choice(keys), f, random_args(rng, f), call, ret, unknown))
    pending.sort(key=lambda p: p[0])
    state, ops = {}, []
    for point, c, key, f, args, call, ret, unknown in pending:
        probe = Op(c, key, f, args, call, ret, None, "unknown")
        if point != float("inf"):
            _, new = step(state.get(key), probe)
            reply = _reply(state.get(key), probe)
            state[key] = new
        else:
            reply = None
        if unknown:
            ops.append(Op(c, key, f, args, call, None, None, "unknown"))
        else:
            if rng.random() < mutate_p:
                reply = random_result(rng, f)
            ops.append(Op(c, key, f, args, call, ret, reply, "ok"))
    rng.shuffle(ops)
    return ops


def _reply(state, op):
    """The register's reply to op in this state."""
    cur = "not_found" if state is None else ("ok", state)
    if op.f in ("put", "delete"):
        return "ok"
    if op.f == "get":
        return cur
    if op.f == "cas":
        return "ok" if same(op.args[0], cur) else ("error", ("mismatch", cur))
    base = 0 if state is None else state
    return ("ok", base + op.args[0]) if type(base) is int else ("error", "not_integer")


class Random(unittest.TestCase):
    def test_simulated_histories_are_linearizable(self):
        rng = random.Random(SEED)
        for _ in range(300):
            ops = simulate(rng, rng.randint(1, 40), rng.randint(1, 5), ["a", "b"])
            res = check(ops)
            self.assertTrue(res.ok, f"CNODE_SEED={SEED}\n" + res.explain())

    def test_agrees_with_brute_force(self):
        rng = random.Random(SEED + 1)
        seen = {True: 0, False: 0}
        for i in range(1500):
            n = rng.randint(1, 7)
            kind = i % 3
            if kind == 0:  # real executions with a few replies falsified
                ops = simulate(rng, n, rng.randint(1, 4), ["a", "b"], unknown_p=0.2, mutate_p=0.3)
            else:  # arbitrary histories
                ops = []
                for _ in range(n):
                    f = rng.choice(["put", "get", "cas", "incr", "delete"])
                    call = rng.randint(0, 10)
                    outcome = rng.choice(["ok"] * 5 + ["unknown", "fail"])
                    ops.append(Op(rng.randrange(3), rng.choice(["a", "b"] if kind == 1 else ["a"]), f,
                                  random_args(rng, f), call, call + rng.randint(0, 6),
                                  random_result(rng, f), outcome))
            want = brute(ops)
            got = check(ops)
            seen[want] += 1
            self.assertEqual(got.ok, want, f"CNODE_SEED={SEED} case {i}:\n" + "\n".join(map(str, ops)))
        # both answers were exercised, plenty of each
        self.assertGreater(seen[True], 200, seen)
        self.assertGreater(seen[False], 200, seen)


def counter_history(rng, n, clients, lost_from, lost_to):
    """n increments by 1 of one counter by clients, then a final read: every call made between lost_from and
    lost_to has an unknown outcome (a crash of every member), half of those never took effect."""
    t, pending = [0.0] * clients, []
    for _ in range(n):
        c = rng.randrange(clients)
        call = t[c] + rng.random() * 0.1
        ret = call + rng.random() * 2
        t[c] = ret
        unknown = lost_from <= call < lost_to
        point = float("inf") if unknown and rng.random() < 0.5 else rng.uniform(call, ret)
        pending.append((point, c, call, ret, unknown))
    pending.sort()
    ops, value = [], 0
    for point, c, call, ret, unknown in pending:
        value += point != float("inf")
        ops.append(Op(c, "counter", "incr", (1,), call, None if unknown else ret,
                      None if unknown else ("ok", value), "unknown" if unknown else "ok"))
    end = max(t) + 1
    return ops + [Op("final", "counter", "get", (), end, end + 1, ("ok", value), "ok")]


class Performance(unittest.TestCase):
    def test_many_unknown_increments_are_decided(self):
        # After every member was killed at once, a hundred increments have no reply: without the symmetry between
        # alike unknown operations the search explored subsets of them and did not finish in 30 s (raft.schedules'
        # counter fallback); now the counter key is decided, and a reply off by one among them still found.
        rng = random.Random(SEED + 3)
        ops = counter_history(rng, 400, 6, 20, 40)
        unknown = sum(1 for o in ops if o.outcome == "unknown")
        t0 = time.monotonic()
        res = check(ops, timeout=60)
        took = time.monotonic() - t0
        print(f"\n  400 increments, {unknown} unknown: {took:.2f}s (CNODE_SEED={SEED})", file=sys.stderr)
        self.assertGreater(unknown, 60)
        self.assertTrue(res.ok, res.explain())
        self.assertLess(took, 20.0)
        acked = [i for i, o in enumerate(ops) if o.f == "incr" and o.outcome == "ok"]
        i = acked[len(acked) // 2]
        o = ops[i]
        bad = list(ops)
        bad[i] = Op(o.client, o.key, o.f, o.args, o.call, o.ret, ("ok", o.result[1] + 200), "ok")
        res = check(bad, timeout=60)
        self.assertFalse(res.ok)
        self.assertFalse(res.timed_out, "the falsified history was undecided")

    def test_alike_unknown_operations_are_not_confused(self):
        # The symmetry holds only between operations both callable: an unknown put called after a read cannot
        # explain it, even though an alike one called before the read could have, had it not been needed later.
        u1 = op(1, "put", 1, t=(0, 1), outcome="unknown")
        u2 = op(2, "put", 1, t=(10, 11), outcome="unknown")
        assert_lin(self, [u1, u2, op(3, "get", t=(5, 6), r=("ok", 1)), op(3, "put", 2, t=(7, 8)),
                          op(3, "get", t=(20, 21), r=("ok", 1))])
        assert_not_lin(self, [u1, u2, op(3, "get", t=(2, 3), r=("ok", 1)), op(3, "put", 2, t=(4, 5)),
                              op(3, "get", t=(6, 7), r=("ok", 1))])
        # two alike unknown increments and replies that need both
        i1, i2 = (op(c, "incr", 1, t=(0, 1), outcome="unknown") for c in (1, 2))
        assert_lin(self, [i1, i2, op(3, "incr", 1, t=(2, 3), r=("ok", 3))])
        assert_not_lin(self, [i1, i2, op(3, "incr", 1, t=(2, 3), r=("ok", 4))])

    def test_ten_thousand_operations_in_seconds(self):
        rng = random.Random(SEED + 2)
        ops = simulate(rng, 10_000, 8, list(range(10)), unknown_p=0.01, spread=2.0)
        t0 = time.monotonic()
        res = check(ops, timeout=60)
        took = time.monotonic() - t0
        print(f"\n  10 000 operations, 10 keys, 8 clients: {took:.2f}s (CNODE_SEED={SEED})", file=sys.stderr)
        self.assertTrue(res.ok, res.explain())
        self.assertEqual(res.ops, sum(1 for o in ops if not (o.f == "get" and o.outcome != "ok")))
        self.assertLess(took, 10.0)
        # and a single falsified read among them is found
        reads = [i for i, o in enumerate(ops) if o.f == "get" and o.outcome == "ok"]
        i = reads[len(reads) // 2]
        bad = list(ops)
        bad[i] = Op(ops[i].client, ops[i].key, "get", (), ops[i].call, ops[i].ret, ("ok", b"never written"), "ok")
        t0 = time.monotonic()
        res = check(bad, timeout=60)
        print(f"  ... with one falsified read: {time.monotonic() - t0:.2f}s", file=sys.stderr)
        self.assertFalse(res.ok)
        self.assertFalse(res.timed_out)
        self.assertEqual(res.key, ops[i].key)


if __name__ == "__main__":
    print(f"CNODE_SEED={SEED}", file=sys.stderr)
    unittest.main()
