"""Issue 14: fragmented messages (DFLAG_FRAGMENTS) both ways against live OTP nodes."""
import re

import harness
from cnode_node import start_cnode


def test_small_calls_pass_a_64_mib_message_both_ways(c):
    """A 64 MiB echo is in flight (erl -> cnode and back, in 64 KiB fragments); small calls from another process
    are answered before it completes (the first 10 of 20: since the echo copies nothing, 64 MiB go both ways in about
    200 ms on the 2-core VM, about as long as 20 pings take behind the fragments)."""
    c.epmd()
    cn = start_cnode(c)
    ex = c.elixir("ex")
    # The small calls go to another process of the cnode (net_kernel): the echo's own replies must stay in order
    # behind its big one, as a BEAM process's would.
    out = ex.eval(
        f"n = :\"{cn.node}\"; dest = {{:echo, n}}; me = self(); b = :crypto.strong_rand_bytes(64 * 1024 * 1024); "
        f"true = Node.ping(n) == :pong; "
        f"spawn(fn -> r = GenServer.call(dest, b, 120_000); send(me, {{:big, r == b, System.monotonic_time()}}) end); "
        f"Process.sleep(5); "
        f"small = for _ <- 1..10, do: Node.ping(n) == :pong; t_small = System.monotonic_time(); "
        f"small = small ++ for(_ <- 1..10, do: Node.ping(n) == :pong); "
        f"receive do {{:big, ok, t_big}} -> {{Enum.all?(small), t_small < t_big, ok}} after 120_000 -> :timeout end",
        timeout=300)
    assert out == "{true, true, true}", out


def test_messages_just_over_and_under_the_fragment_size(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.erl("a")
    out = a.eval(f"lists:usort([begin B = crypto:strong_rand_bytes(N), "
                 f"gen_server:call({{echo, '{cn.node}'}}, B, 30000) =:= B end "
                 f"|| N <- [65400, 65470, 65536, 65600, 131072, 131073, 1000000]])", timeout=120)
    assert out == "[true]", out


harness.main(globals())
