"""Network partitions for live tests, made the way Elixir teams make them with the schism library: cookies and
disconnects over erpc, so cnode nodes and BEAM nodes take part alike.

    import schism
    split = schism.partition(drv, [a.node], [cn.node, b.node])  # a and {cn, b} cannot reach each other
    ...                                                         # each side still talks within itself and to drv
    split.heal()                                                # cookies back, every cut pair connected again

`drv` is a harness BeamNode (erl or elixir) that reaches every node named: it makes the erpc calls, and keeps its
own connections, so it can heal what it split. Make it hidden (c.elixir("drv", hidden=True)): a visible driver
takes part in global, whose prevent_overlapping_partitions (OTP 25's default) would then cut it off too.

For every pair (x in A, y in B): x is given a wrong cookie for y and y another wrong one for x
(erlang:set_cookie/2, so nodes outside the two lists are untouched), then each disconnects from the other
(erlang:disconnect_node/1). A handshake between the sides then fails on the cookie in both directions (the per-node
cookie counts when accepting as when connecting), so neither auto-connect, global nor pg can mend the cut until
heal() puts back the cookies each had for the other and connects the pairs (net_kernel:connect_node/1). The cut
stands once neither side lists the other in erlang:nodes/0. Schism itself gives a partitioned node a new cookie of
its own (set_cookie(node, node, id)); a per-node cookie cuts the same way and leaves third nodes alone.

What global does after the cut is OTP's: a node connected to both sides receives lost_connection and may drop one
side (prevent_overlapping_partitions); tests check what must hold anyway (pang across the cut, pong within a side).
"""
import secrets

import harness


def _atom(driver, name):
    return f':"{name}"' if driver.elixir else f"'{name}'"


def call(driver, node, mod, fun, args):
    """erpc:call(node, mod, fun, args) on driver; args are expression strings in driver's language. Returns the
    printed result."""
    a = ", ".join(args)
    if driver.elixir:
        return driver.eval(f":erpc.call({_atom(driver, node)}, :{mod}, :{fun}, [{a}])")
    return driver.eval(f"erpc:call({_atom(driver, node)}, {mod}, {fun}, [{a}])")


def ping(driver, frm, to):
    """net_adm:ping(to) run on frm: 'pong' or 'pang' (without the language's colon)."""
    return call(driver, frm, "net_adm", "ping", [_atom(driver, to)]).lstrip(":")


def nodes(driver, node):
    out = call(driver, node, "erlang", "nodes", [])
    return {x.strip().strip(":").strip('"').strip("'") for x in out.strip("[]").split(",") if x.strip()}


class Split:
    def __init__(self, driver, side_a, side_b, cookies):
        self.driver, self.side_a, self.side_b, self._cookies = driver, list(side_a), list(side_b), cookies

    def pairs(self):
        return [(x, y) for x in self.side_a for y in self.side_b]

    def heal(self, timeout=30):
        """Gives every node back the cookie it had for each node across the cut, then connects each pair (again
        until connect_node/1 says true: a connect that meets the peer's own attempt may lose it)."""
        d = self.driver
        for (x, y), (cx, cy) in self._cookies.items():
            assert call(d, x, "erlang", "set_cookie", [_atom(d, y), cx]).lstrip(":") == "true"
            assert call(d, y, "erlang", "set_cookie", [_atom(d, x), cy]).lstrip(":") == "true"
        for x, y in self.pairs():
            harness.wait_until(lambda: call(d, x, "net_kernel", "connect_node", [_atom(d, y)]).lstrip(":") == "true",
                               timeout, f"{x} to connect to {y} again")


def partition(driver, side_a, side_b, timeout=30):
    """Cuts every node of side_a off from every node of side_b (node names); returns the Split to heal."""
    d = driver
    tag = secrets.token_hex(4)
    cookies = {}
    for x in side_a:
        for y in side_b:
            # What each had for the other, so that heal() restores per-node cookies set before.
            cookies[(x, y)] = (call(d, x, "erlang", "get_cookie", [_atom(d, y)]),
                               call(d, y, "erlang", "get_cookie", [_atom(d, x)]))
            assert call(d, x, "erlang", "set_cookie", [_atom(d, y), _atom(d, f"schism_{tag}_a")]).lstrip(":") == "true"
            assert call(d, y, "erlang", "set_cookie", [_atom(d, x), _atom(d, f"schism_{tag}_b")]).lstrip(":") == "true"
    for x in side_a:
        for y in side_b:
            call(d, x, "erlang", "disconnect_node", [_atom(d, y)])
            call(d, y, "erlang", "disconnect_node", [_atom(d, x)])

    def cut():
        return all(not (nodes(d, x) & set(side_b)) for x in side_a) and \
            all(not (nodes(d, y) & set(side_a)) for y in side_b)

    harness.wait_until(cut, timeout, f"{side_a} and {side_b} to be cut off from each other")
    return Split(d, side_a, side_b, cookies)
