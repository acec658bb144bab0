"""A linearizability checker for histories of the Raft KV service (issue 12), Porcupine-style.

The algorithm is Wing & Gong's search with Lowe's memoization, as Porcupine (github.com/anishathalye/porcupine)
implements it: the history's call and return events in one time-ordered linked list; depth-first, the first call
entries are tried in turn (an operation may be linearized while no earlier-returning operation is still open); a
linearized operation is lifted out of the list, a dead end puts it back; a cache of (set of linearized operations,
model state) prunes every configuration already explored. Beyond Porcupine, a symmetry: unknown operations that are
alike (the same f and args) and both callable are interchangeable — an unknown one's return is at infinity, so once
callable it stays callable — so of those only the earliest called is tried at each step. The unknown ones of a kind
taken then always form a prefix (by call time), not any subset: a counter's many unknown increments after a crash
(2^u subsets) cost u+1 configurations per reply, not an exponential search. Keys are independent registers, so each key's history
is checked on its own (Herlihy & Wing's locality: a history is linearizable iff every key's is).

The model: one register per key, `None` while the key is absent. Replies are the service's, with atoms as Python
strings, tuples as tuples, binaries as bytes:

    put k v        -> 'ok'
    get k          -> ('ok', v) | 'not_found'
    delete k       -> 'ok'
    cas k exp new  -> 'ok' | ('error', ('mismatch', current))     exp and current: ('ok', v) | 'not_found'
    incr k by      -> ('ok', n) | ('error', 'not_integer')         a missing key counts as 0

An operation's outcome is 'ok' (it returned this reply), 'fail' (it certainly did not take effect: dropped) or
'unknown' (no reply, {:error, :unavailable}, an exit: it may have taken effect at any moment after its call, or
never). An unknown operation gets a return time of infinity and any reply, as Knossos's :info and Porcupine's
unknown outputs; an unknown read changes nothing and is dropped.

    from linearizability import Op, check
    r = check(ops)           # ops: [Op(...)]; r.ok, r.key, r.explain()
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Hashable, Optional

INF = math.inf
KINDS = ("put", "get", "delete", "cas", "incr")


@dataclass
class Op:
    client: Any
    key: Hashable
    f: str                      # one of KINDS
    args: tuple                 # put: (v,) get: () delete: () cas: (expected, new) incr: (by,)
    call: float                 # client-side monotonic time of the call
    ret: Optional[float]        # ... of the reply; None when the outcome is unknown
    result: Any = None          # the reply; ignored unless outcome == 'ok'
    outcome: str = "ok"         # 'ok' | 'fail' | 'unknown'

    def __str__(self):
        a = " ".join(_show(x) for x in self.args)
        res = _show(self.result) if self.outcome == "ok" else self.outcome
        ret = "inf" if self.ret is None or self.outcome != "ok" else _num(self.ret)
        return f"[{_num(self.call)}, {ret}] client {self.client}: {self.f} {_show(self.key)} {a} -> {res}".replace("  ", " ")


def _num(t):
    return str(t) if isinstance(t, int) else f"{t:g}"


def _show(x):
    if isinstance(x, tuple):
        return "{" + ", ".join(_show(e) for e in x) + "}"
    if isinstance(x, bytes):
        return '"' + x.decode("utf-8", "replace") + '"'
    if isinstance(x, str):
        return ":" + x
    return repr(x)


def same(a, b):
    """Erlang's =:= on the decoded terms: 1 and 1.0 differ, as do an atom and a binary."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def _as_reply(state):
    return "not_found" if state is None else ("ok", state)


def _is_int(v):
    return type(v) is int


