"""Differential test: the same request sequences go to the real `epmd -port P` and to `cnode-epmd --port Q`, and the
transcripts (bytes answered, and whether the connection was closed or kept) must be equal, creation values and the
file descriptors that DUMP prints aside (those are replaced by what they mean: 'new', 'previous+1', '16-bit')."""
import re
import struct
import time

import harness
from epmd_wire import (DUMP_REQ, KILL_REQ, NAMES_REQ, PORT_PLEASE2_REQ, STOP_REQ, Wire, alive2, packet)


def start_pair(c, relaxed=False):
    """Real epmd and cnode-epmd on two free ports; returns (real Wire, ours Wire, real Proc, our Proc)."""
    p_real, p_ours = harness.free_port(), harness.free_port()
    real = c.start(["epmd", "-port", str(p_real)] + (["-relaxed_command_check"] if relaxed else []), name="epmd")
    ours = c.start([harness.bin_path("cnode-epmd"), "--port", str(p_ours), "--log-level", "info"]
                   + (["--relaxed-command-check"] if relaxed else []), name="cnode-epmd")
    harness.wait_until(lambda: harness._connects(p_real), 10, "epmd to listen")
    ours.wait_for_line("listening on port")
    return Wire(p_real), Wire(p_ours), real, ours


class Transcript:
    """Records answers with the server-specific parts (own port, creations, fds) replaced by their meaning."""

    def __init__(self, wire):
        self.w = wire
        self.lines = []
        self.creations = {}

    def note(self, label, value):
        self.lines.append((label, value))

    def norm(self, data):
        if len(data) >= 4 and struct.unpack(">I", data[:4])[0] == self.w.port:
            data = b"<PORT>" + data[4:]
        return re.sub(rb"fd = \d+", b"fd = <FD>", data)

    def req(self, label, payload):
        data, state = self.w.request(payload)
        self.note(label, (self.norm(data), state))

    def raw(self, label, data):
        got, state = self.w.raw(data)
        self.note(label, (self.norm(got), state))

    def creation_meaning(self, name, resp):
        if len(resp) == 4:
            return ("16-bit", resp[0], resp[1], struct.unpack(">H", resp[2:])[0] in (1, 2, 3))
        if len(resp) != 6:
            return ("bad", resp)
        tag, result, cr = resp[0], resp[1], struct.unpack(">I", resp[2:])[0]
        if result != 0:
            return (tag, result, cr)  # the refused form carries 99 on both
        prev = self.creations.get(name)
        self.creations[name] = cr
        if prev is not None and cr == prev + 1:
            return (tag, result, "previous+1")
        if abs(cr - (int(time.time()) + 1)) <= 5:
            return (tag, result, "new (time-based)")
        return (tag, result, "unexpected", cr, prev)

    def trickle(self, label, data):
        """Sends data one byte at a time (a slow client); every byte is its own TCP segment."""
        s = self.w.connect()
        s.setsockopt(__import__("socket").IPPROTO_TCP, __import__("socket").TCP_NODELAY, 1)
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
            time.sleep(0.005)  # pacing: each byte its own TCP segment (the slow client under test), not a wait
        got, state = Wire.read_until_closed(s)
        s.close()
        self.note(label, (self.norm(got), state))

    def register(self, label, name, **kw):
        s, resp = self.w.register(name, **kw)
        self.note(label, (self.creation_meaning(name, resp), Wire.still_open(s)))
        return s


def scenario_basic(t):
    t.req("names empty", bytes([NAMES_REQ]))
    t.req("dump empty", bytes([DUMP_REQ]))
    a = t.register("register a", "a", port=5001, extra=b"EX")
    t.req("names a", bytes([NAMES_REQ]))
    t.req("port please a", bytes([PORT_PLEASE2_REQ]) + b"a")
    t.req("port please a NUL-terminated", bytes([PORT_PLEASE2_REQ]) + b"a\0")
    t.req("port please missing", bytes([PORT_PLEASE2_REQ]) + b"zz")
    dup = t.register("register a again", "a", port=5002)
    t.req("names still a", bytes([NAMES_REQ]))
    dup.close()
    b = t.register("register b hidden v5", "b", port=5003, node_type=72, high=5, low=5)
    t.req("port please b", bytes([PORT_PLEASE2_REQ]) + b"b")
    t.req("names a b", bytes([NAMES_REQ]))
    t.req("dump a b", bytes([DUMP_REQ]))
    a.close()
    t.note("names after a closed", t.w.wait_names("name b at port 5003\n"))
    t.req("dump with unused a", bytes([DUMP_REQ]))
    a2 = t.register("re-register a", "a", port=5004)
    t.req("names b a", bytes([NAMES_REQ]))
    t.req("kill with live nodes", bytes([KILL_REQ]))
    t.req("stop without relaxed check", bytes([STOP_REQ]) + b"a")
    a2.sendall(b"\x00")  # any byte on an ALIVE connection unregisters
    t.note("data on ALIVE connection", Wire.read_until_closed(a2))
    t.note("names after data", t.w.wait_names("name b at port 5003\n"))
    b.close()
    t.note("names after all closed", t.w.wait_names(""))


