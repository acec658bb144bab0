"""Issue 17: TLS distribution against OTP 25 nodes started with -proto_dist inet_tls -ssl_dist_optfile FILE, both
ways: ping, calls, pg and global inside TLS; a plain-TCP peer refused cleanly; the TLS handshake bounded by the
setup time and inside the handshake slots. Certificates are made by the test (tls_util, openssl command line)."""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from tls_util import (beam_optfile, closed_by_peer, standard_pki, start_cnode, tls_cnode,  # noqa: E402
                      tls_elixir, tls_erl)


def protocol(beam, node):
    """The protocol of beam's connection to node, as net_kernel knows it (tls or tcp)."""
    return beam.eval(f"{{ok, I}} = net_kernel:node_info('{node}'), element(4, proplists:get_value(address, I))"
                     if not beam.elixir else
                     f"{{:ok, i}} = :net_kernel.node_info(:\"{node}\"); elem(Keyword.get(i, :address), 3)")


def test_erl_dials_cnode_ping_calls_erpc(c):
    pki = standard_pki(c)
    c.epmd()
    cn = tls_cnode(c, pki)
    a = tls_erl(c, "a", beam_optfile(c, pki, "a"))
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    assert protocol(a, cn.node) == "tls"
    cn.wait_for_line("up a@localhost (visible, it connected, TLSv1.3)")
    for t in ["{hello, [1, 2.5, <<\"bin\">>], #{k => v}}", "lists:seq(1, 5000)", "self()", "make_ref()"]:
        assert a.eval(f"T = {t}, gen_server:call({{echo, '{cn.node}'}}, T) =:= T") == "true", t
    # larger than a TLS record (16 KiB) many times over, both ways
    assert a.eval(f"B = crypto:strong_rand_bytes(3000000), gen_server:call({{echo, '{cn.node}'}}, B, 30000) =:= B") \
        == "true"
    assert a.eval(f"erpc:call('{cn.node}', erlang, node, [])") == cn.node
    assert a.eval(f"rpc:call('{cn.node}', erlang, nodes, [])") == "[a@localhost]"
    # a stream of casts and their answers stays in order
    assert a.eval(f"E = {{echo, '{cn.node}'}}, [E ! {{self(), I}} || I <- lists:seq(1, 2000)], "
                  "lists:all(fun(I) -> receive I -> true after 5000 -> false end end, lists:seq(1, 2000))") == "true"


def test_cnode_dials_elixir_with_the_beams_optfile(c):
    """cnode reads the same ssl_dist_optfile the Elixir node reads, and connects out to it."""
    pki = standard_pki(c)
    c.epmd()
    conf = beam_optfile(c, pki, "shared")
    ex = tls_elixir(c, "ex", conf)
    cn = start_cnode(c, extra=["--tls-optfile", conf, "--connect", ex.node])
    cn.wait_for_line("up ex@localhost (visible, we connected, TLSv1.3)", timeout=20)
    harness.wait_until(lambda: ex.eval("Node.list()") == f"[:{cn.node}]", 15, "cnode in Node.list()")
    assert protocol(ex, cn.node) == ":tls"
    assert ex.eval(f"GenServer.call({{:echo, :\"{cn.node}\"}}, {{:hi, [1, 2, 3], %{{a: \"b\"}}}})") == \
        "{:hi, [1, 2, 3], %{a: \"b\"}}"
    assert ex.eval(f":erpc.call(:\"{cn.node}\", :erlang, :node, [])") == f":{cn.node}"
    # a call from cnode into Elixir over the same connection: a probe's gen call to a GenServer there
    ex.eval("{:ok, _} = Agent.start_link(fn -> 41 end, name: :counter); :ok")
    ex.eval(f"p = :erpc.call(:\"{cn.node}\", :cnode, :spawn_probe, [self()]); Process.put(:p, p); :ok")
    assert ex.eval("GenServer.call(Process.get(:p), {:call, {:counter, node()}, {:get, fn n -> n + 1 end}, 5000})") \
        == "{:ok, 42}"


