"""Issue 4: a cnode that live erl/iex nodes ping, call and keep connected."""
import os
import re
import subprocess
import time

import harness
from cnode_node import start_cnode


def test_ping_from_erl_and_visible(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a")
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    assert a.eval("nodes()") == f"[{cn.node}]"
    assert a.eval("nodes(hidden)") == "[]"
    cn.wait_for_line(f"up a@{harness.HOST}")


def test_ping_hidden(c):
    c.epmd()
    cn = start_cnode(c, hidden=True)
    a = c.erl("a")
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    assert a.eval("nodes()") == "[]"
    assert a.eval("nodes(hidden)") == f"[{cn.node}]"


def test_cnode_connects_out_and_elixir_pings_back(c):
    c.epmd()
    ex = c.elixir("ex")
    cn = start_cnode(c, extra=["--connect", ex.node])
    harness.wait_until(lambda: ex.eval("Node.list()") == f"[:{cn.node}]", 15, "cnode in Node.list()")
    assert ex.eval(f"Node.ping(:\"{cn.node}\")") == ":pong"
    assert ex.eval("Node.list(:hidden)") == "[]"


def test_echo_call_of_many_terms(c):
    c.epmd()
    cn = start_cnode(c)
    ex = c.elixir("ex")
    terms = [
        ":atom", "1", "-1", "123456789012345678901234567890", "1.5", "-0.0", "\"binary\"", "<<1, 2, 3::4>>",
        "[1, 2, 3]", "[1 | 2]", "{:a, 'chars', %{a: 1, b: [2]}}", "self()", "make_ref()", "fn x -> x end",
        "&Enum.map/2", "Map.new(1..100, fn i -> {i, to_string(i)} end)", ":'日本語'", "List.duplicate(:x, 1000)",
        "for i <- 1..50, into: %{}, do: {{:k, i}, [i]}",
    ]
    for t in terms:
        assert ex.eval(f"x = {t}; GenServer.call({{:echo, :\"{cn.node}\"}}, x) === x") == "true", t


def test_echo_of_the_differential_tests_random_terms(c):
    """gen_server:call echo of 5 000 random terms of every tag (the ETF differential test's generator)."""
    etf_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "etf")
    ebin = os.path.join(c.tmp, "ebin")
    os.makedirs(ebin)
    subprocess.run(harness.otp_argv(["erlc", "-o", ebin, os.path.join(etf_dir, "etf_gen.erl")]), check=True)
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a", args=["-pa", ebin])
    out = a.eval(f"rand:seed(exsss, 4242), Ctx = etf_gen:new_ctx(undefined), "
                 f"Bad = [T || _ <- lists:seq(1, 5000), T <- [etf_gen:term(Ctx)], "
                 f"gen_server:call({{echo, '{cn.node}'}}, T, 30000) =/= T], length(Bad)", timeout=300)
    assert out == "0", out


def test_echo_send_form(c):
    c.epmd()
    cn = start_cnode(c)
    ex = c.elixir("ex")
    assert ex.eval(f"send({{:echo, :\"{cn.node}\"}}, {{self(), {{:hello, 42}}}}); "
                   "receive do m -> m after 5000 -> :timeout end") == "{:hello, 42}"


def test_echo_64_mib_binary(c):
    c.epmd()
    cn = start_cnode(c)
    ex = c.elixir("ex")
    assert ex.eval(f"b = :crypto.strong_rand_bytes(64 * 1024 * 1024); "
                   f"GenServer.call({{:echo, :\"{cn.node}\"}}, b, 60_000) == b", timeout=120) == "true"


def test_call_to_missing_name_is_noproc_at_once(c):
    c.epmd()
    cn = start_cnode(c)
    ex = c.elixir("ex")
    out = ex.eval(f"t = System.monotonic_time(:millisecond); "
                  f"r = try do GenServer.call({{:nobody, :\"{cn.node}\"}}, :x, 10_000) catch :exit, {{reason, _}} -> reason end; "
                  f"{{r, System.monotonic_time(:millisecond) - t < 2000}}")
    assert out == "{:noproc, true}", out


