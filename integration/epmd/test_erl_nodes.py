"""Real erl nodes use cnode-epmd as their EPMD: they register, find and ping each other, and the real
`epmd -port P -names` (and net_adm:names/0) list them exactly as they do against the real epmd."""
import re
import subprocess

import harness


def names_cmd(port):
    return subprocess.run(["epmd", "-port", str(port), "-names"], capture_output=True, text=True, timeout=10).stdout


def dist_port(node, name):
    return int(node.eval(f'element(2, erl_epmd:port_please("{name}", "localhost"))'))


def start_pair(c, epmd_port):
    env = {"ERL_EPMD_PORT": str(epmd_port)}
    a = c.erl("a", env=env)
    b = c.erl("b", env=env)
    return a, b


def listing(c, epmd_port):
    a, b = start_pair(c, epmd_port)
    assert a.eval("net_adm:ping(b@localhost)") == "pong"
    assert b.eval("net_adm:ping(a@localhost)") == "pong"
    assert a.eval("lists:sort(nodes())") == "[b@localhost]"
    pa, pb = dist_port(b, "a"), dist_port(a, "b")
    text = names_cmd(epmd_port)
    names = a.eval("net_adm:names()")
    return a, b, pa, pb, text, names


def test_erl_nodes_find_and_ping_each_other(c):
    ours = c.start([harness.bin_path("cnode-epmd"), "--port", str(c.epmd_port)], name="cnode-epmd")
    ours.wait_for_line("listening on port")
    a, b, pa, pb, text, names = listing(c, c.epmd_port)
    assert text == (f"epmd: up and running on port {c.epmd_port} with data:\n"
                    f"name b at port {pb}\nname a at port {pa}\n"), text
    assert names == f'{{ok,[{{"a",{pa}}},{{"b",{pb}}}]}}', names  # net_adm:names/0 reverses epmd's order
    # A registration vanishes with its node.
    a.stop()
    harness.wait_until(lambda: "name a " not in names_cmd(c.epmd_port), 10, "a to leave cnode-epmd")
    assert names_cmd(c.epmd_port) == f"epmd: up and running on port {c.epmd_port} with data:\nname b at port {pb}\n"
    assert b.eval("net_adm:ping(a@localhost)") == "pang"
    # The same name comes back with a new creation, and is found again.
    a2 = c.erl("a", env={"ERL_EPMD_PORT": str(c.epmd_port)})
    assert b.eval("net_adm:ping(a@localhost)") == "pong"
    assert a2.eval("node()") == "a@localhost"


def test_listing_is_the_same_as_with_the_real_epmd(c):
    real_port, ours_port = harness.free_port(), harness.free_port()
    c.start(["epmd", "-port", str(real_port)], name="epmd")
    harness.wait_until(lambda: harness._connects(real_port), 10, "epmd to listen")
    ours = c.start([harness.bin_path("cnode-epmd"), "--port", str(ours_port)], name="cnode-epmd")
    ours.wait_for_line("listening on port")
    results = {}
    for label, port in (("real", real_port), ("ours", ours_port)):
        a, b, pa, pb, text, names = listing(c, port)
        norm = text.replace(str(port), "<EPMD>").replace(f" {pa}\n", " <A>\n").replace(f" {pb}\n", " <B>\n")
        results[label] = (norm, re.sub(r"\d+", "<N>", names))
        a.stop()
        b.stop()
    assert results["real"] == results["ours"], results


harness.main(globals())
