"""Starting the cnode executable inside a harness Cluster."""
import harness


def start_cnode(c, sname="cnode", hidden=False, extra=(), cookie=None, wait=True):
    argv = [harness.bin_path("cnode"), "--sname", f"{sname}@{harness.HOST}", "--cookie", cookie or c.cookie,
            "--epmd-port", str(c.epmd_port), "--threads", "2"]
    if hidden:
        argv.append("--hidden")
    argv += list(extra)
    p = c.start(argv, name=sname)
    p.node = f"{sname}@{harness.HOST}"
    if wait:
        p.wait_for_line("ready " + p.node, timeout=20)
    return p
