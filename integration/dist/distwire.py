"""Small wire helpers for the dist live tests: EPMD registration and lookup by hand (the epmd/ client is someone
else's work in progress), starting dist-probe, and Recorder (a recording proxy for one distribution connection)."""
import socket
import struct
import subprocess
import threading
import time

import harness


def epmd_register(epmd_port, name, port, hidden=False, timeout=5.0):
    """ALIVE2_REQ for `name` (the part before @) at `port`. Returns (socket, creation); the registration lasts as
    long as the socket stays open."""
    s = socket.create_connection(("127.0.0.1", epmd_port), timeout=timeout)
    nb = name.encode()
    req = bytes([120]) + struct.pack(">HBBHHH", port, 72 if hidden else 77, 0, 6, 5, len(nb)) + nb + struct.pack(">H", 0)
    s.sendall(struct.pack(">H", len(req)) + req)
    resp = _recv_exact(s, 2)
    if resp[0] == 118:
        rest = _recv_exact(s, 4)
        creation = struct.unpack(">I", rest)[0]
    elif resp[0] == 121:
        creation = struct.unpack(">H", _recv_exact(s, 2))[0]
    else:
        raise AssertionError(f"unexpected EPMD answer {resp!r}")
    if resp[1] != 0:
        raise AssertionError(f"EPMD refused {name}: result {resp[1]}")
    s.settimeout(None)
    return s, creation


def epmd_port_please(epmd_port, name, timeout=5.0):
    """PORT_PLEASE2_REQ: the distribution port of `name`, or None."""
    with socket.create_connection(("127.0.0.1", epmd_port), timeout=timeout) as s:
        nb = name.encode()
        s.sendall(struct.pack(">H", len(nb) + 1) + bytes([122]) + nb)
        head = _recv_exact(s, 2)
        if head[0] != 119 or head[1] != 0:
            return None
        return struct.unpack(">H", _recv_exact(s, 2))[0]


def _recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError(f"closed after {len(b)} of {n} bytes")
        b += c
    return b


class Probe:
    """A running dist-probe: its port, its output, and commands on its stdin."""

    def __init__(self, c, name="probe", cookie=None, hidden=False, ticktime=None, setuptime=None, register=True,
                 epmd_port=None, name_me=None, extra=()):
        self.name = f"{name}@{harness.HOST}"
        argv = [harness.bin_path("dist-probe"), "--cookie", cookie or c.cookie]
        argv += ["--name-me", name_me] if name_me else ["--name", self.name]
        if hidden:
            argv.append("--hidden")
        if ticktime is not None:
            argv += ["--ticktime", str(ticktime)]
        if setuptime is not None:
            argv += ["--setuptime", str(setuptime)]
        argv += list(extra)
        self.proc = c.start(argv, name=f"probe:{name}", stdin=subprocess.PIPE)
        line = self.proc.wait_for_line("listening ", 10)
        self.port = int(line.split()[1])
        self.epmd_socket = None
        if register:
            self.register(epmd_port or c.epmd_port, name, hidden)

    def register(self, epmd_port, name, hidden=False):
        sock, _ = epmd_register(epmd_port, name, self.port, hidden)
        if self.epmd_socket is None:
            self.epmd_socket = sock
        else:
            self.extra_socket = sock
        return sock

    def unregister(self):
        if self.epmd_socket is not None:
            self.epmd_socket.close()
            self.epmd_socket = None

    def send(self, line):
        self.proc.p.stdin.write((line + "\n").encode())
        self.proc.p.stdin.flush()

    def connect(self, node, port):
        self.send(f"connect {node} 127.0.0.1 {port}")

    def lines(self, prefix):
        return [l for l in self.proc.output().splitlines() if l.startswith(prefix)]

    def wait_for_line(self, needle, timeout=10.0):
        return self.proc.wait_for_line(needle, timeout)

    def wait_for_new_line(self, needle, after, timeout=10.0):
        """Waits for a line containing needle among the lines past index `after`; returns it."""
        def found():
            ls = self.proc.output().splitlines()[after:]
            return next((l for l in ls if needle in l), None)
        return harness.wait_until(found, timeout, f"{self.name}: line with {needle!r}")

    def line_count(self):
        return len(self.proc.output().splitlines())


def erl_port(c, sname, epmd_port=None):
    return harness.wait_until(lambda: epmd_port_please(epmd_port or c.epmd_port, sname), 10,
                              f"{sname} in EPMD")


def elapsed_until(cond, timeout, what):
    t0 = time.monotonic()
    harness.wait_until(cond, timeout, what)
    return time.monotonic() - t0


class Recorder:
    """A TCP proxy for one distribution connection: forwards both directions, optionally strips flags from the
    handshake's 'N' messages, and records the packets that follow the handshake."""

    def __init__(self, target_port, strip_flags=0):
        self.target_port = target_port
        self.strip = strip_flags
        self.lock = threading.Lock()
        self.packets = []  # (direction, bytes); direction is the sending node: "b" or "c"
        self.flags_seen = {}
        self.errors = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.socks = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target_port))
            self.socks += [down, up]
            # The connecting side (b) is the initiator: its handshake ends with 'r'; c's ends with 'a'.
            threading.Thread(target=self._pump, args=(down, up, "b", ord("r")), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, "c", ord("a")), daemon=True).start()

    def _pump(self, src, dst, who, last_handshake_tag):
        buf = b""
        handshake = True
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                out = b""
                while True:
                    hlen = 2 if handshake else 4
                    if len(buf) < hlen:
                        break
                    n = int.from_bytes(buf[:hlen], "big")
                    if len(buf) < hlen + n:
                        break
                    msg, buf = buf[hlen:hlen + n], buf[hlen + n:]
                    if handshake:
                        if msg[:1] == b"N" and len(msg) >= 9:
                            flags = struct.unpack(">Q", msg[1:9])[0]
                            self.flags_seen[who] = flags
                            msg = msg[:1] + struct.pack(">Q", flags & ~self.strip) + msg[9:]
                        if msg[:1] == bytes([last_handshake_tag]):
                            handshake = False
                    elif n > 0:
                        with self.lock:
                            self.packets.append((who, msg))
                    out += n.to_bytes(hlen, "big") + msg
                if out:
                    dst.sendall(out)
        except OSError as e:
            self.errors.append(repr(e))
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def snapshot(self):
        with self.lock:
            return list(self.packets)

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
