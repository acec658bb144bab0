"""Hardening (issue 15): --cookie-file F: an owner-only file works, a file others can read is refused (exit 1, erl's
wording); the cookie never shows in cnode's output, its command line, :cnode.info/0 or /status. Live: cnode, a
real epmd, a real Elixir node."""
import os
import re
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from hardening_util import HTTP_LINE, curl, status  # noqa: E402


def cookie_file(c, mode, cookie):
    path = os.path.join(c.tmp, f"cookie-{mode:o}")
    with open(path, "w") as f:
        f.write(cookie + "\n")  # as erl writes it, a newline at the end
    os.chmod(path, mode)
    return path


def start(c, path, wait=True):
    argv = [harness.bin_path("cnode"), "--sname", f"cnode@{harness.HOST}", "--cookie-file", path, "--epmd-port",
            str(c.epmd_port), "--threads", "2", "--http-port", "0", "--log-level", "debug"]
    p = c.start(argv, name="cnode")
    p.node = f"cnode@{harness.HOST}"
    if wait:
        p.wait_for_line("ready " + p.node, timeout=20)
    return p


def test_owner_only_cookie_file_works_and_stays_secret(c):
    c.epmd()
    cookie = "Sec" + secrets.token_hex(12)
    c.cookie = cookie  # the Elixir node's
    cn = start(c, cookie_file(c, 0o600, cookie))
    http = int(re.search(r"127\.0\.0\.1:(\d+)", cn.wait_for_line(HTTP_LINE)).group(1))
    ex = c.elixir("ex")
    assert ex.eval(f"Node.ping(:\"{cn.node}\")") == ":pong"
    assert ex.eval(f"GenServer.call({{:echo, :\"{cn.node}\"}}, :hi)") == ":hi"
    info = ex.eval(f":erpc.call(:\"{cn.node}\", :cnode, :info, [])")
    st = curl(http, "/status").body
    metrics = curl(http, "/metrics").body
    with open(f"/proc/{cn.p.pid}/cmdline", "rb") as f:
        cmdline = f.read().decode(errors="replace")
    out = cn.output()
    print(f"owner-only cookie file: pong; {len(out.splitlines())} lines of debug output, :cnode.info {len(info)} "
          f"chars, /status {len(st)} chars: cookie in none of them")
    assert status(http)["node"] == cn.node
    for where, text in (("output", out), (":cnode.info", info), ("/status", st), ("/metrics", metrics),
                        ("cmdline", cmdline)):
        assert cookie not in text, f"the cookie is in cnode's {where}:\n{text}"
    # a wrong cookie is still refused: the file's cookie is the one in use
    bad = c.elixir("bad", cookie="x" + cookie)
    assert bad.eval(f"Node.ping(:\"{cn.node}\")") == ":pang"
    assert cookie not in cn.output()


def test_cookie_file_others_can_read_is_refused(c):
    c.epmd()
    cookie = "Sec" + secrets.token_hex(12)
    for mode in (0o644, 0o640, 0o604):
        path = cookie_file(c, mode, cookie)
        cn = start(c, path, wait=False)
        rc = cn.p.wait(timeout=10)
        harness.wait_until(lambda: cn._eof, 5, "the end of cnode's output")
        out = cn.output()
        print(f"cookie file mode {mode:o}: exit {rc}: {out.strip().splitlines()[-1] if out.strip() else ''}")
        assert rc == 1, (mode, rc, out)
        assert "must be accessible by owner only" in out and path in out, out
        assert cookie not in out, out
        assert "ready" not in out and "registered" not in out, out
    # a missing file: an error as well, not a cookie made up
    cn = start(c, os.path.join(c.tmp, "none"), wait=False)
    assert cn.p.wait(timeout=10) != 0
    harness.wait_until(lambda: cn._eof, 5, "the end of cnode's output")
    assert not os.path.exists(os.path.join(c.tmp, "none")), "cnode created the missing cookie file"


harness.main(globals())
