"""Three cnode replicas converging under Elixir clients: concurrent counter updates on every replica sum exactly;
writes on both sides of a schism-style partition (integration/lib/schism.py: wrong cookies both ways and a
disconnect) merge on heal, a concurrent add and remove leaving the element present and concurrent map puts leaving
one winner everywhere; a replica not in the others' --crdt list joins with a full-state sync; a frozen replica
(SIGSTOP) stalls nobody and catches up; a skewed clock wins last-writer-wins and is logged."""
import os
import re
import signal
import time

from crdt_util import call, client_in_contact, cluster, connect, harness, replica, value, wait_in_contact, \
    wait_synced, wait_value
import schism  # noqa: E402 (integration/lib, on the path once crdt_util is imported)


def test_concurrent_counter_updates_on_every_replica_sum_exactly(c):
    nodes, ex = cluster(c)
    # 3 processes per replica, 300 updates each of -3..+5, all at once.
    out = ex.eval("ns = [" + ", ".join(f':"{p.node}"' for p in nodes) + "]; "
                  "ts = for n <- ns, w <- 1..3, do: Task.async(fn -> "
                  "  :rand.seed(:exsss, {w, :erlang.phash2(n), 7}); "
                  "  Enum.reduce(1..300, 0, fn _, acc -> d = :rand.uniform(9) - 4; "
                  "    :ok = GenServer.call({:crdt, n}, {:counter_add, :total, d}); acc + d end) end); "
                  "ts |> Enum.map(&Task.await(&1, 60_000)) |> Enum.sum()", timeout=90)
    want = int(out)
    wait_value(ex, nodes, ":total", f"{{:ok, {want}}}", timeout=15)
    wait_synced(ex, nodes)


def test_partition_writes_merge_on_heal(c):
    nodes, ex = cluster(c)
    c1, c2, c3 = nodes
    assert call(ex, c1, "{:set_add, :s, :x}") == ":ok"
    assert call(ex, c1, "{:set_add, :s, :y}") == ":ok"
    assert call(ex, c2, "{:map_put, :m, :k, :before}") == ":ok"
    assert call(ex, c3, "{:counter_add, :n, 1}") == ":ok"
    wait_value(ex, nodes, ":s", "{:ok, [:x, :y]}")
    wait_value(ex, nodes, ":m", "{:ok, %{k: :before}}")
    wait_synced(ex, nodes)

    split = schism.partition(ex, [c1.node], [c2.node, c3.node])
    harness.wait_until(lambda: ex.eval(f"GenServer.call({{:crdt, :\"{c1.node}\"}}, :status).replicas") == "[]", 10,
                       "c1 alone")
    # Both sides keep taking writes, answered at once.
    t0 = time.monotonic()
    assert call(ex, c1, "{:set_remove, :s, :x}") == ":ok"   # removes the x it has seen ...
    assert call(ex, c2, "{:set_add, :s, :x}") == ":ok"      # ... while the other side adds it again: add wins
    assert call(ex, c3, "{:set_remove, :s, :y}") == ":ok"   # a remove nobody contradicts
    assert call(ex, c1, "{:map_put, :m, :k, :left}") == ":ok"
    assert call(ex, c3, "{:map_put, :m, :k, :right}") == ":ok"
    assert call(ex, c1, "{:map_put, :m, :only_left, 1}") == ":ok"
    assert call(ex, c2, "{:map_remove, :m, :before_removed}") == ":ok"
    assert call(ex, c1, "{:counter_add, :n, 10}") == ":ok"
    assert call(ex, c2, "{:counter_add, :n, 5}") == ":ok"
    assert call(ex, c3, "{:counter_add, :n, -2}") == ":ok"
    assert time.monotonic() - t0 < 5
    # Reads are local: each side sees its own writes only.
    assert value(ex, c1, ":s") == "{:ok, [:y]}"
    wait_value(ex, [c2, c3], ":s", "{:ok, [:x]}")
    assert value(ex, c1, ":n") == "{:ok, 11}"
    wait_value(ex, [c2, c3], ":n", "{:ok, 4}")
    unacked = ex.eval(f"GenServer.call({{:crdt, :\"{c1.node}\"}}, :status).unacked |> Map.values() |> Enum.min()")
    assert int(unacked) > 0, unacked  # c1 has intervals the other side has not acked

    split.heal()
    wait_in_contact(ex, nodes)
    wait_value(ex, nodes, ":s", "{:ok, [:x]}")
    wait_value(ex, nodes, ":n", "{:ok, 14}")
    # One winner for :k, the same everywhere; the rest of the map merged.
    maps = {value(ex, p, ":m") for p in nodes}
    harness.wait_until(lambda: len({value(ex, p, ":m") for p in nodes}) == 1, 10, "one map everywhere")
    m = value(ex, c1, ":m")
    assert m in ("{:ok, %{k: :left, only_left: 1}}", "{:ok, %{k: :right, only_left: 1}}"), (m, maps)
    wait_synced(ex, nodes)
    # Healed, not restarted: each replica kept its incarnation, so nothing went as a full state after the heal.
    assert "restarted" not in c2.output() and "restarted" not in c1.output()


