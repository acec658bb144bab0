"""Ops: cnode's HTTP server (/status, /metrics, /health) read with a real HTTP client (curl), /metrics checked by
Prometheus' own promtool, /health following the EPMD the node registered with, and --log-format json."""
import json
import os
import re
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from ops_util import HTTP_LINE, Metrics, SplitProc, curl, metrics, start_http_cnode, status  # noqa: E402

PATHS = {"/status", "/metrics", "/health", "other"}  # the path label's values: unknown paths are one "other"


def promtool_check(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 0, f"promtool check metrics: exit {r.returncode}:\n{r.stdout.decode()}\n--- input:\n{text}"


def connected_elixir(c, cn):
    """An Elixir node running the pg scope, connected to cn, whose probe joined :grp and registered :held."""
    ex = c.elixir("ex")
    ex.eval("{:ok, s} = :pg.start(:pg); Process.put(:scope, s); :ok")
    ex.eval(f"Process.put(:cn, :\"{cn.node}\")")
    assert ex.eval("Node.connect(Process.get(:cn))") == "true"
    assert ex.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:probe, p); "
                   "is_pid(p)") == "true"
    assert ex.eval("GenServer.call(Process.get(:probe), {:pg_join, :pg, :grp})") == ":ok"
    assert ex.eval("GenServer.call(Process.get(:probe), {:global_register, :held}, 30_000)") == ":yes"
    harness.wait_until(lambda: ex.eval(":pg.get_members(:pg, :grp) == [Process.get(:probe)] and "
                                       ":global.whereis_name(:held) == Process.get(:probe)") == "true",
                       10, "the probe's membership and name on the Elixir node")
    return ex


def peer_conn(st, node):
    conns = [x for x in st["connections"] if x["peer"] == node]
    assert len(conns) == 1, f"{node} in connections once: {st['connections']}"
    return conns[0]


