"""cnode's EPMD client (through integration/epmd/epmd_client_tool) against the real `epmd -port P`: register, look
up, list, unregister on close, name conflicts, both creation forms, errors that say what happened."""
import re
import subprocess

import harness

TOOL = harness.bin_path("epmd_client_tool")


def tool(c, *args, timeout=20):
    """Runs a one-shot command; returns (exit code, stdout lines)."""
    r = subprocess.run([TOOL, *args], env={**__import__("os").environ, **c.env()}, capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout.splitlines()


def register(c, name, port, *flags):
    p = c.start([TOOL, "register", name, str(port), *flags], stdin=subprocess.PIPE, name=f"register {name}")
    line = p.wait_for_line("registered", timeout=10) if not flags or "fail" not in flags else None
    return p, line


def close(p):
    p.p.stdin.write(b"close\n")
    p.p.stdin.flush()
    p.wait_for_line("closed")


def real_names(c):
    out = subprocess.run(["epmd", "-port", str(c.epmd_port), "-names"], capture_output=True, text=True, timeout=10)
    return out.stdout


def test_register_lookup_list_unregister(c):
    c.epmd()
    a, line = register(c, "a", 9100)
    creation = int(re.search(r"creation=(\d+)", line).group(1))
    assert "extended=1" in line and creation > 3, line
    rc, out = tool(c, "port_please", "a")
    assert rc == 0 and out == ["node name=a port=9100 type=77 protocol=0 high=6 low=5 extra="], out
    b, _ = register(c, "b", 9101, "hidden")
    rc, out = tool(c, "port_please", "b")
    assert out == ["node name=b port=9101 type=72 protocol=0 high=6 low=5 extra="], out
    rc, out = tool(c, "names")
    assert out == ["name b port 9101", "name a port 9100", "end"], out
    rc, out = tool(c, "lookup", "a@localhost")
    assert out == ["address localhost 9100"], out
    assert "name a at port 9100" in real_names(c)
    close(a)
    harness.wait_until(lambda: "name a " not in real_names(c), 5, "a to be unregistered")
    rc, out = tool(c, "port_please", "a")
    assert rc == 1 and re.fullmatch(r"error: node a not registered at .*:%d" % c.epmd_port, out[0]), out
    a2, line2 = register(c, "a", 9100)
    assert int(re.search(r"creation=(\d+)", line2).group(1)) == creation + 1, (creation, line2)
    close(a2)
    close(b)


def test_name_conflict(c):
    c.epmd()
    a, _ = register(c, "cnode", 9100)
    rc, out = tool(c, "register", "cnode", "9200")
    assert rc == 1, out
    assert re.fullmatch(r"error: name cnode already registered at (127\.0\.0\.1|\[::1\]):%d" % c.epmd_port,
                        out[0]), out
    rc, out = tool(c, "port_please", "cnode")
    assert "port=9100" in out[0], out  # the first registration is untouched
    close(a)


def test_16_bit_creation(c):
    c.epmd()
    p, line = register(c, "old", 9100, "v5")
    m = re.search(r"creation=(\d+) extended=0", line)
    assert m and 1 <= int(m.group(1)) <= 3, line
    close(p)


def test_epmd_going_away_is_noticed(c):
    epmd = c.epmd()
    p, _ = register(c, "a", 9100)
    epmd.stop()
    p.wait_for_line("lost")


def test_no_epmd(c):
    rc, out = tool(c, "names")
    assert rc == 1 and out[0].startswith(f"error: no EPMD answering at localhost:{c.epmd_port}"), out
    rc, out = tool(c, "answering")
    assert out == ["no"], out
    c.epmd()
    rc, out = tool(c, "answering")
    assert out == ["yes"], out


def test_lookup_of_a_real_erl_node(c):
    c.epmd()
    a = c.erl("a")
    port = int(a.eval("element(2, erl_epmd:port_please(\"a\", \"localhost\"))"))
    rc, out = tool(c, "port_please", "a")
    assert out == [f"node name=a port={port} type=77 protocol=0 high=6 low=5 extra="], out
    rc, out = tool(c, "lookup", "a@localhost")
    assert out == [f"address localhost {port}"], out


harness.main(globals())
