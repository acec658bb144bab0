"""Issue 14: DIST_HDR_ATOM_CACHE (--dist-atom-cache) against a live OTP 25 node: erl refers to atoms it sent before
by cache index (the BEAM's own use between BEAM nodes), cnode resolves them; thousands of distinct atoms, more
than the cache's 2048 slots, echoed back intact. cnode sends atom cache references too (its replies, and messages it
sends on its own: cnode:bench_flood), NewCacheEntry the first time and a cached reference after, measured on erl's
socket; messages over the fragment size (64 KiB) carry their references in the first fragment."""
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


# The bytes erl's socket RECEIVES for one more reply of 200 atoms cnode already sent back (its echo's reply): with
# cnode's own atom cache references, well under the texts' 1 892 bytes.
REPLY_BYTES = ("N = '%s', As = [list_to_atom(\"reply_\" ++ integer_to_list(I)) || I <- lists:seq(1, 200)], "
               "As = gen_server:call({echo, N}, As, 30000), "
               "[{N, S}] = [E || {X, _} = E <- erlang:system_info(dist_ctrl), X =:= N], "
               "{ok, [{recv_oct, B0}]} = inet:getstat(S, [recv_oct]), As = gen_server:call({echo, N}, As, 30000), "
               "{ok, [{recv_oct, B1}]} = inet:getstat(S, [recv_oct]), B1 - B0")

# cnode sending on its own (cnode:bench_flood spawns a process that sends Msg to Dest): 6000 distinct atoms in
# messages of 100, twice, each checked on arrival.
FLOOD_ATOMS = ("N = '%s', Me = self(), "
               "Atoms = [list_to_atom(\"flood_\" ++ integer_to_list(I)) || I <- lists:seq(1, 6000)], "
               "Batches = [lists:sublist(Atoms, S, 100) || S <- lists:seq(1, 6000, 100)], "
               "R = [begin ok = rpc:call(N, cnode, bench_flood, [Me, 1, {flood, B, #{hd(B) => lists:last(B)}}]), "
               "receive {flood, B2, M2} -> {B2, M2} =:= {B, #{hd(B) => lists:last(B)}} after 10000 -> timeout end "
               "end || _ <- [1, 2], B <- Batches], lists:usort(R)")

# The bytes erl's socket receives for cnode's second send of 200 atoms it sent before (plus the rpc's reply).
FLOOD_RESEND_BYTES = (
    "N = '%s', Me = self(), As = [list_to_atom(\"fresend_\" ++ integer_to_list(I)) || I <- lists:seq(1, 200)], "
    "ok = rpc:call(N, cnode, bench_flood, [Me, 1, As]), receive As -> ok end, "
    "[{N, S}] = [E || {X, _} = E <- erlang:system_info(dist_ctrl), X =:= N], "
    "{ok, [{recv_oct, B0}]} = inet:getstat(S, [recv_oct]), "
    "ok = rpc:call(N, cnode, bench_flood, [Me, 1, As]), receive As -> ok end, "
    "{ok, [{recv_oct, B1}]} = inet:getstat(S, [recv_oct]), B1 - B0")

# Messages over the fragment size with atoms (a list of 30 000 {Atom, I} of 5 000 distinct atoms, about 400 KB),
# replies and cnode's own sends, interleaved with small ones from other processes; every one checked.
BIG_AND_SMALL = (
    "N = '%s', Me = self(), "
    "Atoms = list_to_tuple([list_to_atom(\"big_\" ++ integer_to_list(I)) || I <- lists:seq(1, 5000)]), "
    "Big = [{element(I rem 5000 + 1, Atoms), I} || I <- lists:seq(1, 30000)], "
    "Small = fun(K) -> {small, [element((K * 7 + J) rem 5000 + 1, Atoms) || J <- lists:seq(1, 20)], K} end, "
    "Callers = [spawn_link(fun() -> Me ! {call, K, gen_server:call({echo, N}, Big, 60000) =:= Big} end) "
    "|| K <- lists:seq(1, 3)] ++ "
    "[spawn_link(fun() -> Me ! {call, K, gen_server:call({echo, N}, Small(K), 60000) =:= Small(K)} end) "
    "|| K <- lists:seq(4, 40)], "
    "ok = rpc:call(N, cnode, bench_flood, [Me, 3, {big, Big}]), "
    "[ok = rpc:call(N, cnode, bench_flood, [Me, 1, Small(K)]) || K <- lists:seq(100, 120)], "
    "Calls = [receive {call, K, R} -> R after 60000 -> {timeout, K} end || K <- lists:seq(1, 40)], "
    "Bigs = [receive {big, B} -> B =:= Big after 60000 -> timeout end || _ <- [1, 2, 3]], "
    "Smalls = [receive {small, _, K} = X -> X =:= Small(K) after 60000 -> timeout end "
    "|| _ <- lists:seq(100, 120)], "
    "{length(Callers), lists:usort(Calls ++ Bigs ++ Smalls)}")


def test_cnode_sends_atom_cache_refs(c):
    """Replies and cnode's own sends use the cache: values intact, and a resend costs references on the wire."""
    c.epmd()
    cn = start_cnode(c, extra=["--dist-atom-cache"])
    a = c.erl("a")
    assert a.eval(FLOOD_ATOMS % cn.node, timeout=180) == "[true]"
    got = int(a.eval(REPLY_BYTES % cn.node, timeout=60))
    print(f"cnode's reply of 200 cached atoms: {got} bytes received on erl's socket")
    assert got < 1200, f"{got} bytes for 200 atoms cnode sent before: cnode does not send cache references"
    got = int(a.eval(FLOOD_RESEND_BYTES % cn.node, timeout=60))
    print(f"cnode's own resend of 200 cached atoms (+ the rpc reply): {got} bytes received on erl's socket")
    assert got < 1200, got


def test_big_messages_with_atoms_in_fragments(c):
    c.epmd()
    cn = start_cnode(c, extra=["--dist-atom-cache"])
    a = c.erl("a")
    assert a.eval(BIG_AND_SMALL % cn.node, timeout=240) == "{40,[true]}"
    # The same again: now every atom is cached.
    assert a.eval(BIG_AND_SMALL % cn.node, timeout=240) == "{40,[true]}"


def test_without_the_flag_atoms_go_as_text(c):
    """The control for the byte count above: without --dist-atom-cache the same resend carries every text."""
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a")
    sent = int(a.eval(RESEND_BYTES % cn.node, timeout=60))
    print(f"resend of 200 atoms without the atom cache: {sent} bytes on erl's socket")
    assert sent > 1892, sent
    got = int(a.eval(REPLY_BYTES % cn.node, timeout=60))
    print(f"cnode's reply of 200 atoms without the atom cache: {got} bytes received on erl's socket")
    assert got > 1892, got


harness.main(globals())