def test_features_request_answered(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a")
    out = a.eval(f"{{rex, '{cn.node}'}} ! {{self(), features_request}}, "
                 f"receive M -> M after 5000 -> timeout end")
    assert out == f"{{features_reply,{cn.node},[erpc]}}", out


def test_simultaneous_connects_one_connection_no_message_lost(c):
    """Traffic in both directions from the first moment of a connection: exactly one connection, every message."""
    c.epmd()
    a = c.erl("a")
    for round_ in range(5):
        cn = start_cnode(c, sname=f"sim{round_}")
        out = a.eval(f"Me = self(), N = 2000, "
                     f"spawn(fun() -> [{{echo, '{cn.node}'}} ! {{Me, {{x, I}}}} || I <- lists:seq(1, N)] end), "
                     f"erpc:cast('{cn.node}', erlang, send, [Me, hello]), "
                     f"Got = [receive {{x, I}} -> I after 10000 -> {{missing, I}} end || I <- lists:seq(1, N)], "
                     f"H = receive hello -> ok after 10000 -> missing end, "
                     f"{{Got =:= lists:seq(1, N), H, length([X || X <- nodes(), X =:= '{cn.node}'])}}")
        assert out == "{true,ok,1}", (round_, out)
        harness.wait_until(lambda: cn.node in a.eval("nodes()"), 5, "still connected")


def test_cnode_and_erl_dial_each_other(c):
    """Both sides initiate at once (cnode --connect a, a pings cnode): exactly one connection ends up up."""
    c.epmd()
    a = c.erl("a")
    for round_ in range(5):
        cn = start_cnode(c, sname=f"dial{round_}", extra=["--connect", a.node], wait=False)
        cn.wait_for_line("registered", timeout=20)  # cnode dials a right after this line
        assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
        harness.wait_until(lambda: a.eval("length(nodes())") == str(round_ + 1), 10, "one connection per cnode")
        assert a.eval(f"erpc:call('{cn.node}', erlang, nodes, [])") == "[a@localhost]"


def test_wrong_cookie_refused_both_ways(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a", cookie="wrongcookie")
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pang"
    cn.wait_for_line("refused connection from a@localhost")
    # and cnode dialling a node with another cookie
    b = c.erl("b", cookie="othercookie")
    cn2 = start_cnode(c, sname="cnode2", extra=["--connect", b.node])
    cn2.wait_for_line("cannot connect to b@localhost")
    assert b.eval("nodes()") == "[]"


def test_kill_peer_gives_nodedown_and_reconnect(c):
    c.epmd()
    cn = start_cnode(c, extra=["--net-ticktime", "4"])
    a = c.erl("a", args=["-kernel", "net_ticktime", "4"])
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    a.kill9()
    cn.wait_for_line("down a@localhost", timeout=15)
    # restarted with the same name, it reconnects
    a2 = c.erl("a", args=["-kernel", "net_ticktime", "4"])
    assert a2.eval(f"net_adm:ping('{cn.node}')") == "pong"


def test_kill_cnode_seen_by_elixir(c):
    c.epmd()
    cn = start_cnode(c, extra=["--net-ticktime", "4"])
    ex = c.elixir("ex", args=["--erl", "-kernel net_ticktime 4"])
    assert ex.eval(f"Node.ping(:\"{cn.node}\")") == ":pong"
    assert ex.eval(f"Node.monitor(:\"{cn.node}\", true)") == "true"
    cn.kill9()
    assert ex.eval("receive do {:nodedown, n} -> n after 15_000 -> :none end", timeout=20) == f":{cn.node}"
    # restarted, it is reachable again (the old registration vanished with the process)
    cn2 = start_cnode(c)
    assert ex.eval(f"Node.ping(:\"{cn2.node}\")") == ":pong"


def test_sigterm_unregisters(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a")
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    cn.p.terminate()
    cn.p.wait(10)
    harness.wait_until(lambda: "cnode" not in a.eval("element(2, erl_epmd:names())"), 10, "cnode gone from EPMD")
    harness.wait_until(lambda: a.eval("nodes()") == "[]", 10, "nodedown on a")


def test_burst_of_messages_in_order(c):
    c.epmd()
    cn = start_cnode(c)
    ex = c.elixir("ex")
    n = 1_000_000
    out = ex.eval(
        # An off-heap mailbox keeps the BEAM's GC from copying a large queue again and again.
        f"Process.flag(:message_queue_data, :off_heap); dest = {{:echo, :\"{cn.node}\"}}; me = self(); "
        f"t = System.monotonic_time(:millisecond); "
        f"spawn(fn -> for i <- 1..{n}, do: send(dest, {{me, i}}) end); "
        f"ok = Enum.reduce(1..{n}, true, fn i, acc -> receive do ^i -> acc; _ -> false after 30_000 -> false end end); "
        f"{{ok, System.monotonic_time(:millisecond) - t}}", timeout=300)
    m = re.match(r"\{(true|false), (\d+)\}", out)
    assert m and m.group(1) == "true", out
    print(f"burst: {n} messages round trip in {m.group(2)} ms")


harness.main(globals())