def scenario_malformed(t):
    t.raw("length 0", b"\x00\x00")
    t.raw("length 3058 (too big)", b"\x0b\xf2n")
    t.raw("two requests in one packet", packet(b"n") + packet(b"n"))
    t.raw("names with a spare byte", packet(b"n\x00"))
    t.req("unknown tag", b"Q")
    t.req("ALIVE2 13 bytes", bytes([120]) + b"\x00" * 12)
    t.req("ALIVE2 Nlen too big", bytes([120]) + struct.pack(">HBBHHH", 5000, 77, 0, 6, 5, 10) + b"ab\0\0")
    t.req("ALIVE2 Elen too big", bytes([120]) + struct.pack(">HBBHHH", 5000, 77, 0, 6, 5, 2) + b"ab\0\x09xyz")
    t.req("ALIVE2 NUL in name", bytes([120]) + struct.pack(">HBBHHH", 5000, 77, 0, 6, 5, 2) + b"a\0\0\0")
    t.raw("ALIVE2 then trailing bytes", packet(alive2("tr")) + b"TRAILING")
    s = t.register("name of 256 characters", "x" * 256)
    s.close()
    s = t.register("name of 255 characters", "y" * 255)
    s.close()
    s = t.register("name of invalid UTF-8", b"\xff\xfe")
    s.sendall(b"x")
    t.note("data on a refused registration", Wire.read_until_closed(s))
    s = t.register("extra of 1021 bytes", "e1", extra=b"e" * 1021)
    s.close()
    s = t.register("extra of 1020 bytes", "e2", extra=b"e" * 1020)
    t.req("port please e2", bytes([PORT_PLEASE2_REQ]) + b"e2")
    t.trickle("port please e2 a byte at a time", packet(bytes([PORT_PLEASE2_REQ]) + b"e2"))
    t.trickle("names a byte at a time", packet(bytes([NAMES_REQ])))
    s.close()
    empty = Wire.connect(t.w)
    empty.sendall(packet(bytes([120]) + struct.pack(">HBBHHH", 5000, 77, 0, 6, 5, 0) + b"\0\0Z"))
    t.note("empty name registration", (Wire.read_exact(empty, 2), Wire.still_open(empty)))
    t.req("names with the empty name", bytes([NAMES_REQ]))
    empty.close()
    t.req("port please empty", bytes([PORT_PLEASE2_REQ]))
    t.req("port please NUL", bytes([PORT_PLEASE2_REQ]) + b"\0\0")
    t.req("port please embedded NUL", bytes([PORT_PLEASE2_REQ]) + b"a\0b")
    t.req("port please invalid UTF-8", bytes([PORT_PLEASE2_REQ]) + b"\xff")
    t.req("port please 256 characters", bytes([PORT_PLEASE2_REQ]) + b"q" * 256)
    t.req("port please UTF-8 name", bytes([PORT_PLEASE2_REQ]) + "é".encode())
    s = t.register("register UTF-8 name", "é", port=5010)
    t.req("port please UTF-8 registered", bytes([PORT_PLEASE2_REQ]) + "é".encode())
    t.req("names UTF-8", bytes([NAMES_REQ]))
    s.close()
    t.note("names after UTF-8 closed", t.w.wait_names(""))
    t.req("stop empty", bytes([STOP_REQ]))
    t.req("kill with spare byte, no nodes", b"kk")  # answered OK: the server stops


def scenario_relaxed(t):
    a = t.register("register a", "a", port=5001)
    t.req("stop missing", bytes([STOP_REQ]) + b"nope")
    t.req("stop a", bytes([STOP_REQ]) + b"a")
    t.note("a's connection after stop", Wire.read_until_closed(a))
    t.req("dump after stop", bytes([DUMP_REQ]))
    a2 = t.register("re-register a", "a", port=5001)
    t.req("stop empty", bytes([STOP_REQ]))
    t.req("kill with live nodes", bytes([KILL_REQ]))
    a2.close()


def compare(c, scenario, relaxed=False, expect_exit=False):
    real, ours, p_real, p_ours = start_pair(c, relaxed)
    tr, to = Transcript(real), Transcript(ours)
    scenario(tr)
    scenario(to)
    mismatches = [(a, b) for a, b in zip(tr.lines, to.lines) if a != b]
    report = "\n".join(f"  {a[0]}:\n    epmd:       {a[1]!r}\n    cnode-epmd: {b[1]!r}" for a, b in mismatches)
    assert len(tr.lines) == len(to.lines) and not mismatches, f"{len(mismatches)} differences:\n{report}"
    if expect_exit:
        harness.wait_until(lambda: not p_real.alive(), 5, "epmd to exit after KILL")
        harness.wait_until(lambda: not p_ours.alive(), 5, "cnode-epmd to exit after KILL")
        assert p_ours.p.returncode == 0, p_ours.p.returncode
    return tr.lines


def test_basic_sequence(c):
    lines = compare(c, scenario_basic)
    for label, value in lines:
        print(f"  {label}: {value!r}"[:160])
    d = dict(lines)
    assert d["register a again"][0] == (118, 1, 99), d["register a again"]  # refused, creation 99, kept open
    assert d["register a again"][1] is True
    assert d["re-register a"][0][2] == "previous+1", d["re-register a"]


def test_malformed_requests(c):
    compare(c, scenario_malformed, expect_exit=True)


def test_relaxed_command_check(c):
    lines = compare(c, scenario_relaxed, relaxed=True, expect_exit=True)
    assert dict(lines)["stop missing"][0] == b"NOEXISTSTOPPED"


harness.main(globals())
