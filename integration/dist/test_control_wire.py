"""Live check of the control-message codec: real OTP 25 control messages, captured between two erl nodes, decoded
by control-dump (built on cnode::dist's decode_control).

Node b reaches node c through a recording TCP proxy. b and c use two private EPMDs: c registers in the cluster's
EPMD as usual; b's EPMD holds b itself and an entry "c" that points at the proxy, which forwards to c's real port.
The handshake passes through unchanged (the digest covers only the challenge and the cookie), so the proxy can also
rewrite the flags both nodes advertise: with DIST_HDR_ATOM_CACHE and FRAGMENTS removed, OTP 25 sends pass-through
packets ('p', 131, Control, 131, Payload) and our encoding of each decoded message can be compared byte for byte
with what the BEAM wrote. Left alone, the nodes use the atom cache header, which tests the header decoding.

After the handshake the proxy records every packet (ticks aside) with its direction; b then runs links, unlinks,
monitors (by pid and by name), sends (by pid, by name, with a seq_trace token), exits, group_leader, erpc calls
and a gen_server call answered through an alias, and the test waits until control-dump has seen every op the
scenario must produce.
"""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from distwire import Recorder, epmd_port_please, epmd_register  # noqa: E402

DIST_HDR_ATOM_CACHE = 0x2000
FRAGMENTS = 0x800000
# Flags newer than cnode's, always stripped: the BEAMs then talk to each other as they talk to cnode. OTP 28+ offers
# ALTACT_SIG and then sends alias messages as ALTACT_SIG_SEND (op 37) instead of ALIAS_SEND; OTP 29 also offers
# NATIVE_RECORDS (docs/otp-versions.md).
ALTACT_SIG = 0x20 << 32
NATIVE_RECORDS = 0x40 << 32
NEWER_THAN_CNODE = ALTACT_SIG | NATIVE_RECORDS

# Ops the scenario below makes OTP 25 send (with EXIT_PAYLOAD, SEND_SENDER, UNLINK_ID, SPAWN, ALIAS in effect).
EXPECTED = {"LINK", "SEND_SENDER", "SEND_SENDER_TT", "REG_SEND", "MONITOR_P", "DEMONITOR_P", "PAYLOAD_EXIT",
            "PAYLOAD_EXIT2", "PAYLOAD_MONITOR_P_EXIT", "GROUP_LEADER", "SPAWN_REQUEST", "SPAWN_REPLY", "UNLINK_ID",
            "UNLINK_ID_ACK", "ALIAS_SEND"}


def write_capture(c, packets, name):
    path = os.path.join(c.tmp, name)
    with open(path, "w") as f:
        for who, msg in packets:
            f.write(f"{who} {msg.hex()}\n")
    return path


def dump(path, hex_too=False):
    argv = [harness.bin_path("control-dump"), path] + (["--hex"] if hex_too else [])
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace").splitlines()


def ops_of(lines):
    ops = set()
    for line in lines:
        parts = line.split(" ")
        if line.startswith("#") and len(parts) > 3 and parts[2] != "ERROR":
            ops.add(parts[3])
    return ops


def start_pair(c, strip_flags):
    """c registered in the cluster EPMD; b with its own EPMD in which "c" is the recorder."""
    c.epmd()
    node_c = c.erl("c")
    c_port = epmd_port_please(c.epmd_port, "c")
    assert c_port, "c is not registered"
    rec = Recorder(c_port, strip_flags | NEWER_THAN_CNODE)
    epmd_b = harness.free_port()
    c.start(["epmd", "-port", str(epmd_b)], name="epmd-b")
    harness.wait_until(lambda: harness._connects(epmd_b), 10, "b's epmd to listen")
    reg, _ = epmd_register(epmd_b, "c", rec.port)
    node_b = c.erl("b", env={"ERL_EPMD_PORT": str(epmd_b)})
    assert node_b.eval("net_kernel:connect_node('c@localhost')") == "true"
    return node_b, node_c, rec, reg