def test_status_metrics_and_refused_handshake(c):
    c.epmd()
    cn = start_http_cnode(c)
    reg = cn.wait_for_line("registered " + cn.node)  # "... (port P, creation C)"
    dport, creation = map(int, re.search(r"port (\d+), creation (\d+)", reg).groups())
    ex = connected_elixir(c, cn)
    # an Elixir member in the same group: 2 memberships cluster-wide, 1 of them cnode's
    ex.eval("m = spawn(fn -> receive do :stop -> :ok end end); Process.put(:m, m); :pg.join(:pg, :grp, m)")
    harness.wait_until(lambda: ex.eval(":erpc.call(Process.get(:cn), :pg, :get_members, [:pg, :grp]) |> length()")
                       == "2", 10, "both members on cnode")
    assert ex.eval(":erpc.call(Process.get(:cn), :pg, :get_local_members, [:pg, :grp]) == [Process.get(:probe)]") \
        == "true"

    st = harness.wait_until(lambda: (lambda s: s if s["services"]["pg"]["scopes"]["pg"]["groups"] >= 1 and
                                     s["services"]["global"]["names"] >= 1 else None)(status(cn.http)),
                            10, "/status to show the probe's group and name")
    assert st["node"] == cn.node and st["hidden"] is False, st
    assert st["creation"] == creation and st["distribution_port"] == dport, (st, reg)
    assert st["otp_release"] == "25" and isinstance(st["version"], str) and st["version"], st
    assert isinstance(st["uptime_ms"], int) and st["uptime_ms"] >= 0, st
    assert isinstance(st["processes"], int) and st["processes"] >= 2, st  # at least the probe and the services
    conn = peer_conn(st, ex.node)
    assert conn["visible"] is True, conn
    assert conn["creation"] == int(ex.eval(":erlang.system_info(:creation)")), conn
    for k in ("bytes_in", "bytes_out", "packets_in", "packets_out"):
        assert isinstance(conn[k], int) and conn[k] > 0, (k, conn)
    assert isinstance(conn["flags"], int) and conn["flags"] > 0, conn
    assert conn["queue_bytes"] >= 0 and conn["waiting_senders"] >= 0, conn
    svc = st["services"]
    assert {"global", "pg", "ops"} <= set(svc), svc
    assert svc["pg"]["scopes"]["pg"]["groups"] == 1 and svc["pg"]["scopes"]["pg"]["peers"] == 1, svc
    assert svc["global"]["names"] == 1, svc
    assert svc["ops"]["http_port"] == cn.http, svc

    # 200 kB each way through an echo call: the byte counters of /status follow
    assert ex.eval("b = :binary.copy(<<7>>, 200_000); GenServer.call({:echo, Process.get(:cn)}, b) == b") == "true"
    st2 = status(cn.http)
    conn2 = peer_conn(st2, ex.node)
    assert conn2["bytes_in"] >= conn["bytes_in"] + 200_000, (conn, conn2)
    assert conn2["bytes_out"] >= conn["bytes_out"] + 200_000, (conn, conn2)
    assert conn2["packets_in"] > conn["packets_in"] and conn2["packets_out"] > conn["packets_out"], (conn, conn2)
    assert st2["uptime_ms"] >= st["uptime_ms"], (st, st2)

    r = curl(cn.http, "/metrics")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"), r.headers
    promtool_check(r.body)
    m = Metrics(r.body)
    assert m.get("cnode_dist_bytes_in_total", peer=ex.node) >= conn2["bytes_in"], m.text
    assert m.get("cnode_dist_bytes_out_total", peer=ex.node) >= conn2["bytes_out"], m.text
    assert m.get("cnode_dist_packets_in_total", peer=ex.node) >= conn2["packets_in"], m.text
    assert m.get("cnode_dist_connections") == 1, m.text
    assert m.get("cnode_dist_handshakes_total", direction="in") >= 1, m.text
    assert m.get("cnode_dist_handshakes_total", direction="out") is not None, m.text
    assert m.get("cnode_pg_groups", scope="pg") == 1 and m.get("cnode_pg_peers", scope="pg") == 1, m.text
    # what pg:get_members/2 and pg:get_local_members/2 on cnode return: the probe and ex's member, the probe
    assert m.get("cnode_pg_members", scope="pg") == 2, m.text
    local_members = m.get("cnode_pg_local_members", scope="pg")  # asserted last, == 1
    assert m.get("cnode_global_names") >= 1, m.text
    assert m.get("cnode_processes") >= 2 and m.get("cnode_messages_in_total") >= 1, m.text
    assert m.get("cnode_http_requests_total", path="/status", code="200") >= 2, m.text
    for name, kind in m.types.items():  # counters are named *_total, and every *_total is a counter
        assert (kind == "counter") == name.endswith("_total"), (name, kind)
    for name, _, _ in m.samples:
        assert name in m.types, f"{name} has no TYPE"
    # the server counts each request once: two scrapes in a row differ by exactly one /metrics
    m2 = metrics(cn.http)
    assert m2.get("cnode_http_requests_total", path="/metrics", code="200") == \
        (m.get("cnode_http_requests_total", path="/metrics", code="200") or 0) + 1, (m.text, m2.text)

    # an erl node with the wrong cookie is refused, and counted so; it never shows as a connection
    in_before = m2.get("cnode_dist_handshakes_total", direction="in")
    assert m2.sum("cnode_dist_handshakes_refused_total") == 0, m2.text
    bad = c.erl("bad", cookie="wrong" + c.cookie)
    assert bad.eval(f"net_adm:ping('{cn.node}')") == "pang"
    m3 = harness.wait_until(lambda: (lambda x: x if x.sum("cnode_dist_handshakes_refused_total") >= 1 else None)(
        metrics(cn.http)), 10, "a refused handshake in /metrics")
    reasons = m3.all("cnode_dist_handshakes_refused_total")
    assert all(l.keys() == {"reason"} and l["reason"] for l, _ in reasons), reasons
    assert m3.get("cnode_dist_handshakes_total", direction="in") == in_before, m3.text
    promtool_check(m3.text)
    assert [x["peer"] for x in status(cn.http)["connections"]] == [ex.node]
    print(f"refused handshakes by reason: {reasons}")
    assert local_members == 1, f"cnode_pg_local_members{{scope=\"pg\"}} {local_members}, pg:get_local_members: 1"


def test_not_found_method_not_allowed_and_head(c):
    c.epmd()
    cn = start_http_cnode(c)
    r = curl(cn.http, "/nope")
    assert r.status == 404, r
    r = curl(cn.http, "/status/extra")
    assert r.status == 404, r
    for path in ("/status", "/metrics", "/health"):
        r = curl(cn.http, path, "--data", "")  # POST
        assert r.status == 405, (path, r)
        assert "GET" in r.headers.get("allow", ""), (path, r.headers)
    r = curl(cn.http, "/status", "-X", "DELETE")
    assert r.status == 405, r
    # HEAD: the GET's status and content type, no body
    for path, ctype in (("/status", "application/json"), ("/metrics", "text/plain"), ("/health", "application/json")):
        r = curl(cn.http, path, "-I")
        assert r.status == 200 and r.body == "", (path, r)
        assert r.headers.get("content-type", "").startswith(ctype), (path, r.headers)
    m = metrics(cn.http)
    promtool_check(m.text)
    assert m.get("cnode_http_requests_total", path="other", code="404") >= 2, m.text
    assert {l["path"] for l, _ in m.all("cnode_http_requests_total")} <= PATHS, m.text  # no label per unknown path
    assert m.sum("cnode_http_requests_total") >= 9, m.text


