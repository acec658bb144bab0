"""Issue 14: DIST_HDR_ATOM_CACHE (--dist-atom-cache) against a live OTP 25 node: erl refers to atoms it sent before
by cache index (the BEAM's own use between BEAM nodes), cnode resolves them; thousands of distinct atoms, more
than the cache's 2048 slots, echoed back intact. cnode itself still sends headers without references."""
import harness
from cnode_node import start_cnode

# 6000 distinct atoms in calls of 100, twice: the second round finds most of them in the cache (those whose slots
# were not taken over since), the first round's later calls replace slots the earlier ones filled.
ECHO_ATOMS = ("Atoms = [list_to_atom(\"atom_cache_\" ++ integer_to_list(I)) || I <- lists:seq(1, 6000)], "
              "Batches = [lists:sublist(Atoms, S, 100) || S <- lists:seq(1, 6000, 100)], "
              "R = [gen_server:call({echo, '%s'}, {B, hd(B), #{hd(B) => lists:last(B)}}, 30000) "
              "=:= {B, hd(B), #{hd(B) => lists:last(B)}} || _ <- [1, 2], B <- Batches], "
              "lists:usort(R)")

# The bytes on erl's distribution socket for one more send of a message of 200 atoms already sent: with the atom
# cache in effect they are cache references (a few bytes each), not each atom's text (8 to 10 bytes and a 2-byte tag).
RESEND_BYTES = ("N = '%s', As = [list_to_atom(\"resend_\" ++ integer_to_list(I)) || I <- lists:seq(1, 200)], "
                "As = gen_server:call({echo, N}, As, 30000), "
                "[{N, S}] = [E || {X, _} = E <- erlang:system_info(dist_ctrl), X =:= N], "
                "{ok, [{send_oct, B0}]} = inet:getstat(S, [send_oct]), As = gen_server:call({echo, N}, As, 30000), "
                "{ok, [{send_oct, B1}]} = inet:getstat(S, [send_oct]), B1 - B0")


def test_erl_sends_cached_atoms_and_gets_them_back(c):
    c.epmd()
    cn = start_cnode(c, extra=["--dist-atom-cache"])
    a = c.erl("a")
    assert a.eval(ECHO_ATOMS % cn.node, timeout=120) == "[true]"
    sent = int(a.eval(RESEND_BYTES % cn.node, timeout=60))
    print(f"resend of 200 cached atoms: {sent} bytes on erl's socket")
    # The 200 atom texts alone are 1 892 bytes (2 292 with their tags); as cache references (2 bytes in the term, about
    # 1.5 in the header) the whole call is well under that.
    assert sent < 1200, f"{sent} bytes for 200 atoms sent before: the atom cache is not in effect"


def test_without_the_flag_atoms_go_as_text(c):
    """The control for the byte count above: without --dist-atom-cache the same resend carries every text."""
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a")
    sent = int(a.eval(RESEND_BYTES % cn.node, timeout=60))
    print(f"resend of 200 atoms without the atom cache: {sent} bytes on erl's socket")
    assert sent > 1892, sent


harness.main(globals())
