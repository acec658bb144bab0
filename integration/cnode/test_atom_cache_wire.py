"""Issue 14, the atom cache's sending side checked against the BEAM byte for byte. A sender node s@localhost sends
the same message twice to a registered process on c through a recording proxy (integration/dist's Recorder), on a
fresh connection: first an OTP 25 node, then cnode (--dist-atom-cache) under the same node name. For each send the
test compares the distribution header and the payload:
- the number of references, the LongAtoms flag, each reference's text in order, and (for the payload's atoms) whether
  it is a NewCacheEntry or a CachedAtomRef: new the first time, cached the second, as the BEAM decides;
- the payload's bytes, ATOM_CACHE_REF indices included.
The cache slots themselves are each node's own (erts: the atom's index in its atom table modulo 2039; cnode: a hash of
the text modulo 2039): the atoms are chosen so that neither node puts two of them on one slot."""
import os
import sys

import harness
from cnode_node import start_cnode

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "dist"))
from distwire import Recorder, epmd_port_please, epmd_register  # noqa: E402

# Flags newer than cnode's, stripped from the handshake (as test_control_wire.py does): OTP 28+'s ALTACT_SIG and
# OTP 29's NATIVE_RECORDS.
NEWER_THAN_CNODE = (0x20 << 32) | (0x40 << 32)

SENDER = "s@localhost"


def cnode_slot(text):
    """cnode's slot for an atom (etf/atom.cpp hash_bytes, etf::atom_ref_table::slot_of)."""
    h = 1469598103934665603
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 29)) % 2039


def message_atoms(prefix):
    """The atoms of the message, in the order the encoders meet them (after s@localhost, '' and sink)."""
    names = [f"{prefix}_tag"] + [f"{prefix}_{i}" for i in range(1, 21)] + [f"{prefix}_nested", f"{prefix}_b"]
    return names


def long_atom():
    return "\u00e9" * 200  # 200 code points, 400 bytes: LongAtoms


def message_expr(prefix):
    n = message_atoms(prefix)
    a = ", ".join(f"'{x}'" for x in n[1:21])
    return (f"{{'{n[0]}', [{a}], {{'{n[21]}', '{n[22]}', 42}}, <<\"bin\">>, \"str\", "
            f"list_to_atom(lists:duplicate(200, 233)), 3.5, -7, ['{n[1]}' | '{n[2]}']}}")


