"""The BEAM as the oracle for the ETF codec: an Erlang node generates 100 000+ random terms (etf_gen.erl: every tag,
integer and float edges, UTF-8 atoms, million-deep nesting, big maps, bitstrings, funs, pids/ports/refs of this node,
of a second real node and crafted ones) and pipes term_to_binary of each through `cnode-etf roundtrip --packet 4`
(etf_diff.erl). binary_to_term of every reply must be =:= the input, and the reply must be byte-identical to
term_to_binary of the input unless a map of more than 32 keys is inside.

Seeded: CNODE_ETF_SEED=<n> repeats a run, CNODE_ETF_COUNT=<n> changes the number of terms. A failure prints the
seed, the first failing terms readably, and leaves every failing input in a directory (readable with
`cnode-etf print FILE`).
"""
import os
import random
import subprocess

import harness

HERE = os.path.dirname(os.path.abspath(__file__))


def _setup(c):
    ebin = os.path.join(c.tmp, "ebin")
    os.makedirs(ebin)
    subprocess.run(["erlc", "-o", ebin, os.path.join(HERE, "etf_gen.erl"), os.path.join(HERE, "etf_diff.erl")],
                   check=True)
    tool = harness.bin_path("cnode-etf")
    assert os.access(tool, os.X_OK), f"{tool} is not built"
    seed = int(os.environ.get("CNODE_ETF_SEED") or random.randrange(1, 2**31))
    print(f"seed {seed} (repeat with CNODE_ETF_SEED={seed})", flush=True)
    c.epmd()
    # b only lends pids, ports, refs and funs that belong to another node.
    c.erl("b", args=["-pa", ebin])
    a = c.erl("a", args=["-pa", ebin])
    return a, tool, seed


def _run(a, call, what):
    # The report goes to a's output (shown by the harness on failure); the value says ok or fail.
    out = a.eval(f"case {call} of {{ok, S}} -> io:put_chars([S, $\\n]), ok; "
                 f"{{fail, S}} -> io:put_chars([S, $\\n]), fail end", timeout=400)
    line = next((l for l in reversed(a.lines) if l.startswith("seed ")), "")
    print(line, flush=True)
    assert out == "ok", f"{what} failed: {line}"


def test_roundtrip_matches_beam(c):
    a, tool, seed = _setup(c)
    count = int(os.environ.get("CNODE_ETF_COUNT", "100000"))
    dump = os.path.join(c.tmp, "failures")
    os.makedirs(dump)
    print(f"failing inputs, if any, go to {dump}", flush=True)
    _run(a, f'etf_diff:run(#{{tool => "{tool}", seed => {seed}, count => {count}, other => b@localhost, '
            f'dump_dir => "{dump}"}})', "roundtrip")


def test_print_parses_back(c):
    # Printable terms (no pids, ports, refs or funs): `cnode-etf print` text must read back with erl_parse to =:=.
    a, tool, seed = _setup(c)
    count = int(os.environ.get("CNODE_ETF_PRINT_COUNT", "20000"))
    _run(a, f'etf_diff:print_check(#{{tool => "{tool}", seed => {seed}, count => {count}, other => b@localhost}})',
         "print -> erl_parse")


harness.main(globals())
