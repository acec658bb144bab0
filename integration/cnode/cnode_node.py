"""Starting the cnode executable inside a harness Cluster."""
import harness


def start_cnode(c, sname="cnode", hidden=False, extra=(), cookie=None, wait=True, name=None, wrap=()):
    """name: a long node name (--name) instead of sname@localhost; wrap: argv put in front (`ip netns exec NS`)."""
    node = name or f"{sname}@{harness.HOST}"
    argv = list(wrap) + [harness.bin_path("cnode"), "--name" if name else "--sname", node, "--cookie",
                         cookie or c.cookie, "--epmd-port", str(c.epmd_port), "--threads", "2"]
    if hidden:
        argv.append("--hidden")
    argv += list(extra)
    p = c.start(argv, name=name or sname)
    p.node = node
    if wait:
        p.wait_for_line("ready " + p.node, timeout=20)
    return p