# Runs in a fresh process on b that traps exits, so that exit signals from c do not reach the eval agent.
SCENARIO = r"""
Parent = self(),
C = 'c@localhost',
H = spawn(fun() ->
  process_flag(trap_exit, true),
  Me = self(),
  Echo = fun() -> receive {From, X} -> From ! {echo, X} end, receive {stop, R} -> exit(R) end end,
  P1 = spawn(C, Echo),
  M1 = erlang:monitor(process, P1),
  link(P1),
  P1 ! {Me, <<"hello">>},
  receive {echo, <<"hello">>} -> ok end,
  unlink(P1),
  link(P1),
  P1 ! {stop, bye},
  receive {'EXIT', P1, bye} -> ok end,
  receive {'DOWN', M1, process, P1, bye} -> ok end,
  P2 = spawn(C, Echo),
  M2 = erlang:monitor(process, P2),
  erlang:demonitor(M2),
  group_leader(Me, P2),
  exit(P2, kill),
  P3 = spawn(C, Echo),
  true = rpc:call(C, erlang, register, [ctl_echo, P3]),
  M3 = erlang:monitor(process, {ctl_echo, C}),
  {ctl_echo, C} ! {Me, by_name},
  receive {echo, by_name} -> ok end,
  P4 = spawn(C, Echo),
  seq_trace:set_token(label, 17),
  P4 ! {Me, traced},
  seq_trace:set_token([]),
  receive {echo, traced} -> ok end,
  P3 ! {stop, normal},
  receive {'DOWN', M3, process, _, normal} -> ok end,
  C = erpc:call(C, erlang, node, []),
  C = gen_server:call({rex, C}, {call, erlang, node, [], user}),
  Parent ! {done, Me}
end),
receive {done, H} -> ok after 30000 -> timeout end
"""


def run_scenario(node_b):
    assert node_b.eval(SCENARIO, timeout=60) == "ok"


def capture_and_check(c, strip_flags, name):
    node_b, node_c, rec, reg = start_pair(c, strip_flags)
    try:
        run_scenario(node_b)
        state = {}

        def all_seen():
            packets = rec.snapshot()
            rc, lines = dump(write_capture(c, packets, name))
            state.update(packets=packets, rc=rc, lines=lines)
            return EXPECTED <= ops_of(lines)

        try:
            harness.wait_until(all_seen, 20, "every expected op in the capture")
        finally:
            missing = EXPECTED - ops_of(state.get("lines", []))
            if missing:
                print("missing ops:", sorted(missing))
                print("\n".join(state.get("lines", [])[-60:]))
        lines = state["lines"]
        if harness.OTP == "29":  # what was stripped was there to strip
            assert rec.flags_seen["b"] & ALTACT_SIG and rec.flags_seen["b"] & NATIVE_RECORDS, hex(rec.flags_seen["b"])
        assert state["rc"] == 0, "\n".join(l for l in lines if "ERROR" in l or "FAILED" in l)
        assert not rec.errors, rec.errors
        assert lines[-1] == f"packets={len(state['packets'])} failed=0", lines[-1]
        return state, rec
    finally:
        reg.close()
        rec.close()


def test_header_form_with_atom_cache(c):
    """Nodes left alone use the distribution header and the atom cache: every packet must decode through it."""
    state, rec = capture_and_check(c, 0, "header.capture")
    assert rec.flags_seen["b"] & DIST_HDR_ATOM_CACHE and rec.flags_seen["c"] & DIST_HDR_ATOM_CACHE
    lines = [l for l in state["lines"] if l.startswith("#")]
    assert all(" h " in l for l in lines), [l for l in lines if " h " not in l][:3]
    print(f"{len(lines)} header-form packets decoded; ops: {sorted(ops_of(lines))}")


def test_pass_through_reencodes_byte_for_byte(c):
    """Without the atom cache OTP 25 sends pass-through packets; re-encoding each decoded message must give the
    bytes the BEAM wrote."""
    state, rec = capture_and_check(c, DIST_HDR_ATOM_CACHE | FRAGMENTS, "pass.capture")
    lines = [l for l in state["lines"] if l.startswith("#")]
    assert all(" p " in l for l in lines), [l for l in lines if " p " not in l][:3]
    diff = [l for l in lines if "reenc=diff" in l]
    assert not diff, "\n".join(diff[:10])
    print(f"{len(lines)} pass-through packets decoded and re-encoded identically; ops: {sorted(ops_of(lines))}")


harness.main(globals())