def test_a_replica_not_in_the_list_joins_with_a_full_state(c):
    nodes, ex = cluster(c)
    c1, c2, c3 = nodes
    for i in range(50):
        assert call(ex, nodes[i % 3], f"{{:map_put, :m, {i}, {i * i}}}") == ":ok"
    assert call(ex, c2, "{:counter_add, :n, 7}") == ":ok"
    # c4 lists everyone; the others list only c1..c3 and were not restarted.
    c4 = replica(c, "c4", ["c1", "c2", "c3", "c4"])
    connect(ex, c4)
    wait_in_contact(ex, nodes + [c4])
    harness.wait_until(lambda: ex.eval(f"GenServer.call({{:crdt, :\"{c4.node}\"}}, {{:value, :m}}) == "
                                       "{:ok, Map.new(0..49, &{&1, &1 * &1})}") == "true", 10, "the map on c4")
    wait_value(ex, [c4], ":n", "{:ok, 7}")
    # Its writes reach the others.
    assert call(ex, c4, "{:counter_add, :n, 1}") == ":ok"
    wait_value(ex, nodes, ":n", "{:ok, 8}")
    assert "(not in --crdt) joined" in c1.output()
    # When it goes, it is forgotten (nothing is kept for it)...
    c4.stop()
    harness.wait_until(lambda: ex.eval(f"GenServer.call({{:crdt, :\"{c1.node}\"}}, :status).peers |> length()")
                       == "2", 10, "c4 forgotten")
    assert call(ex, c1, "{:counter_add, :n, 1}") == ":ok"
    wait_synced(ex, nodes)


def test_a_frozen_replica_stalls_nobody_and_catches_up(c):
    nodes, ex = cluster(c)
    c1, c2, c3 = nodes
    wait_synced(ex, nodes)
    os.killpg(c3.p.pid, signal.SIGSTOP)
    try:
        # 20 MB of map values: more than the connection to c3 takes (its socket buffers, then the 1 MiB busy
        # limit); every call is still answered at once and c2 gets everything.
        out = ex.eval(f"blob = :binary.copy(\"x\", 10_000); "
                      f"Enum.map(1..2000, fn i -> t = System.monotonic_time(:microsecond); "
                      f":ok = GenServer.call({{:crdt, :\"{c1.node}\"}}, {{:map_put, :big, i, blob}}, 2000); "
                      f"System.monotonic_time(:microsecond) - t end) |> Enum.max()", timeout=120)
        assert int(out) < 1_000_000, f"slowest call {out} us"
        harness.wait_until(lambda: ex.eval(f"{{:ok, m}} = GenServer.call({{:crdt, :\"{c2.node}\"}}, {{:value, :big}}); "
                                           "map_size(m)") == "2000", 30, "c2 to hold the 2000 keys")
        assert call(ex, c2, "{:counter_add, :n, 1}", 2000) == ":ok"
        wait_value(ex, [c1], ":n", "{:ok, 1}")
    finally:
        os.killpg(c3.p.pid, signal.SIGCONT)
    harness.wait_until(lambda: ex.eval(f"{{:ok, m}} = GenServer.call({{:crdt, :\"{c3.node}\"}}, {{:value, :big}}); "
                                       "map_size(m)") == "2000", 60, "c3 to catch up")
    wait_value(ex, [c3], ":n", "{:ok, 1}")
    wait_synced(ex, nodes, timeout=30)


def test_a_clock_far_ahead_wins_last_writer_wins_and_is_logged(c):
    c.epmd()
    names = ["c1", "c2", "c3"]
    c1 = replica(c, "c1", names)
    c2 = replica(c, "c2", names)
    c3 = replica(c, "c3", names, extra=["--crdt-test-clock-offset-ms", "120000"])
    nodes = [c1, c2, c3]
    ex = client_in_contact(c, nodes)
    assert "for tests only" in c3.output()
    # c3 writes first, c1 a second later: c3's timestamps are two minutes ahead, so c3's write wins on every replica.
    assert call(ex, c3, "{:register_put, :r, :from_c3}") == ":ok"
    assert call(ex, c3, "{:map_put, :m, :k, :from_c3}") == ":ok"
    wait_value(ex, nodes, ":r", "{:ok, :from_c3}")
    wait_value(ex, nodes, ":m", "{:ok, %{k: :from_c3}}")
    assert call(ex, c1, "{:register_put, :r, :from_c1}") == ":ok"
    assert call(ex, c1, "{:map_put, :m, :k, :from_c1}") == ":ok"
    # c1's clock takes c3's time in (HLC) only within the offset allowed: 120 s > 60 s, so it did not, and c1's
    # register write has the smaller timestamp. The map is add-wins: c1's put had seen c3's, so it replaced it
    # whatever the clocks say (last-writer-wins decides between concurrent puts only).
    wait_synced(ex, nodes)
    for p in nodes:
        assert value(ex, p, ":r") == "{:ok, :from_c3}", p.node
        assert value(ex, p, ":m") == "{:ok, %{k: :from_c1}}", p.node
    line = c1.wait_for_line("ms ahead of this node's clock", timeout=10)
    assert re.search(r"from c3@localhost .* is 1[12]\d{4} ms ahead", line), line


if __name__ == "__main__":
    harness.main(globals())