def step(state, op: Op):
    """The register's transition: (the reply is possible from this state, the next state). For an unknown
    outcome every reply is possible."""
    f, r, unknown = op.f, op.result, op.outcome != "ok"
    if f == "put":
        return (unknown or r == "ok"), op.args[0]
    if f == "get":
        return (unknown or same(r, _as_reply(state))), state
    if f == "delete":
        return (unknown or r == "ok"), None
    if f == "cas":
        expected, new = op.args
        if same(expected, _as_reply(state)):
            return (unknown or r == "ok"), new
        return (unknown or same(r, ("error", ("mismatch", _as_reply(state))))), state
    if f == "incr":
        base = 0 if state is None else state
        if not _is_int(base):
            return (unknown or same(r, ("error", "not_integer"))), state
        n = base + op.args[0]
        return (unknown or same(r, ("ok", n))), n
    raise ValueError(f"unknown operation {f!r}")


@dataclass
class Result:
    ok: bool                    # linearizable (False also when `timed_out`)
    key: Any = None             # the first key found not linearizable
    ops: int = 0                # operations checked (after dropping failed ones and unknown reads)
    keys: int = 0
    seconds: float = 0.0
    timed_out: bool = False
    # For a violation: the largest set of operations of `key` found linearizable, in their order, and the
    # operations still open when the search got stuck there (one of them cannot be placed).
    best: list = field(default_factory=list)
    stuck: list = field(default_factory=list)
    best_state: Any = None

    def explain(self):
        if self.ok:
            return f"linearizable: {self.ops} operations over {self.keys} keys in {self.seconds:.2f}s"
        if self.timed_out:
            return f"undecided: the search ran out of time on key {_show(self.key)}"
        lines = [f"NOT linearizable: key {_show(self.key)}",
                 f"  longest linearizable prefix found ({len(self.best)} operations), in order:"]
        lines += [f"    {op}" for op in self.best[-12:]]
        if len(self.best) > 12:
            lines.insert(2, f"    ... {len(self.best) - 12} earlier")
        lines.append(f"  state then: {_show(_as_reply(self.best_state))}; open operations, none of which fits:")
        lines += [f"    {op}" for op in self.stuck]
        return "\n".join(lines)


class _Entry:
    __slots__ = ("op", "id", "match", "prev", "next", "time")

    def __init__(self, op, id_, t):
        self.op, self.id, self.match, self.prev, self.next, self.time = op, id_, None, None, None, t


def _prepare(ops):
    kept = []
    for op in ops:
        if op.f not in KINDS:
            raise ValueError(f"unknown operation {op.f!r} in {op}")
        if op.outcome == "fail" or (op.outcome != "ok" and op.f == "get"):
            continue
        if op.outcome not in ("ok", "unknown", "fail"):
            raise ValueError(f"unknown outcome {op.outcome!r} in {op}")
        if op.outcome == "ok" and op.ret is None:
            raise ValueError(f"an operation with a reply needs a return time: {op}")
        kept.append(op)
    return kept