def parse_packets(packets, who):
    """The sender's normal-header packets, resolved: (refs [(text, new, segment)], long_atoms, body)."""
    cache = {}
    out = []
    for d, p in packets:
        if d != who or p[0] != 131 or p[1] not in (68, 69):
            continue
        pos = 2 if p[1] == 68 else 18
        n = p[pos]
        pos += 1
        refs = []
        long_atoms = False
        if n:
            flags = p[pos:pos + n // 2 + 1]
            pos += n // 2 + 1
            nib = lambda i: (flags[i // 2] >> ((i & 1) * 4)) & 0xF  # noqa: E731
            long_atoms = bool(nib(n) & 1)
            for i in range(n):
                f = nib(i)
                slot = (f & 7) * 256 + p[pos]
                pos += 1
                if f & 8:
                    ln = int.from_bytes(p[pos:pos + 2], "big") if long_atoms else p[pos]
                    pos += 2 if long_atoms else 1
                    text = p[pos:pos + ln].decode("utf-8")
                    pos += ln
                    cache[slot] = text
                    refs.append((text, True))
                else:
                    refs.append((cache[slot], False))
        out.append((refs, long_atoms, p[pos:]))
    return out


def sends_to_sink(parsed, first_atom):
    """REG_SEND {6, From, '', sink} packets whose payload's first atom is first_atom; (refs, long, payload)."""
    found = []
    for refs, long_atoms, body in parsed:
        # Control: 104,4, 97,6, 88,82,I,(12 bytes), 82,I, 82,I: 23 bytes when every atom is a reference.
        if len(body) < 23 or body[:4] != bytes([104, 4, 97, 6]) or body[4] != 88 or body[5] != 82:
            continue
        if body[19] != 82 or body[21] != 82 or refs[body[22]][0] != "sink":
            continue
        payload = body[23:]
        if payload[:2] != bytes([104, 9]) or payload[2] != 82 or refs[payload[3]][0] != first_atom:
            continue
        found.append((refs, long_atoms, payload))
    return found


def start_sink(node_c):
    assert node_c.eval("register(sink, spawn(fun F() -> receive _ -> F() end end))") == "true"


def choose_prefix(node_b):
    """A prefix whose atoms (with the sender's node name, '' and sink) take distinct slots on both nodes."""
    assert node_b.eval("erts_debug:set_internal_state(available_internal_state, true)") in ("true", "false")
    for k in range(50):
        prefix = f"xc{k}"
        names = [SENDER, "", "sink"] + message_atoms(prefix) + [long_atom()]
        if len({cnode_slot(x) for x in names}) != len(names):
            continue
        expr = ("length(lists:usort([erts_debug:get_internal_state({atom_out_cache_index, A}) || A <- "
                f"['{SENDER}', '', sink, list_to_atom(lists:duplicate(200, 233)) | "
                f"[list_to_atom(X) || X <- {str(message_atoms(prefix)).replace(chr(39), chr(34))}]]]))")
        if int(node_b.eval(expr)) == len(names):
            return prefix
    raise AssertionError("no prefix with distinct slots on both nodes")


def run_one(c, tag, use_cnode, prefix=None):
    """One sender through a recorder to a fresh c; returns (prefix, [(refs, long, payload)] of the two sends)."""
    node_c = c.erl(f"c{tag}")
    start_sink(node_c)
    c_port = epmd_port_please(c.epmd_port, f"c{tag}")
    rec = Recorder(c_port, NEWER_THAN_CNODE)
    epmd_s = harness.free_port()
    c.start(["epmd", "-port", str(epmd_s)], name=f"epmd-s{tag}")
    harness.wait_until(lambda: harness._connects(epmd_s), 10, "the sender's epmd to listen")
    reg, _ = epmd_register(epmd_s, f"c{tag}", rec.port)
    target = f"c{tag}@localhost"
    try:
        if not use_cnode:
            s = c.erl("s", env={"ERL_EPMD_PORT": str(epmd_s)})
            prefix = prefix or choose_prefix(s)
            assert s.eval(f"net_kernel:connect_node('{target}')") == "true"
            expr = (f"M = {message_expr(prefix)}, "
                    f"spawn(fun() -> {{sink, '{target}'}} ! M, {{sink, '{target}'}} ! M end), ok")
            assert s.eval(expr) == "ok"
        else:
            argv = [harness.bin_path("cnode"), "--sname", SENDER, "--cookie", c.cookie, "--epmd-port", str(epmd_s),
                    "--threads", "2", "--dist-atom-cache"]
            cn = c.start(argv, name="s-cnode")
            cn.wait_for_line(f"ready {SENDER}", timeout=20)
            d = c.erl("d", env={"ERL_EPMD_PORT": str(epmd_s)})
            assert d.eval(f"rpc:call('{SENDER}', net_kernel, connect_node, ['{target}'])") == "true"
            expr = (f"M = {message_expr(prefix)}, "
                    f"rpc:call('{SENDER}', cnode, bench_flood, [{{sink, '{target}'}}, 2, M])")
            assert d.eval(expr) == "ok"
        first = message_atoms(prefix)[0]
        state = {}

        def both_seen():
            state["sends"] = sends_to_sink(parse_packets(rec.snapshot(), "b"), first)
            return len(state["sends"]) == 2

        harness.wait_until(both_seen, 20, "both sends in the capture")
        assert not rec.errors, rec.errors
        return prefix, state["sends"]
    finally:
        reg.close()
        rec.close()


def test_cnode_headers_match_the_beams(c):
    c.epmd()
    prefix, beam = run_one(c, "1", use_cnode=False)
    _, ours = run_one(c, "2", use_cnode=True, prefix=prefix)
    for i in range(2):
        (brefs, blong, bpay), (crefs, clong, cpay) = beam[i], ours[i]
        print(f"send {i + 1}: BEAM {len(brefs)} refs, {sum(n for _, n in brefs)} new; "
              f"cnode {len(crefs)} refs, {sum(n for _, n in crefs)} new")
        assert [t for t, _ in crefs] == [t for t, _ in brefs], (crefs, brefs)
        assert clong == blong
        assert [n for _, n in crefs[3:]] == [n for _, n in brefs[3:]], (crefs, brefs)
        assert cpay == bpay, (cpay.hex(), bpay.hex())
    # The payload's atoms: new entries the first time, cached references the second, on both.
    assert all(n for _, n in beam[0][0][3:]) and not any(n for _, n in beam[1][0][3:])
    assert beam[0][1], "the long atom sets LongAtoms"


harness.main(globals())