def raw_request(port, request):
    """Sends request bytes, reads until the server closes; returns everything read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_head_content_length_is_the_gets(c):
    """RFC 9110 8.6: a HEAD response's Content-Length, when sent, is the length the GET's body would have."""
    c.epmd()
    cn = start_http_cnode(c)
    get = curl(cn.http, "/health")
    assert get.status == 200 and get.json() == {"status": "ok"}, get
    want = len(get.body.encode())
    assert int(get.headers["content-length"]) == want, get
    # on the wire: no body after the head, and a Content-Length that is the GET's (or none)
    raw = raw_request(cn.http, b"HEAD /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200"), raw
    assert body == b"", raw
    lengths = re.findall(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    assert lengths in ([], [str(want).encode()]), f"HEAD /health sent {head!r}; GET's body is {want} bytes"
    nf = curl(cn.http, "/nope")
    head = curl(cn.http, "/nope", "-I")
    assert head.status == 404, head
    assert head.headers.get("content-length") in (None, str(len(nf.body.encode()))), (nf, head)


def test_health_turns_503_when_epmd_goes(c):
    epmd = c.epmd()  # a real epmd that the test owns, not cnode's embedded one
    cn = start_http_cnode(c)
    r = curl(cn.http, "/health")
    assert r.status == 200 and r.json() == {"status": "ok"}, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    epmd.kill9()
    r = harness.wait_until(lambda: (lambda x: x if x.status == 503 else None)(curl(cn.http, "/health")), 20,
                           "/health to turn 503 after the EPMD died")
    body = r.json()
    assert body["status"] == "unavailable" and isinstance(body["reason"], str) and body["reason"], body
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert cn.alive()
    assert status(cn.http)["node"] == cn.node  # the rest of the server still answers
    m = metrics(cn.http)
    assert m.get("cnode_http_requests_total", path="/health", code="503") >= 1, m.text
    assert m.get("cnode_http_requests_total", path="/health", code="200") >= 1, m.text
    print(f"/health after the EPMD died: {body}")


def test_log_format_json(c):
    c.epmd()
    cookie = 'co"ok\\ie'  # a quote and a backslash: neither breaks the JSON, and the log does not show the cookie
    argv = [harness.bin_path("cnode"), "--sname", f"cnode@{harness.HOST}", "--cookie", cookie, "--epmd-port",
            str(c.epmd_port), "--threads", "2", "--log-format", "json", "--log-level", "debug", "--http-port", "0"]
    cn = SplitProc(c, argv, "cnode")
    node = f"cnode@{harness.HOST}"
    cn.wait_for_err("ready " + node, timeout=20)
    port = int(re.search(r"127\.0\.0\.1:(\d+)", json.loads(cn.wait_for_err(HTTP_LINE))["message"]).group(1))
    ex = c.elixir("ex", cookie=cookie)
    assert ex.eval(f"Node.ping(:\"{node}\")") == ":pong"
    assert ex.eval(f"GenServer.call({{:echo, :\"{node}\"}}, :hi)") == ":hi"
    assert curl(port, "/nope").status == 404
    assert ex.eval(f"Node.disconnect(:\"{node}\")") == "true"
    cn.p.send_signal(signal.SIGTERM)
    assert cn.p.wait(timeout=20) == 0, cn.output()
    # the readers see the end of the output once the process is gone
    harness.wait_until(lambda: any("global: stopped" in l for l in cn.err), 5, "the last log lines")
    with cn._cv:
        out, err = list(cn.out), list(cn.err)
    assert out == [], out
    assert len(err) >= 8, err
    levels = set()
    for line in err:
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict) and set(obj) == {"time", "level", "component", "message"}, line
        assert all(isinstance(v, str) for v in obj.values()), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)", obj["time"]), line
        assert obj["level"] in ("error", "warning", "info", "debug"), line
        assert obj["component"] and obj["message"], line
        levels.add(obj["level"])
    msgs = [json.loads(l)["message"] for l in err]
    assert any(m.startswith("ready " + node) for m in msgs), msgs
    assert any('"' in m for m in msgs), f"no message with a quote: JSON escaping not exercised: {msgs}"
    assert not any(cookie in m for m in msgs) and not any(json.dumps(cookie)[1:-1] in l for l in err), \
        f"the cookie is in the log: {err}"
    assert any(m.startswith("pg: stopped in ") for m in msgs) and any(m.startswith("global: stopped in ")
                                                                        for m in msgs), msgs
    assert any(ex.node in m for m in msgs), f"the Elixir node's connection logged: {msgs}"
    assert "debug" in levels and "info" in levels, levels


harness.main(globals())