def _check_key(ops, init, deadline):
    """Lowe's algorithm over one key's operations. Returns (ok, timed_out, best, stuck, best_state)."""
    events = []  # (time, 0 = call | 1 = return, index)
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        events.append((INF if op.outcome != "ok" else op.ret, 1, i))
    # At equal times calls come first: such operations count as concurrent (Porcupine's order).
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(None, -1, -INF)
    calls = {}
    prev = head
    for t, kind, i in events:
        e = _Entry(ops[i], i, t)
        if kind == 0:
            calls[i] = e
        else:
            calls[i].match = e
        e.prev, prev.next = prev, e
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next
        if m.next is not None:
            m.next.prev = m.prev

    def unlift(e):
        m = e.match
        m.prev.next = m
        if m.next is not None:
            m.next.prev = m
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    known_left = sum(1 for op in ops if op.outcome == "ok")
    state, linearized = init, 0
    cache = set()
    stack = []  # (entry, state before it, the kinds of unknown operations tried at its step before it)
    tried = set()  # at this step: (f, args) of the unknown operations already tried (the symmetry above)
    best_n, best, best_state, stuck = -1, [], init, []
    entry = head.next
    n_steps = 0
    while head.next is not None:
        if known_left == 0:
            return True, False, None, None, None  # only unknown writes left: they may all take effect last
        n_steps += 1
        if deadline is not None and (n_steps & 0x3FF) == 0 and time.monotonic() > deadline:
            return False, True, [], [], None
        if entry.match is not None:  # a call
            sig = None if entry.op.outcome == "ok" else (entry.op.f, entry.op.args)
            if sig is not None:
                if sig in tried:  # one alike was tried at this step (or is an ancestor's choice): the same search
                    entry = entry.next
                    continue
            ok, new_state = step(state, entry.op)
            if ok:
                new_lin = linearized | (1 << entry.id)
                k = (new_lin, new_state)
                if k not in cache:
                    cache.add(k)
                    stack.append((entry, state, tried))
                    state, linearized = new_state, new_lin
                    if entry.op.outcome == "ok":
                        known_left -= 1
                    lift(entry)
                    tried = set()
                    entry = head.next
                    continue
                if sig is not None:
                    tried = tried | {sig}  # explored from here before: so was its alike's configuration
            entry = entry.next
        else:  # a return: the operation it closes could not be placed before it; back up
            if len(stack) > best_n:
                best_n, best_state = len(stack), state
                best = [e.op for e, _, _ in stack]
                stuck, x = [], head.next
                while x is not None and x.match is not None:
                    stuck.append(x.op)
                    x = x.next
                if x is not None:
                    stuck.append(x.op)
            if not stack:
                return False, False, best, stuck, best_state
            entry, state, tried = stack.pop()
            if entry.op.outcome != "ok":
                tried = tried | {(entry.op.f, entry.op.args)}
            linearized &= ~(1 << entry.id)
            if entry.op.outcome == "ok":
                known_left += 1
            unlift(entry)
            entry = entry.next
    return True, False, None, None, None


def check(ops, init=None, timeout=None):
    """Checks a history (an iterable of Op); every key starts as `init` (None: absent). With `timeout` seconds the
    search may give up (Result.timed_out)."""
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    by_key = {}
    for op in _prepare(ops):
        by_key.setdefault(op.key, []).append(op)
    total = sum(len(v) for v in by_key.values())
    for key in sorted(by_key, key=repr):
        ok, timed_out, best, stuck, best_state = _check_key(by_key[key], init, deadline)
        if not ok:
            return Result(False, key, total, len(by_key), time.monotonic() - t0, timed_out, best, stuck, best_state)
    return Result(True, None, total, len(by_key), time.monotonic() - t0)


# --- histories recorded by the live tests -------------------------------------------------------------------------
# JSON, one object per operation: {"client", "key", "f", "args", "call", "ret", "result", "outcome"} (others, such
# as "member" and "info", are kept for reading only); terms encoded as: integers as numbers, {"a": "ok"} an atom,
# {"b": "text"} a binary (its bytes as Latin-1 characters), {"t": [...]} a tuple, [...] a list (read as a tuple: no
# reply of the service holds a list).

def term_from_json(x):
    if isinstance(x, dict):
        if "a" in x:
            return x["a"]
        if "b" in x:
            return x["b"].encode("latin-1")
        if "t" in x:
            return tuple(term_from_json(e) for e in x["t"])
        raise ValueError(f"not a term: {x!r}")
    if isinstance(x, list):
        return tuple(term_from_json(e) for e in x)
    if isinstance(x, bool) or x is None:
        raise ValueError(f"not a term: {x!r}")
    return x


def op_from_json(d):
    return Op(client=d["client"], key=term_from_json(d["key"]), f=d["f"],
              args=tuple(term_from_json(a) for a in d["args"]), call=d["call"], ret=d.get("ret"),
              result=term_from_json(d["result"]) if d.get("result") is not None else None,
              outcome=d.get("outcome", "ok"))


def load(path):
    with open(path) as f:
        return [op_from_json(d) for d in json.load(f)]
