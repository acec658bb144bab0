"""cnode-etf from a shell user's side, with a live erl as the reference: `encode` writes term_to_binary's bytes
(plain, compressed, UTF-8 atoms), `print` writes text that erl reads back to the same term, `roundtrip` answers
every frame in order, malformed ones with {error, Reason, Offset}; usage errors and exit codes.
"""
import ast
import os
import struct
import subprocess

import harness

TOOL = harness.bin_path("cnode-etf")


def tool(*args, stdin=b"", timeout=60):
    return subprocess.run([TOOL, *args], input=stdin, capture_output=True, timeout=timeout)


def erl_bytes(node, expr):
    """The bytes of the binary an Erlang expression returns."""
    return bytes(ast.literal_eval(node.eval(f"binary_to_list({expr})")))


TERMS = [
    '{ok, [1,2,3], #{a => <<"b">>}, -5}',
    # Non-ASCII through escapes: the erl agent reads its stdin as Latin-1.
    '"h\\x{e9}llo w\\x{f6}rld \\x{1F600}"',
    "'\\x{3a9}mega'",
    "[a|b]",
    "<<1,2:3>>",
    "1.0e300",
    "-0.0",
    "123456789012345678901234567890",
    "-4294967296",
    "fun lists:map/2",
    "#{{1,2} => [x], 1 => a, 1.0 => b}",
    "[]",
    "''",
]


def test_usage_and_exit_codes(c):
    r = tool("--help")
    assert r.returncode == 0 and b"roundtrip --packet N" in r.stdout, r
    for argv, needle in [((), b"missing command"), (("frobnicate",), b"unknown command"),
                         (("roundtrip",), b"--packet"), (("roundtrip", "--packet", "3"), b"--packet takes"),
                         (("encode", "--compressed=12", "a"), b"0..9"), (("print", "--bogus"), b"unknown option"),
                         (("encode", "a", "b"), b"at most one")]:
        r = tool(*argv)
        assert r.returncode == 2, (argv, r)
        assert needle in r.stderr and b"--help" in r.stderr, (argv, r.stderr)
    r = tool("print", os.path.join(c.tmp, "does-not-exist"))
    assert r.returncode == 3 and b"cannot open" in r.stderr, r
    r = tool("print", stdin=b"\x83\x68\x02\x61")
    assert r.returncode == 1 and b"truncated" in r.stderr and b"at byte 4" in r.stderr, r
    r = tool("print", stdin=b"")
    assert r.returncode == 1 and b"empty" in r.stderr, r
    r = tool("encode", "{a,")
    assert r.returncode == 1 and b"line 1, column" in r.stderr, r


def test_encode_is_term_to_binary(c):
    a = c.erl("a")
    for text in TERMS:
        for opts, erl_opts in [((), "[]"), (("--compressed",), "[compressed]"), (("--compressed=1",), "[{compressed, 1}]"),
                               (("--compressed=9",), "[{compressed, 9}]"), (("--utf8-atoms",), "[{minor_version, 2}]")]:
            r = tool("encode", text, *opts)
            assert r.returncode == 0, (text, opts, r.stderr)
            want = erl_bytes(a, f"term_to_binary({text}, {erl_opts})")
            assert r.stdout == want, (text, opts, list(r.stdout), list(want))
    # The term may come from standard input, and may start with a minus sign.
    r = tool("encode", "-", stdin=b"{from, stdin}.\n")
    assert r.returncode == 0 and r.stdout == erl_bytes(a, "term_to_binary({from, stdin})"), r
    r = tool("encode", "-42")
    assert r.returncode == 0 and r.stdout == erl_bytes(a, "term_to_binary(-42)"), r
    # UTF-8 text on the command line is the same as the escapes.
    assert tool("encode", "{'\u03a9mega', \"h\u00e9\"}").stdout == tool("encode", "{'\\x{3a9}mega', \"h\\x{e9}\"}").stdout