def test_pg_and_global_over_tls(c):
    pki = standard_pki(c)
    c.epmd()
    cn = tls_cnode(c, pki)
    conf = beam_optfile(c, pki, "beam")
    a, b = tls_elixir(c, "a", conf), tls_elixir(c, "b", conf)
    for n in (a, b):
        n.eval(f"Process.put(:cn, :\"{cn.node}\"); {{:ok, _}} = :pg.start(:pg); :ok")
        assert n.eval("Node.connect(Process.get(:cn))") == "true"
    assert b.eval("Node.connect(:a@localhost)") == "true"
    for n in (a, b):
        assert n.eval("t = Task.async(fn -> :global.sync() end); case Task.yield(t, 20_000) do "
                      "{:ok, r} -> r; nil -> :hang end", timeout=30) == ":ok"
        assert protocol(n, cn.node) == ":tls"
    # global: a name from Elixir seen by cnode, a name from cnode seen by Elixir
    a.eval("m = spawn(fn -> receive do :stop -> :ok end end); Process.put(:m, m); :yes = :global.register_name(:ex_n, m)")
    m = a.eval("Process.get(:m)")
    harness.wait_until(lambda: a.eval(":erpc.call(Process.get(:cn), :global, :whereis_name, [:ex_n])") == m, 10,
                       "cnode to see :ex_n")
    a.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:p, p); :ok")
    assert a.eval("GenServer.call(Process.get(:p), {:global_register, :cn_n}, 30_000)") == ":yes"
    probe = a.eval("Process.get(:p)")
    harness.wait_until(lambda: a.eval(":erpc.call(:b@localhost, :global, :whereis_name, [:cn_n])") == probe, 10,
                       "b to see cnode's :cn_n")
    # pg: cnode's probe joins, Elixir's member joins; both seen everywhere
    assert a.eval("GenServer.call(Process.get(:p), {:pg_join, :pg, :g})") == ":ok"
    a.eval(":ok = :pg.join(:pg, :g, Process.get(:m))")
    want = a.eval("Enum.sort([Process.get(:p), Process.get(:m)])")
    harness.wait_until(lambda: a.eval(":lists.sort(:erpc.call(:b@localhost, :pg, :get_members, [:pg, :g]))") == want,
                       10, "b to see both members")
    harness.wait_until(lambda: a.eval(":lists.sort(:erpc.call(Process.get(:cn), :pg, :get_members, [:pg, :g]))")
                       == want, 10, "cnode to see both members")


def test_plain_tcp_peer_refused_and_node_goes_on(c):
    pki = standard_pki(c)
    c.epmd()
    cn = tls_cnode(c, pki)
    plain = c.erl("plain")
    assert plain.eval(f"net_adm:ping('{cn.node}')") == "pang"
    line = cn.wait_for_line("refused connection from 127.0.0.1")
    assert "does not speak TLS" in line, line
    # raw bytes of a send_name on a fresh socket: closed, no answer
    port = int(re.search(r"port (\d+)", cn.wait_for_line("registered " + cn.node)).group(1))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x00\x0fN" + bytes(14))
        assert closed_by_peer(s, 10), "cnode kept the plain socket open"
    # the node goes on serving TLS peers
    a = tls_erl(c, "a", beam_optfile(c, pki, "a"))
    assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
    # and a TLS cnode dialling a plain node gets a clear line, and no connection
    cn2 = tls_cnode(c, pki, sname="cn2", extra=["--connect", plain.node])
    line = cn2.wait_for_line("cannot connect to plain@localhost", timeout=20)
    assert "TLS handshake" in line, line
    assert plain.eval("nodes()") == "[]"


def test_tls_handshake_timeout_frees_the_slot(c):
    """A client that connects and sends nothing is dropped after --net-setuptime, and a flood of them (more than the
    handshake slots) does not keep a TLS peer out."""
    pki = standard_pki(c)
    c.epmd()
    cn = tls_cnode(c, pki, extra=["--net-setuptime", "2"])
    port = int(re.search(r"port (\d+)", cn.wait_for_line("registered " + cn.node)).group(1))
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    line = cn.wait_for_line("timed out after 2000 ms", timeout=10)
    assert "TLS handshake with 127.0.0.1" in line, line
    assert closed_by_peer(silent, 5)
    took = time.monotonic() - t0
    assert 1.5 < took < 6, took
    silent.close()
    # 600 silent connections: more than the 512 handshake slots; the oldest are dropped, a real peer gets in
    flood = []
    try:
        for _ in range(600):
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        a = tls_erl(c, "a", beam_optfile(c, pki, "a"))
        t0 = time.monotonic()
        assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
        assert time.monotonic() - t0 < 3
    finally:
        for s in flood:
            s.close()
    harness.wait_until(lambda: "too many handshakes" in cn.output(), 10, "the slot eviction line")


harness.main(globals())
