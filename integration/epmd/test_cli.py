"""The cnode-epmd program: options, its client commands (--names, --kill, --stop, like epmd's), a port already
taken, --address, and the real `epmd -kill/-stop` talking to it."""
import subprocess

import harness

EPMD = harness.bin_path("cnode-epmd")


def run(*argv, env=None, timeout=20):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                       env={**__import__("os").environ, **(env or {})})
    return r.returncode, r.stdout, r.stderr


def start(c, *extra):
    p = c.start([EPMD, "--port", str(c.epmd_port), *extra], name="cnode-epmd")
    p.wait_for_line("listening on port")
    return p


def test_help_and_bad_options(c):
    rc, out, _ = run(EPMD, "--help")
    assert rc == 0 and "--port" in out and "--address" in out and "--log-level" in out, out
    rc, _, err = run(EPMD, "--port", "70000")
    assert rc == 2 and "not a port number" in err, err
    rc, _, err = run(EPMD, "--log-level", "loud")
    assert rc == 2 and "--log-level" in err, err
    rc, _, err = run(EPMD, "--bogus")
    assert rc == 2 and "unknown option" in err, err


def test_port_from_environment_and_names(c):
    p = c.start([EPMD], name="cnode-epmd")  # ERL_EPMD_PORT comes from the cluster's environment
    assert p.wait_for_line("listening on port").endswith(str(c.epmd_port))
    a = c.erl("a")
    port = a.eval('element(2, erl_epmd:port_please("a", "localhost"))')
    rc, out, _ = run(EPMD, "--names", env=c.env())
    assert rc == 0 and out == f"epmd: up and running on port {c.epmd_port} with data:\nname a at port {port}\n", out


def test_port_taken_by_an_epmd(c):
    c.epmd()
    rc, _, err = run(EPMD, "--port", str(c.epmd_port), timeout=10)
    assert rc == 0 and "already answering" in err, err


def test_port_taken_by_something_else(c):
    import socket
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    try:
        rc, _, err = run(EPMD, "--port", str(s.getsockname()[1]), timeout=10)
        assert rc == 1 and "in use" in err, err
    finally:
        s.close()


def test_kill_and_stop_from_the_real_epmd_client(c):
    p = start(c, "--relaxed-command-check")
    a = c.erl("a")
    out = subprocess.run(["epmd", "-port", str(c.epmd_port), "-stop", "a"], capture_output=True, text=True,
                         timeout=10).stdout
    assert out.strip() == "STOPPED", out
    harness.wait_until(lambda: "name a " not in run(EPMD, "--names", env=c.env())[1], 5, "a to be unregistered")
    out = subprocess.run(["epmd", "-port", str(c.epmd_port), "-kill"], capture_output=True, text=True,
                         timeout=10).stdout
    assert out.strip() == "Killed", out
    harness.wait_until(lambda: not p.alive(), 5, "cnode-epmd to exit")
    assert p.p.returncode == 0


def test_kill_refused_with_live_nodes_then_ours(c):
    p = start(c)
    a = c.erl("a")
    rc, out, _ = run(EPMD, "--kill", env=c.env())
    assert rc == 1 and out.strip() == "NO", out
    rc, out, _ = run(EPMD, "--stop", "a", env=c.env())
    assert rc == 1 and "refused" in out, out
    a.stop()
    harness.wait_until(lambda: "name a " not in run(EPMD, "--names", env=c.env())[1], 5, "a to be unregistered")
    rc, out, _ = run(EPMD, "--kill", env=c.env())
    assert rc == 0 and out.strip() == "OK", out
    harness.wait_until(lambda: not p.alive(), 5, "cnode-epmd to exit")


def test_address_option_listens_on_loopback_only(c):
    start(c, "--address", "127.0.0.1", "--log-level", "info")
    rc, out, _ = run(EPMD, "--names", env=c.env())
    assert rc == 0 and out.startswith("epmd: up and running"), out
    ss = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    listening = [l.split()[3] for l in ss.splitlines()[1:] if l.split()[3].endswith(f":{c.epmd_port}")]
    assert sorted(listening) == sorted([f"127.0.0.1:{c.epmd_port}", f"[::1]:{c.epmd_port}"]), listening


harness.main(globals())