def test_print_reads_back_in_erl(c):
    a = c.erl("a")
    for i, text in enumerate(TERMS + ['list_to_pid("<0.85.0>")', "make_ref()", "fun(X) -> X + 1 end"]):
        etf = os.path.join(c.tmp, f"t{i}.etf")
        a.eval(f'file:write_file("{etf}", term_to_binary({text}))')
        r = tool("print", etf)
        assert r.returncode == 0, (text, r.stderr)
        printed = r.stdout.decode().rstrip("\n")
        if text.startswith(("list_to_pid", "make_ref", "fun(")):
            assert printed.startswith(("<", "#Ref<", "#Fun<")), (text, printed)  # no literal syntax in Erlang
            continue
        src = os.path.join(c.tmp, f"t{i}.txt")
        with open(src, "w", encoding="utf-8") as f:
            f.write(printed + ".\n")
        assert a.eval(f'begin {{ok, [P]}} = file:consult("{src}"), P =:= ({text}) end') == "true", (text, printed)
    # Standard input works the same.
    r = tool("print", "-", stdin=erl_bytes(a, "term_to_binary({a, [1.5]})"))
    assert r.returncode == 0 and r.stdout == b"{a,[1.5]}\n", r


def frames(payloads, packet=4):
    fmt = {1: ">B", 2: ">H", 4: ">I"}[packet]
    return b"".join(struct.pack(fmt, len(p)) + p for p in payloads)


def unframe(data, packet=4):
    fmt = {1: ">B", 2: ">H", 4: ">I"}[packet]
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from(fmt, data, i)
        out.append(data[i + packet:i + packet + n])
        i += packet + n
    assert i == len(data), "reply stream ends inside a frame"
    return out


def test_roundtrip_answers_every_frame_in_order(c):
    a = c.erl("a")
    good = [erl_bytes(a, f"term_to_binary({t})") for t in TERMS]
    bad = {  # input -> (Reason, Offset) as the reply must say
        b"": ("truncated", 0),
        b"\x83": ("truncated", 1),
        b"\x82\x61\x01": ("bad_version", 0),
        b"\x83\xc8": ("unknown_tag", 1),
        b"\x83\x6a\x00": ("trailing_bytes", 2),
        b"\x83\x74\x00\x00\x00\x02\x61\x01\x61\x02\x61\x01\x61\x03": ("bad_map", 1),
        b"\x83\x4d\x00\x00\x00\x01\x09\xff": ("bad_bit_length", 6),
        b"\x83\x77\x02\xc3\x28": ("invalid_atom", 1),
        b"\x83\x50\xff\xff\xff\xff\x78\x9c\x03\x00\x00\x00\x00\x01": ("compressed_too_large", 1),
        b"\x83\x6c\xff\xff\xff\xff\x6a": ("bad_length", 2),
    }
    stream, want = [], []
    for i, g in enumerate(good):
        stream.append(g)
        want.append(g)
        b, (reason, off) = list(bad.items())[i % len(bad)]
        stream.append(b)
        want.append(erl_bytes(a, f"term_to_binary({{error, {reason}, {off}}})"))
    for packet in (4, 2, 1):
        if packet == 1:  # only what fits a 1-byte length
            pairs = [(s, w) for s, w in zip(stream, want) if len(s) < 256 and len(w) < 256]
            ins, outs = [p[0] for p in pairs], [p[1] for p in pairs]
        else:
            ins, outs = stream, want
        r = tool("roundtrip", "--packet", str(packet), stdin=frames(ins, packet))
        assert r.returncode == 0, (packet, r.stderr)
        got = unframe(r.stdout, packet)
        assert len(got) == len(outs), (packet, len(got), len(outs))
        for i, (g, w) in enumerate(zip(got, outs)):
            assert g == w, (packet, i, ins[i], list(g), list(w))


def test_roundtrip_many_frames_and_a_cut_stream(c):
    payloads = [b"\x83\x61" + bytes([i % 256]) for i in range(50000)]
    r = tool("roundtrip", "--packet", "4", stdin=frames(payloads))
    assert r.returncode == 0 and unframe(r.stdout) == payloads, r.stderr
    # A stream that ends inside a frame: every whole frame is answered, then a message and status 1.
    cut = frames(payloads[:3]) + struct.pack(">I", 10) + b"\x83\x61"
    r = tool("roundtrip", "--packet", "4", stdin=cut)
    assert unframe(r.stdout) == payloads[:3], r
    assert r.returncode == 1 and b"inside a frame" in r.stderr, r


def test_roundtrip_compressed_output(c):
    a = c.erl("a")
    t = "lists:duplicate(200, {abc, 1})"
    src = erl_bytes(a, f"term_to_binary({t})")
    for level in (1, 6, 9):
        r = tool("roundtrip", "--packet", "4", f"--compressed={level}", stdin=frames([src]))
        assert r.returncode == 0, r.stderr
        assert unframe(r.stdout) == [erl_bytes(a, f"term_to_binary({t}, [{{compressed, {level}}}])")]


harness.main(globals())
