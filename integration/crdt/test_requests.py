"""The CRDT service's requests and replies (issue 13's table) on live replicas, from a plain Elixir client: every
type, reads, :not_found, {:error, {:wrong_type, type}}, {:error, :badarg}, :status, and subscriptions (coalesced
notifications, monitored subscribers)."""
from crdt_util import call, cluster, harness, value, wait_value


def test_every_request_and_reply(c):
    nodes, ex = cluster(c)
    c1, c2, c3 = nodes
    assert call(ex, c1, "{:counter_add, :hits, 5}") == ":ok"
    # A local read: the writer's replica has its write at once.
    assert value(ex, c1, ":hits") == "{:ok, 5}"
    assert call(ex, c2, "{:counter_add, :hits, -2}") == ":ok"
    assert call(ex, c1, "{:set_add, \"cart\", {:item, 1}}") == ":ok"
    assert call(ex, c1, "{:set_add, \"cart\", :b}") == ":ok"
    assert call(ex, c1, "{:set_add, \"cart\", 1.0}") == ":ok"
    assert call(ex, c1, "{:set_add, \"cart\", 1}") == ":ok"
    assert call(ex, c2, "{:set_remove, \"cart\", :missing}") == ":ok"
    assert call(ex, c1, "{:map_put, :flags, :dark_mode, true}") == ":ok"
    assert call(ex, c1, "{:map_put, :flags, \"beta\", [1, 2]}") == ":ok"
    assert call(ex, c1, "{:map_remove, :flags, :nothing}") == ":ok"
    assert call(ex, c3, "{:register_put, {:leader, 1}, %{node: :c3}}") == ":ok"
    wait_value(ex, nodes, ":hits", "{:ok, 3}")
    # A list in Erlang term order: numbers (1 before 1.0), atoms, tuples.
    wait_value(ex, nodes, "\"cart\"", "{:ok, [1, 1.0, :b, {:item, 1}]}")
    wait_value(ex, nodes, ":flags", "{:ok, %{:dark_mode => true, \"beta\" => [1, 2]}}")
    wait_value(ex, nodes, "{:leader, 1}", "{:ok, %{node: :c3}}")
    assert call(ex, c2, "{:map_get, :flags, \"beta\"}") == "{:ok, [1, 2]}"
    assert call(ex, c2, "{:map_get, :flags, :nope}") == ":not_found"
    assert call(ex, c2, "{:map_get, :no_such_map, :k}") == ":not_found"
    assert value(ex, c3, ":never_written") == ":not_found"
    # One type per name, fixed by the first operation.
    assert call(ex, c1, "{:set_add, :hits, 1}") == "{:error, {:wrong_type, :pn_counter}}"
    assert call(ex, c1, "{:counter_add, \"cart\", 1}") == "{:error, {:wrong_type, :aw_or_set}}"
    assert call(ex, c1, "{:map_put, \"cart\", 1, 2}") == "{:error, {:wrong_type, :aw_or_set}}"
    assert call(ex, c1, "{:map_get, \"cart\", 1}") == "{:error, {:wrong_type, :aw_or_set}}"
    assert call(ex, c1, "{:register_put, :flags, 1}") == "{:error, {:wrong_type, :aw_lww_map}}"
    assert call(ex, c3, "{:counter_add, {:leader, 1}, 1}") == "{:error, {:wrong_type, :lww_register}}"
    # Anything else.
    for bad in [":nonsense", "{:counter_add, :hits, 1.5}", "{:counter_add, :hits, Bitwise.bsl(1, 70)}", "{:counter_add, :hits}",
                "{:map_put, :flags, :k}", "{:value}", "{:value, :a, :b}", "\"status\"", "{}", "[:status]"]:
        assert call(ex, c1, bad) == "{:error, :badarg}", bad
    # Values stay what they were.
    assert value(ex, c1, ":hits") == "{:ok, 3}"
    st = ex.eval(f"s = GenServer.call({{:crdt, :\"{c1.node}\"}}, :status); "
                 f"{{Enum.sort(s.replicas) == [:\"{c2.node}\", :\"{c3.node}\"], s.sync_ms, Enum.sort(s.names), "
                 f"Enum.sort(Map.keys(s.unacked)) == [:\"{c2.node}\", :\"{c3.node}\"]}}")
    assert st == '{true, 100, [:flags, :hits, {:leader, 1}, "cart"], true}', st


