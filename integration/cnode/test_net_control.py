"""Issue 12: erlang:set_cookie/1,2, get_cookie/0,1, disconnect_node/1, net_kernel:connect_node/1, disconnect/1 and
net_adm:ping/1 called over erpc and rpc into cnode answer exactly as on an OTP node. Each scenario runs in two
clusters of the same node names: one where t is cnode, one where t is an erl node (the oracle); the outcomes must
be equal, and are checked against what OTP 25 documents as well.

Nodes: t (cnode or erl), y (erl, a peer of t), drv (hidden erl, makes the calls)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

T = f"t@{harness.HOST}"
Y = f"y@{harness.HOST}"


def world(c, kind, cookie):
    """t, y and drv with the same cookie in every world (the results print it)."""
    c.cookie = cookie
    c.epmd()
    t = start_cnode(c, sname="t") if kind == "cnode" else c.erl("t")
    y = c.erl("y")
    drv = c.erl("drv", hidden=True)
    drv.eval(f"E = fun(M, F, A) -> try erpc:call('{T}', M, F, A) "
             "catch error:{exception, R, _} -> {error, R}; C:R -> {C, R} end end, "
             "put(e, E), ok")
    return t, y, drv


def both(fn):
    """Runs fn(c, t, y, drv) -> value with cnode as t and with erl as t; returns (cnode's, erl's)."""
    cookie = "c" + os.urandom(8).hex()
    out = []
    for kind in ("cnode", "beam"):
        c = harness.Cluster()
        try:
            t, y, drv = world(c, kind, cookie)
            out.append(fn(c, t, y, drv))
            if kind == "cnode":  # cookies, set or given, never reach the log (docs/hardening.md)
                log = t.output()
                assert cookie not in log and "own1" not in log and "newc" not in log, log
        except Exception:
            for p in c.procs:
                print(f"--- output of {p.name} ({kind} world):\n{p.output()}", flush=True)
            raise
        finally:
            c.close()
    return out[0], out[1]


def calls(drv, exprs):
    """The results of exprs (Erlang, with E(M, F, A) = erpc:call(t, M, F, A), errors as {error, Reason}), one by
    one and in order."""
    return [drv.eval(f"E = get(e), {e}") for e in exprs]


COOKIES = [
    "E(erlang, get_cookie, [])",
    f"E(erlang, get_cookie, ['{T}'])",
    "E(erlang, set_cookie, ['foo@bar', fc])",
    "E(erlang, get_cookie, ['foo@bar'])",
    "E(erlang, get_cookie, ['other@bar'])",
    "E(erlang, set_cookie, [foo, x])",          # any atom names a node, even without @
    "E(erlang, get_cookie, [foo])",
    "E(erlang, set_cookie, [123])",
    "E(erlang, set_cookie, [nonode@nohost, x])",
    "E(erlang, set_cookie, ['foo@bar', \"str\"])",
    "E(erlang, set_cookie, [\"a@b\", x])",
    "E(erlang, get_cookie, [123])",
    f"E(erlang, set_cookie, ['{T}', newc])",     # its own name: its own cookie (auth.erl)
    "E(erlang, get_cookie, [])",
    f"E(erlang, get_cookie, ['{T}'])",
    "E(erlang, get_cookie, ['foo@bar'])",       # a node's own cookie stays
    "E(erlang, set_cookie, [own1])",            # arity 1 (OTP 24.1)
    "E(erlang, get_cookie, [])",
    "E(erlang, get_cookie, ['other@bar'])",
    f"rpc:call('{T}', erlang, get_cookie, [])",
    # rpc's error shape, its stack left out (the BEAM's has more frames and error_info)
    f"case rpc:call('{T}', erlang, set_cookie, [123]) of {{badrpc, {{'EXIT', {{R, [_ | _]}}}}}} -> {{badrpc, R}}; "
    "X -> X end",
]

CONNECTS = [
    "E(erlang, disconnect_node, [123])",
    f"E(erlang, disconnect_node, ['{T}'])",
    "E(erlang, disconnect_node, ['nope@localhost'])",
    "E(net_kernel, disconnect, ['nope@localhost'])",
    "E(net_kernel, connect_node, [123])",
    f"E(net_kernel, connect_node, ['{T}'])",
    "E(net_kernel, connect_node, ['nope@localhost'])",
    "E(net_kernel, connect_node, [foo])",
    "E(net_adm, ping, [123])",
    f"E(net_adm, ping, ['{T}'])",
    "E(net_adm, ping, ['nope@localhost'])",
    f"E(net_kernel, connect_node, ['{Y}'])",
    f"lists:member('{Y}', E(erlang, nodes, []))",
    f"E(erlang, disconnect_node, ['{Y}'])",
    f"lists:member('{Y}', E(erlang, nodes, []))",  # down when disconnect_node returns
    f"E(erlang, disconnect_node, ['{Y}'])",
    f"E(net_adm, ping, ['{Y}'])",
    f"E(net_kernel, disconnect, ['{Y}'])",
    f"lists:member('{Y}', E(erlang, nodes, []))",
    f"rpc:call('{T}', net_kernel, connect_node, ['{Y}'])",
    f"rpc:call('{T}', erlang, disconnect_node, ['{Y}'])",
    # A wrong cookie for y: refused both ways, t dialling y and y dialling t.
    f"E(erlang, set_cookie, ['{Y}', wrong])",
    f"E(net_adm, ping, ['{Y}'])",
    f"E(net_kernel, connect_node, ['{Y}'])",
    f"erpc:call('{Y}', net_adm, ping, ['{T}'])",
    f"erpc:call('{Y}', net_kernel, connect_node, ['{T}'])",
    f"lists:member('{Y}', E(erlang, nodes, []))",
    # The right one again: both ways work.
    f"E(erlang, set_cookie, ['{Y}', E(erlang, get_cookie, [])])",
    f"E(net_adm, ping, ['{Y}'])",
    f"E(erlang, disconnect_node, ['{Y}'])",
    # Dialled back at once, a BEAM t can still be taking the old connection down and answer pang (seen on a
    # loaded CI machine): the dial is retried for up to 3 s, on both kinds of t alike.
    f"(fun R(0) -> pang; R(N) -> case erpc:call('{Y}', net_adm, ping, ['{T}']) of pong -> pong; "
    f"pang -> receive after 100 -> R(N - 1) end end end)(30)",
]


def test_cookie_functions_as_on_a_beam_node(c):
    ours, beam = both(lambda c, t, y, drv: calls(drv, COOKIES))
    for e, o, b in zip(COOKIES, ours, beam):
        assert o == b, f"{e}: cnode {o}, erl {b}"
    cookie = ours[0]
    assert cookie.startswith("c"), cookie
    assert ours == [cookie, cookie, "true", "fc", cookie, "true", "x"] + ["{error,badarg}"] * 5 + \
        ["true", "newc", "newc", "fc", "true", "own1", "own1", "own1", "{badrpc,badarg}"], ours


def test_connect_and_disconnect_as_on_a_beam_node(c):
    ours, beam = both(lambda c, t, y, drv: calls(drv, CONNECTS))
    for e, o, b in zip(CONNECTS, ours, beam):
        assert o == b, f"{e}: cnode {o}, erl {b}"
    assert ours == ["false", "false", "false", "false", "{error,function_clause}", "true", "false", "false",
                    "{error,function_clause}", "pong", "pang",
                    "true", "true", "true", "false", "false", "pong", "true", "false", "true", "true",
                    "true", "pang", "false", "pang", "false", "false",
                    "true", "pong", "true", "pong"], ours


# On y: a process that traps exits, links to t's process P, monitors it and subscribes to nodeup/nodedown; it
# answers {get, From} with what it has received (in order). Registered as watcher.
WATCHER = ("Me = self(), W = spawn(fun() -> process_flag(trap_exit, true), ok = net_kernel:monitor_nodes(true), "
           "L = fun Loop(Acc) -> receive {get, F} -> F ! {seen, lists:reverse(Acc)}, Loop(Acc); "
           "{watch, P} -> link(P), erlang:monitor(process, P), Me ! watching, Loop(Acc); "
           "M -> Loop([M | Acc]) end end, L([]) end), register(watcher, W), ok")


def disconnect_breaks_links(c, t, y, drv):
    """t's process P traps exits, links to and monitors y's watcher W, and W links to and monitors P; then t
    disconnects y. Returns what P saw and what W saw."""
    y.eval(WATCHER)
    assert drv.eval(f"E = get(e), E(net_kernel, connect_node, ['{Y}'])") == "true"
    if isinstance(t, harness.BeamNode):
        # P on erl: a process doing what cnode's probe does for these calls.
        drv.eval(f"Owner = self(), P = erpc:call('{T}', erlang, spawn, [fun() -> process_flag(trap_exit, true), "
                 "L = fun Loop() -> receive {'$gen_call', F, {link, X}} -> link(X), gen:reply(F, ok), Loop(); "
                 "{'$gen_call', F, {monitor, X}} -> gen:reply(F, erlang:monitor(process, X)), Loop(); "
                 "M -> Owner ! {probe, self(), M}, Loop() end end, L() end]), put(p, P), ok")
    else:
        drv.eval(f"put(p, erpc:call('{T}', cnode, spawn_probe, [self()])), "
                 "false = gen_server:call(get(p), {trap_exit, true}), ok")
    drv.eval(f"put(wpid, erpc:call('{Y}', erlang, whereis, [watcher])), ok")
    assert drv.eval("gen_server:call(get(p), {link, get(wpid)})") == "ok"
    drv.eval("put(ref, gen_server:call(get(p), {monitor, get(wpid)})), ok")
    drv.eval("get(wpid) ! {watch, get(p)}, ok")
    assert y.eval("receive watching -> ok after 5000 -> timeout end") == "ok"

    assert drv.eval(f"E = get(e), E(erlang, disconnect_node, ['{Y}'])") == "true"
    seen_p = drv.eval("R = get(ref), W = get(wpid), P = get(p), "
                      "A = receive {probe, P, {'EXIT', W, Ra}} -> {exit, Ra} after 5000 -> no_exit end, "
                      "B = receive {probe, P, {'DOWN', R, process, W, Rb}} -> {down, Rb} after 5000 -> no_down end, "
                      "{A, B}")

    def watcher_saw():
        # Pids and references print differently in each world: W's messages by kind and reason.
        out = y.eval("watcher ! {get, self()}, receive {seen, S} -> lists:sort([case M of "
                     "{'EXIT', _, R} -> {exit, R}; {'DOWN', _, process, _, R} -> {down, R}; Other -> Other end "
                     "|| M <- S]) after 5000 -> timeout end")
        return out if "nodedown" in out and "exit" in out and "down," in out else None
    return seen_p, harness.wait_until(watcher_saw, 10, "the watcher on y to see the connection go")


def test_disconnect_node_breaks_links_and_monitors_with_noconnection(c):
    ours, beam = both(disconnect_breaks_links)
    assert ours == beam, (ours, beam)
    assert ours[0] == "{{exit,noconnection},{down,noconnection}}", ours
    assert ours[1] == f"[{{down,noconnection}},{{exit,noconnection}},{{nodedown,{T}}},{{nodeup,{T}}}]", ours


harness.main(globals())
