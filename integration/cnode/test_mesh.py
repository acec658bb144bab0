"""Many cnodes joining a cluster at once (global's connect_all makes them dial each other simultaneously): every
connection comes up once and stays, no connect is reported failed, and global never has to cut a node off to
prevent overlapping partitions."""
import os
import sys

import harness

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnode_node import start_cnode  # noqa: E402


def test_six_cnodes_join_one_erl_node(c):
    c.epmd()
    a = c.erl("a")
    for round_ in range(5):
        cns = []
        for i in range(6):
            cn = start_cnode(c, sname=f"m{round_}x{i}")
            cns.append(cn)
            assert a.eval(f"net_adm:ping('{cn.node}')") == "pong"
        harness.wait_until(lambda: a.eval("length(nodes())") == "6", 20, "all six connected")
        assert a.eval("global:sync()") == "ok"
        assert a.eval("length(nodes())") == "6"
        for cn in cns:
            out = cn.output()
            assert "failed to connect" not in out and " down " not in out, out
        for cn in cns:
            cn.stop()
        harness.wait_until(lambda: a.eval("nodes()") == "[]", 20, "all gone")


harness.main(globals())