def test_counter_edges(c):
    nodes, ex = cluster(c, 2)
    c1, c2 = nodes
    big = (1 << 63) - 1
    assert call(ex, c1, f"{{:counter_add, :n, {big}}}") == ":ok"
    assert call(ex, c2, f"{{:counter_add, :n, {big}}}") == ":ok"
    # Past 64 bits the sum is a big integer, as Elixir's integers are.
    wait_value(ex, nodes, ":n", f"{{:ok, {2 * big}}}")
    assert call(ex, c1, f"{{:counter_add, :n, {-(1 << 63)}}}") == ":ok"
    wait_value(ex, nodes, ":n", f"{{:ok, {2 * big - (1 << 63)}}}")


def test_subscriptions_fire_coalesced_and_end_with_the_subscriber(c):
    nodes, ex = cluster(c)
    c1, c2, _ = nodes
    # A relay process on the client subscribes itself (a subscription belongs to the caller) and passes on what it
    # gets to the test's shell process.
    sub = (f"parent = self(); relay = spawn(fn -> send(parent, {{:subscribed, GenServer.call({{:crdt, :\"{c1.node}\"}}, "
           f"{{:subscribe, :likes}})}}); f = fn f -> receive do m -> send(parent, {{:got, m}}); f.(f) end end; "
           f"f.(f) end); Process.put(:relay, relay); receive do {{:subscribed, r}} -> r end")
    assert ex.eval(sub) == ":ok"
    # A write on another replica reaches the subscriber through the merge.
    assert call(ex, c2, "{:counter_add, :likes, 1}") == ":ok"
    assert ex.eval("receive do {:got, m} -> m after 5000 -> :none end") == "{:crdt_changed, :likes, 1}"
    # 200 writes in a burst: far fewer notifications (at most one per sync round), the last with the final value.
    ex.eval(f"for _ <- 1..200, do: GenServer.call({{:crdt, :\"{c1.node}\"}}, {{:counter_add, :likes, 1}}); :ok")
    out = ex.eval("f = fn f, acc -> receive do {:got, {:crdt_changed, :likes, v}} -> f.(f, [v | acc]) "
                  "after 1500 -> Enum.reverse(acc) end end; vs = f.(f, []); {length(vs), List.last(vs)}")
    count, last = out.strip("{}").split(", ")
    assert last == "201", out
    assert 1 <= int(count) < 50, out
    # Other names do not notify this subscriber; a write that changes nothing does not either.
    assert call(ex, c1, "{:counter_add, :other, 1}") == ":ok"
    assert call(ex, c1, "{:counter_add, :likes, 0}") == ":ok"
    assert ex.eval("receive do {:got, m} -> m after 700 -> :none end") == ":none"
    # :unsubscribe, then again; and the subscriber is monitored: once it is gone, so is its subscription.
    assert ex.eval(f"GenServer.call({{:crdt, :\"{c1.node}\"}}, :status).subscriptions") == "1"
    ex.eval("Process.exit(Process.get(:relay), :kill)")
    harness.wait_until(lambda: ex.eval(f"GenServer.call({{:crdt, :\"{c1.node}\"}}, :status).subscriptions") == "0",
                       5, "the subscription to end with its process")
    assert call(ex, c1, "{:subscribe, :likes}") == ":ok"
    assert call(ex, c1, "{:unsubscribe, :likes}") == ":ok"
    assert ex.eval(f"GenServer.call({{:crdt, :\"{c1.node}\"}}, :status).subscriptions") == "0"
    assert call(ex, c1, "{:counter_add, :likes, 1}") == ":ok"
    assert ex.eval("receive do {:crdt_changed, _, _} = m -> m after 700 -> :none end") == ":none"


if __name__ == "__main__":
    harness.main(globals())
