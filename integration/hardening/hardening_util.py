"""Helpers of the hardening tests (issue 15): cnode with its HTTP server, the distribution handshake done by hand
(so a test controls every byte before and after the cookie), floods of raw connections, log and CPU readings."""
import hashlib
import os
import re
import secrets
import selectors
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ops"))
sys.path.insert(0, os.path.join(HERE, "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402
from ops_util import HTTP_LINE, Metrics, curl, metrics, status  # noqa: E402

# OTP 25's flags without NAME_ME (as the brief gives them); FLAGS_HIDDEN without PUBLISHED.
FLAGS = 0x0000000D07DF7FBD
FLAGS_HIDDEN = FLAGS & ~1


def start_http_cnode(c, extra=(), prefix=(), **kw):
    """cnode with --http-port 0 (optionally behind a wrapper such as prlimit: prefix); .http and .dist are its
    HTTP and distribution ports, read from its log."""
    cn = start_cnode(c, extra=["--http-port", "0"] + list(extra), **kw) if not prefix else _start_prefixed(
        c, prefix, extra, **kw)
    line = cn.wait_for_line(HTTP_LINE, timeout=10)
    cn.http = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    reg = cn.wait_for_line("registered " + cn.node, timeout=10)
    cn.dist = int(re.search(r"port (\d+)", reg).group(1))
    return cn


def _start_prefixed(c, prefix, extra, sname="cnode", cookie=None):
    argv = list(prefix) + [harness.bin_path("cnode"), "--sname", f"{sname}@{harness.HOST}", "--cookie",
                           cookie or c.cookie, "--epmd-port", str(c.epmd_port), "--threads", "2",
                           "--http-port", "0"] + list(extra)
    p = c.start(argv, name=sname)
    p.node = f"{sname}@{harness.HOST}"
    p.wait_for_line("ready " + p.node, timeout=20)
    return p


def lines_with(proc, needle):
    return [l for l in proc.output().splitlines() if needle in l]


def send_name(name, flags=FLAGS, creation=0x12345678):
    nb = name.encode()
    body = b"N" + struct.pack(">QIH", flags, creation, len(nb)) + nb
    return struct.pack(">H", len(body)) + body


def digest(challenge, cookie):
    return hashlib.md5((cookie + str(challenge)).encode()).digest()


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def client_socket(src):
    """A TCP socket bound to the source address src. Its port is picked at connect time, and SO_REUSEADDR lets
    another test's listener (epmd, erl: they set it too) bind a port number that one of the thousands of
    connections of a flood happens to use: floods here must not make a parallel test's free_port() fail."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass
    s.bind((src, 0))
    return s


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError(f"closed after {len(b)} of {n} bytes")
        b += chunk
    return b


def recv_msg(s):
    (n,) = struct.unpack(">H", recv_exact(s, 2))
    return recv_exact(s, n)


class Refused(Exception):
    pass


def handshake(port, name, cookie, flags=FLAGS_HIDDEN, src="127.0.0.1", timeout=10.0):
    """The initiator's side of the version-6 handshake (dist_util.erl) against 127.0.0.1:port. Returns the
    connected socket, 4-byte framing from now on; raises Refused when the peer says no or closes (wrong cookie)."""
    s = client_socket(src)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(send_name(name, flags))
        st = recv_msg(s)
        if st[:1] != b"s" or st[1:] not in (b"ok", b"ok_simultaneous"):
            raise Refused(f"status {st!r}")
        ch = recv_msg(s)
        if ch[:1] != b"N":
            raise Refused(f"challenge {ch!r}")
        _, their_challenge, _, _ = struct.unpack(">QIIH", ch[1:19])
        ours = secrets.randbits(32)
        reply = b"r" + struct.pack(">I", ours) + digest(their_challenge, cookie)
        s.sendall(struct.pack(">H", len(reply)) + reply)
        try:
            ack = recv_msg(s)
        except (EOFError, ConnectionResetError) as e:
            raise Refused(f"closed after the challenge reply: {e}")
        if ack != b"a" + digest(ours, cookie):
            raise Refused(f"challenge ack {ack!r}")
        return s
    except BaseException:
        s.close()
        raise


def rst_close(s):
    """Closes with a reset: no TIME_WAIT left behind on our side, however many connections a test makes."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def flood(port, payloads, concurrency=200, wait_reply=0, srcs=("127.0.0.1",), timeout=60.0):
    """Opens one connection per payload (at most `concurrency` at a time, round robin over the source addresses),
    sends the payload and, once wait_reply bytes came back (0: at once) or the peer closed, resets the
    connection. Returns (completed, replied, closed_by_peer)."""
    sel = selectors.DefaultSelector()
    it = iter(enumerate(payloads))
    live = 0
    done = replied = closed = 0
    deadline = time.monotonic() + timeout
    exhausted = False

    def start():
        nonlocal live, exhausted
        try:
            i, payload = next(it)
        except StopIteration:
            exhausted = True
            return
        s = client_socket(srcs[i % len(srcs)])
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, [payload, b""])
        live += 1

    while not exhausted and live < concurrency:
        start()
    while live:
        if time.monotonic() > deadline:
            raise AssertionError(f"flood: {done} of the connections done in {timeout}s, {live} still open")
        for key, ev in sel.select(1.0):
            s, st = key.fileobj, key.data
            finished = False
            if ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finished = True
                    closed += 1
                else:
                    try:
                        s.send(st[0])
                    except OSError:
                        closed += 1
                        finished = True
                    if not finished:
                        if wait_reply:
                            sel.modify(s, selectors.EVENT_READ, st)
                        else:
                            finished = True
            elif ev & selectors.EVENT_READ:
                try:
                    chunk = s.recv(4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    closed += 1
                    finished = True
                else:
                    st[1] += chunk
                    if len(st[1]) >= wait_reply:
                        replied += 1
                        finished = True
            if finished:
                sel.unregister(s)
                rst_close(s)
                live -= 1
                done += 1
                while not exhausted and live < concurrency:
                    start()
    sel.close()
    return done, replied, closed


def idle_connections(port, n, srcs=("127.0.0.1",)):
    """n connected sockets that send nothing, spread over the source addresses."""
    out = []
    for i in range(n):
        s = client_socket(srcs[i % len(srcs)])
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        out.append(s)
    sel = selectors.DefaultSelector()
    for s in out:
        sel.register(s, selectors.EVENT_WRITE)
    pending = len(out)
    deadline = time.monotonic() + 20
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            sel.unregister(key.fileobj)
            pending -= 1
    sel.close()
    return out


def closed_by_peer(socks):
    """How many of the sockets the peer has closed (EOF or reset waiting to be read)."""
    n = 0
    for s in socks:
        before = s.gettimeout()
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                n += 1
        except BlockingIOError:
            pass
        except OSError:
            n += 1
        finally:
            s.settimeout(before)
    return n


def close_all(socks):
    for s in socks:
        rst_close(s)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(n, soft), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def elixir_with_cn(c, cn, name="ex", cookie=None):
    ex = c.elixir(name, cookie=cookie)
    ex.eval(f"Process.put(:cn, :\"{cn.node}\")")
    return ex


def timed_ping(ex):
    """Node.ping from the Elixir node, timed inside it: (result, milliseconds)."""
    out = ex.eval("t = System.monotonic_time(:microsecond); r = Node.ping(Process.get(:cn)); "
                  "{r, System.monotonic_time(:microsecond) - t}")
    r, us = re.fullmatch(r"\{(:\w+), (\d+)\}", out).groups()
    return r, int(us) / 1000.0
