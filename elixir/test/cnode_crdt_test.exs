defmodule CNode.CRDTTest do
  # Three live cnode replicas of the CRDT service, started once for the module; each test uses names of its own.
  use ExUnit.Case, async: true
  import CNode.Case, only: [wait_until: 1, wait_until: 3]
  alias CNode.CRDT

  setup_all do
    CNode.Distribution.ensure_started!()
    host = node() |> Atom.to_string() |> String.split("@") |> List.last()
    replicas = for i <- 1..3, do: :"crdt#{i}_#{CNode.Distribution.random_hex(4)}@#{host}"
    list = Enum.map_join(replicas, ",", &Atom.to_string/1)

    # Hidden: out of :global's mesh with the other modules' cnodes. The first ones log that they cannot reach
    # the ones not started yet: kept out of the console.
    {pids, _log} =
      ExUnit.CaptureLog.with_log(fn ->
        for r <- replicas do
          args = ["--crdt", list, "--crdt-sync-ms", "50"]

          case start_supervised({CNode, id: r, sname: r, connect: true, hidden: true, args: args}) do
            {:ok, pid} ->
              pid

            {:error, {reason, _}} ->
              raise "cnode #{r} did not start: #{inspect(reason, limit: :infinity)}"
          end
        end
      end)

    for r <- replicas do
      others = Enum.sort(replicas -- [r])

      wait_until(
        fn -> match?({:ok, %{replicas: rs}} when length(rs) == 2, CRDT.status(r)) end,
        20_000,
        "#{r} in contact with #{inspect(others)}"
      )
    end

    %{replicas: replicas, servers: pids}
  end

  setup ctx do
    %{n: fn name -> {ctx.test, name} end}
  end

  defp everywhere(replicas, name, want) do
    for r <- replicas do
      wait_until(
        fn -> CRDT.value(r, name) == want end,
        10_000,
        "#{inspect(name)} = #{inspect(want)} on #{r}"
      )
    end
  end

  test "counters: updates on every replica sum exactly", %{replicas: rs, n: n} do
    name = n.(:hits)

    rs
    |> Enum.flat_map(fn r ->
      for w <- 1..4,
          do: Task.async(fn -> for _ <- 1..50, do: :ok = CRDT.counter_add(r, name, w) end)
    end)
    |> Enum.each(&Task.await(&1, 30_000))

    everywhere(rs, name, {:ok, 3 * 50 * (1 + 2 + 3 + 4)})
    assert CRDT.counter_add(hd(rs), name, -1000) == :ok
    everywhere(rs, name, {:ok, 500})
  end

  test "sets, maps and registers converge; reads are local", %{replicas: [r1, r2, r3] = rs, n: n} do
    set = n.(:set)
    map = n.(:map)
    reg = n.(:reg)
    assert :ok = CRDT.set_add(r1, set, "b")
    assert :ok = CRDT.set_add(r2, set, :a)
    assert :ok = CRDT.set_add(r3, set, 1)
    assert :ok = CRDT.map_put(r1, map, :x, 1)
    assert :ok = CRDT.map_put(r2, map, :y, %{deep: [1]})
    assert :ok = CRDT.register_put(r3, reg, {:v, 1})
    # The writer's replica has its write at once.
    assert CRDT.value(r3, reg) == {:ok, {:v, 1}}
    everywhere(rs, set, {:ok, [1, :a, "b"]})
    everywhere(rs, map, {:ok, %{x: 1, y: %{deep: [1]}}})
    everywhere(rs, reg, {:ok, {:v, 1}})
    assert :ok = CRDT.set_remove(r2, set, :a)
    assert :ok = CRDT.map_remove(r3, map, :x)
    everywhere(rs, set, {:ok, [1, "b"]})
    everywhere(rs, map, {:ok, %{y: %{deep: [1]}}})
    assert CRDT.map_get(r1, map, :y) == {:ok, %{deep: [1]}}
    assert CRDT.map_get(r1, map, :x) == :not_found
    assert CRDT.value(r1, n.(:nothing)) == :not_found
  end

  test "one type per name; anything else is :badarg", %{replicas: [r1 | _], n: n} do
    c = n.(:counter)
    assert :ok = CRDT.counter_add(r1, c, 1)
    assert CRDT.set_add(r1, c, 1) == {:error, {:wrong_type, :pn_counter}}
    assert CRDT.map_get(r1, c, 1) == {:error, {:wrong_type, :pn_counter}}
    assert CRDT.register_put(r1, c, 1) == {:error, {:wrong_type, :pn_counter}}
    assert CRDT.counter_add(r1, c, Bitwise.bsl(1, 64)) == {:error, :badarg}
    assert GenServer.call({:crdt, r1}, {:no_such_request, c}) == {:error, :badarg}
  end

  test "subscriptions: changes from any replica, coalesced, ended with the subscriber", %{
    replicas: [r1, r2 | _],
    n: n
  } do
    name = n.(:watched)
    assert :ok = CRDT.subscribe(r1, name)
    assert :ok = CRDT.map_put(r2, name, :k, 1)
    assert_receive {:crdt_changed, ^name, %{k: 1}}, 5_000
    for i <- 1..100, do: :ok = CRDT.map_put(r1, name, :k, i)
    assert_receive {:crdt_changed, ^name, %{k: 100}}, 5_000
    # Far fewer messages than writes.
    got =
      Stream.repeatedly(fn ->
        receive do: ({:crdt_changed, ^name, _} -> 1), after: (300 -> nil)
      end)

    assert Enum.count(Enum.take_while(got, & &1)) < 20
    assert :ok = CRDT.unsubscribe(r1, name)
    assert :ok = CRDT.map_put(r1, name, :k, 0)
    refute_receive {:crdt_changed, ^name, _}, 500

    # A subscriber that exits is forgotten.
    me = self()

    sub =
      spawn(fn ->
        :ok = CRDT.subscribe(r1, name)
        send(me, :subscribed)
        receive do: (:stop -> :ok)
      end)

    assert_receive :subscribed
    {:ok, %{subscriptions: before}} = CRDT.status(r1)
    send(sub, :stop)
    wait_until(fn -> match?({:ok, %{subscriptions: s}} when s == before - 1, CRDT.status(r1)) end)
  end

  test "status, and errors for a node without a replica", %{replicas: [r1, r2, r3]} do
    assert {:ok, %{sync_ms: 50, replicas: replicas, unacked: unacked, peers: peers}} =
             CRDT.status(r1)

    assert Enum.sort(replicas) == Enum.sort([r2, r3])
    assert Enum.sort(peers) == Enum.sort([r2, r3])
    assert Map.keys(unacked) |> Enum.sort() == Enum.sort([r2, r3])
    assert CRDT.value(node(), :x) == {:error, :noproc}
    host = node() |> Atom.to_string() |> String.split("@") |> List.last()
    assert {:error, {:nodedown, _}} = CRDT.value(:"nobody_here@#{host}", :x, timeout: 2_000)
  end
end
