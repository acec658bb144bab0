defmodule CNode.KVTest do
  # Three live cnode members of the Raft group :kv, started once for the module (tests in a module run one at a
  # time; each test uses keys and lock names of its own).
  use ExUnit.Case, async: true
  import CNode.Case, only: [wait_until: 1, wait_until: 3]
  alias CNode.KV

  @raft [
    "--raft-election-ms",
    "300",
    "--raft-heartbeat-ms",
    "50",
    "--raft-request-timeout-ms",
    "1000"
  ]

  defmodule Members do
    @moduledoc false
    # A group's members under one process: started one after the other, stopped together, with the warnings the
    # first ones log meanwhile ("cannot connect to" a member not started yet, or stopped already) kept out of the
    # console (in a test, ExUnit's capture_log keeps them; setup_all and the module's end are outside any test).
    use GenServer, restart: :temporary, shutdown: 60_000

    def start_link(specs), do: GenServer.start_link(__MODULE__, specs)

    @impl true
    def init(specs) do
      Process.flag(:trap_exit, true)

      case ExUnit.CaptureLog.with_log(fn -> start_all(specs, []) end) do
        {{:ok, pids}, _log} ->
          {:ok, pids}

        {{:error, reason, pids}, log} ->
          stop_all(pids)
          {:stop, {reason, log}}
      end
    end

    defp start_all([], pids), do: {:ok, Enum.reverse(pids)}

    defp start_all([{node, args} | rest], pids) do
      # Hidden: the members stay out of :global's mesh with the other modules' cnodes (and their shutdown out
      # of global's overlapping-partition checks).
      case CNode.start_link(sname: node, connect: true, hidden: true, args: args) do
        {:ok, pid} -> start_all(rest, [pid | pids])
        {:error, reason} -> {:error, {node, reason}, pids}
      end
    end

    @impl true
    def handle_info({:EXIT, pid, reason}, pids) do
      # A member that exits ends the group (with_log's own process exits too, normally: not a member).
      if pid in pids, do: {:stop, reason, pids}, else: {:noreply, pids}
    end

    @impl true
    def terminate(_reason, pids), do: ExUnit.CaptureLog.capture_log(fn -> stop_all(pids) end)

    defp stop_all(pids) do
      for pid <- Enum.reverse(pids) do
        try do
          CNode.stop(pid)
        catch
          :exit, _ -> :ok
        end
      end
    end
  end

  setup_all do
    CNode.Distribution.ensure_started!()
    members = for i <- 1..3, do: node_name("kv#{i}")
    group = "kv=" <> Enum.map_join(members, ",", &Atom.to_string/1)

    case start_supervised({Members, for(m <- members, do: {m, ["--raft-group", group | @raft]})}) do
      {:ok, _} ->
        :ok

      {:error, {reason, _}} ->
        raise "the group did not start: #{inspect(reason, limit: :infinity)}"
    end

    await_leader(members)
    %{members: members, group_arg: group, kv: {:kv, members}}
  end

  setup ctx do
    # Keys and lock names of this test only.
    %{k: fn name -> {ctx.test, name} end}
  end

  defp node_name(prefix) do
    host = node() |> Atom.to_string() |> String.split("@") |> List.last()
    :"#{prefix}_#{CNode.Distribution.random_hex(4)}@#{host}"
  end

  defp start_member(node, args) do
    case start_supervised({CNode, id: node, sname: node, connect: true, hidden: true, args: args}) do
      {:ok, pid} ->
        pid

      {:error, {reason, _}} ->
        raise "cnode #{node} did not start: #{inspect(reason, limit: :infinity)}"
    end
  end

  # The leader all the members agree on.
  defp await_leader(members) do
    wait_until(
      fn ->
        leaders =
          for m <- members do
            case KV.status({:kv, m}, timeout: 1_000) do
              {:ok, %{leader: leader}} -> leader
              _ -> nil
            end
          end

        case Enum.uniq(leaders) do
          [leader] when leader != nil -> leader
          _ -> nil
        end
      end,
      15_000,
      "one leader"
    )
  end

  # update/3's fun for a counter.
  defp incr({:ok, n}), do: n + 1
  defp incr(:not_found), do: 1

  # A process that takes the lock and holds it until told :exit. Anyone with the token may unlock it.
  defp holder(server, name, ttl) do
    test = self()

    pid =
      spawn(fn ->
        send(test, {:locked, self(), KV.lock(server, name, ttl)})
        receive do: (:exit -> exit(:gone))
      end)

    assert_receive {:locked, ^pid, {:ok, token}}, 10_000
    {pid, token}
  end

  test "put/3, get/2 and delete/2 on every member; local reads", %{members: ms, k: k} do
    for {m, i} <- Enum.with_index(ms),
        do: assert(KV.put({:kv, m}, k.(i), %{i: i, s: "v#{i}"}) == :ok)

    for m <- ms, i <- 0..2, do: assert(KV.get({:kv, m}, k.(i)) == {:ok, %{i: i, s: "v#{i}"}})
    assert KV.get({:kv, hd(ms)}, k.(:missing)) == :not_found
    assert KV.put({:kv, hd(ms)}, k.(0), [self(), 1.5, <<1, 2>>]) == :ok
    assert KV.get({:kv, List.last(ms)}, k.(0)) == {:ok, [self(), 1.5, <<1, 2>>]}

    # Local reads: each member's own state, once it has applied the write.
    for m <- ms do
      wait_until(fn -> KV.get({:kv, m}, k.(2), local: true) == {:ok, %{i: 2, s: "v2"}} end)
    end

    assert KV.get({:kv, hd(ms)}, k.(:missing), local: true) == :not_found

    assert KV.delete({:kv, Enum.at(ms, 1)}, k.(1)) == :ok
    assert KV.get({:kv, hd(ms)}, k.(1)) == :not_found
    assert KV.delete({:kv, hd(ms)}, k.(1)) == :ok
  end

  test "cas/4: create if missing, mismatch reports the current value, exact comparison", %{
    kv: kv,
    k: k
  } do
    assert KV.cas(kv, k.(:c), :not_found, 1) == :ok
    assert KV.cas(kv, k.(:c), :not_found, 2) == {:error, {:mismatch, {:ok, 1}}}
    assert KV.cas(kv, k.(:c), {:ok, 1.0}, 2) == {:error, {:mismatch, {:ok, 1}}}
    assert KV.cas(kv, k.(:c), {:ok, 1}, 2) == :ok
    assert KV.get(kv, k.(:c)) == {:ok, 2}
    assert KV.cas(kv, k.(:none), {:ok, 2}, 3) == {:error, {:mismatch, :not_found}}
  end

  test "incr/3: a missing key counts as 0, negative steps, big integers, non-integers", %{
    kv: kv,
    k: k
  } do
    assert KV.incr(kv, k.(:n)) == {:ok, 1}
    assert KV.incr(kv, k.(:n), 5) == {:ok, 6}
    assert KV.incr(kv, k.(:n), -10) == {:ok, -4}
    assert KV.incr(kv, k.(:n), Integer.pow(2, 70)) == {:ok, Integer.pow(2, 70) - 4}
    assert KV.put(kv, k.(:s), "x") == :ok
    assert KV.incr(kv, k.(:s), 1) == {:error, :not_integer}
    assert KV.get(kv, k.(:s)) == {:ok, "x"}
  end

  test "update/3: applies the fun again on a mismatch; attempts", %{kv: kv, k: k} do
    incr = &incr/1
    assert KV.update(kv, k.(:u), incr) == {:ok, 1}
    assert KV.update(kv, k.(:u), incr, local: true) == {:ok, 2}

    # A fun that writes the key itself the first time it runs: the first cas meets a mismatch.
    racing = fn read ->
      if Process.put(:raced, true) == nil, do: :ok = KV.put(kv, k.(:u), 100)
      incr.(read)
    end

    assert KV.update(kv, k.(:u), racing, attempts: 1) == {:error, :too_many_attempts}
    Process.delete(:raced)
    assert KV.update(kv, k.(:u), racing) == {:ok, 101}
    assert KV.get(kv, k.(:u)) == {:ok, 101}
  end

  test "update/3 from concurrent tasks over every member sums exactly", %{members: ms, k: k} do
    replies =
      for w <- 1..8 do
        server = {:kv, Enum.at(ms, rem(w, 3))}
        Task.async(fn -> for _ <- 1..10, do: KV.update(server, k.(:sum), &incr/1) end)
      end
      |> Enum.flat_map(&Task.await(&1, 60_000))

    # Each update read the value before it and wrote the next one: 80 distinct results, none lost.
    assert replies |> Enum.map(fn {:ok, n} -> n end) |> Enum.sort() == Enum.to_list(1..80)
    assert KV.get({:kv, hd(ms)}, k.(:sum)) == {:ok, 80}
  end

  test "lock/3, unlock/3 and put_fenced/4: contention, tokens, fencing", %{
    members: ms,
    kv: kv,
    k: k
  } do
    {:ok, t1} = KV.lock({:kv, Enum.at(ms, 1)}, k.(:lock), 60_000)
    assert is_integer(t1)

    # Held for everyone, the owner too, whichever member is asked.
    for m <- ms, do: assert(KV.lock({:kv, m}, k.(:lock), 1_000) == {:error, :held})
    assert Task.async(fn -> KV.lock(kv, k.(:lock), 1_000) end) |> Task.await() == {:error, :held}

    assert KV.put_fenced(kv, k.(:guarded), 1, {k.(:lock), t1}) == :ok
    assert KV.put_fenced(kv, k.(:guarded), 9, {k.(:other), t1}) == {:error, :stale_token}
    assert KV.unlock(kv, k.(:lock), t1 + 1_000) == {:error, :not_held}
    assert KV.unlock(kv, k.(:lock), t1) == :ok
    assert KV.unlock(kv, k.(:lock), t1) == {:error, :not_held}

    # The old holder's token is stale now: its write is refused.
    assert KV.put_fenced(kv, k.(:guarded), 2, {k.(:lock), t1}) == {:error, :stale_token}
    assert KV.get(kv, k.(:guarded)) == {:ok, 1}

    {:ok, t2} = KV.lock(kv, k.(:lock), 60_000)
    assert t2 > t1
    assert KV.put_fenced(kv, k.(:guarded), 2, {k.(:lock), t2}) == :ok
    assert :ok = KV.unlock(kv, k.(:lock), t2)
  end

  test "lock/3 with wait: gets the lock once its holder releases it", %{kv: kv, k: k} do
    {holder, token} = holder(kv, k.(:lock), 60_000)
    assert KV.lock(kv, k.(:lock), 1_000, wait: 50) == {:error, :held}

    waiter = Task.async(fn -> KV.lock(kv, k.(:lock), 60_000, wait: 10_000) end)
    assert KV.unlock(kv, k.(:lock), token) == :ok
    assert {:ok, t2} = Task.await(waiter, 15_000)
    assert t2 > token
    send(holder, :exit)
  end

  test "a lock whose owner dies is released; a ttl runs out", %{members: ms, kv: kv, k: k} do
    {holder, token} = holder({:kv, hd(ms)}, k.(:owned), 600_000)
    assert KV.lock(kv, k.(:owned), 60_000) == {:error, :held}
    Process.exit(holder, :kill)
    {:ok, t2} = wait_until(fn -> match?({:ok, _}, r = KV.lock(kv, k.(:owned), 60_000)) && r end)
    assert t2 > token
    assert KV.put_fenced(kv, k.(:x), 1, {k.(:owned), token}) == {:error, :stale_token}
    assert KV.unlock(kv, k.(:owned), t2) == :ok

    # The caller lives, but its lock's ttl runs out on the leader's clock.
    {:ok, t3} = KV.lock(kv, k.(:ttl), 300)
    {:ok, t4} = wait_until(fn -> match?({:ok, _}, r = KV.lock(kv, k.(:ttl), 60_000)) && r end)
    assert t4 > t3
    assert KV.put_fenced(kv, k.(:x), 1, {k.(:ttl), t3}) == {:error, :stale_token}
    assert KV.unlock(kv, k.(:ttl), t4) == :ok
  end

  test "with_lock/4: runs the fun holding the lock, releases it after, also on a raise", %{
    kv: kv,
    k: k
  } do
    assert {:ok, {:done, token}} =
             KV.with_lock(kv, k.(:lock), 60_000, fn token ->
               assert Task.async(fn -> KV.lock(kv, k.(:lock), 1_000) end) |> Task.await() ==
                        {:error, :held}

               :ok = KV.put_fenced(kv, k.(:v), :written, {k.(:lock), token})
               {:done, token}
             end)

    assert KV.get(kv, k.(:v)) == {:ok, :written}
    assert KV.put_fenced(kv, k.(:v), :late, {k.(:lock), token}) == {:error, :stale_token}

    assert_raise RuntimeError, "boom", fn ->
      KV.with_lock(kv, k.(:lock), 60_000, fn _ -> raise "boom" end)
    end

    assert {:ok, t} = KV.lock(kv, k.(:lock), 60_000)
    assert t > token

    # Held by this process: the fun does not run.
    assert KV.with_lock(kv, k.(:lock), 1_000, fn _ -> flunk("ran") end) == {:error, :held}
    assert KV.unlock(kv, k.(:lock), t) == :ok
  end

  test "watch/2: events for every change from the member that took the watch; unwatch/3",
       %{members: [m1, m2, m3], k: k} do
    key = k.(:w)
    {:ok, ref} = KV.watch({:kv, m3}, key)
    assert node(ref) == m3

    assert KV.put({:kv, m1}, key, 1) == :ok
    assert_receive {:kv_event, ^ref, ^key, {:ok, 1}}, 5_000
    assert KV.incr({:kv, m2}, key, 2) == {:ok, 3}
    assert_receive {:kv_event, ^ref, ^key, {:ok, 3}}, 5_000
    assert KV.cas({:kv, m1}, key, {:ok, 1}, 0) == {:error, {:mismatch, {:ok, 3}}}
    assert KV.cas({:kv, m1}, key, {:ok, 3}, 4) == :ok
    assert_receive {:kv_event, ^ref, ^key, {:ok, 4}}, 5_000
    assert KV.delete({:kv, m2}, key) == :ok
    assert_receive {:kv_event, ^ref, ^key, :not_found}, 5_000
    # A failed cas and a write of another key changed nothing here.
    assert KV.put({:kv, m1}, k.(:other), 1) == :ok

    # Two more watches of the key on the same member: its events go out in the order of the watches, so once the
    # last one's arrived, the earlier ones' would have too.
    {:ok, ref2} = KV.watch({:kv, m3}, key)
    {:ok, ref3} = KV.watch({:kv, [node(), m3]}, key)
    assert node(ref3) == m3
    assert KV.unwatch({:kv, m1}, ref) == :ok
    assert KV.put({:kv, m2}, key, 5) == :ok
    assert_receive {:kv_event, ^ref3, ^key, {:ok, 5}}, 5_000
    refute_received {:kv_event, ^ref, _, _}
    assert_received {:kv_event, ^ref2, ^key, {:ok, 5}}

    assert KV.put({:kv, m2}, key, 6) == :ok
    assert_receive {:kv_event, ^ref3, ^key, {:ok, 6}}, 5_000
    # ref2's event is in the mailbox: flush: true drops it.
    assert KV.unwatch({:kv, m3}, ref2, flush: true) == :ok
    refute_received {:kv_event, ^ref2, _, _}
    assert KV.unwatch({:kv, m3}, ref3) == :ok
    assert KV.unwatch({:kv, m3}, ref3) == :ok
  end

  test "status/1 of every member", %{members: ms, kv: kv} do
    leader = await_leader(ms)

    for m <- ms do
      assert {:ok, s} = KV.status({:kv, m})
      assert Enum.sort(s.members) == Enum.sort(ms)
      assert s.leader == leader
      assert s.role == if(m == leader, do: :leader, else: :follower)

      assert s.term > 0 and s.commit_index > 0 and s.last_applied > 0 and
               s.last_index >= s.commit_index

      assert is_integer(s.snapshot_index) and is_integer(s.keys) and is_integer(s.locks)
      assert s.durable == false
    end

    assert {:ok, %{role: _}} = KV.status(kv)
  end

  test "transfer_leadership/2", %{members: ms, kv: kv} do
    leader = await_leader(ms)
    [target | _] = ms -- [leader]
    assert KV.transfer_leadership(kv, target) == :ok
    assert await_leader(ms) == target
    assert KV.transfer_leadership(kv, target) == :ok
    assert KV.transfer_leadership(kv, :nobody@nowhere) == {:error, :not_member}
  end

  test "add_member/2 and remove_member/2: a fourth node joins, catches up, leaves",
       %{members: ms, group_arg: group, kv: kv, k: k} do
    assert KV.put(kv, k.(:before), :joined) == :ok
    # Not in the --raft-group list: it waits to be added.
    n4 = node_name("kv4")
    server4 = start_member(n4, ["--raft-group", group | @raft])

    assert KV.add_member(kv, n4) == :ok
    wait_until(fn -> KV.get({:kv, n4}, k.(:before), local: true) == {:ok, :joined} end)
    wait_until(fn -> match?({:ok, %{members: [_, _, _, _]}}, KV.status({:kv, n4})) end)
    assert KV.get({:kv, n4}, k.(:before)) == {:ok, :joined}
    assert KV.add_member(kv, n4) == {:error, :already_member}

    assert KV.remove_member(kv, n4) == :ok

    for m <- ms do
      wait_until(fn ->
        {:ok, %{members: now}} = KV.status({:kv, m})
        Enum.sort(now) == Enum.sort(ms)
      end)
    end

    assert KV.remove_member(kv, n4) == {:error, :not_member}

    # A member that is down is passed over.
    :ok = CNode.stop(server4)
    wait_until(fn -> n4 not in Node.list() end)
    assert KV.put({:kv, [n4 | ms]}, k.(:after), 1) == :ok
    assert KV.get({:kv, n4}, k.(:after)) == {:error, {:nodedown, n4}}
  end

  test "a list of members: down nodes and nodes without the group are passed over", %{
    members: ms,
    k: k
  } do
    nobody = node_name("nobody")
    assert KV.put({:kv, [nobody, node() | ms]}, k.(:a), 1) == :ok
    assert KV.get({:kv, [node(), nobody, List.last(ms)]}, k.(:a)) == {:ok, 1}
    assert KV.get({:kv, [nobody]}, k.(:a)) == {:error, {:nodedown, nobody}}
    assert KV.get({:kv, [nobody, node()]}, k.(:a)) == {:error, :noproc}
    assert KV.status({:no_such_group, ms}) == {:error, :noproc}
  end

  test "without a quorum: :unavailable from the service, :timeout from the client", %{k: k} do
    solo = node_name("solo")
    ghosts = Enum.map_join(1..2, ",", fn i -> Atom.to_string(node_name("ghost#{i}")) end)

    start_member(solo, [
      "--raft-group",
      "solo=#{solo},#{ghosts}",
      "--raft-election-ms",
      "300",
      "--raft-request-timeout-ms",
      "100"
    ])

    assert KV.put({:solo, solo}, k.(:a), 1) == {:error, :unavailable}
    assert KV.get({:solo, solo}, k.(:a)) == {:error, :unavailable}
    assert KV.get({:solo, solo}, k.(:a), local: true) == :not_found
    assert {:ok, %{leader: nil, members: [_, _, _]}} = KV.status({:solo, solo})

    assert KV.put({:solo, solo}, k.(:a), 1, timeout: 50) == {:error, :timeout}

    # The service's late answer to the timed-out call never reaches this process (GenServer.call's alias).
    assert KV.incr({:solo, solo}, k.(:a), 1) == {:error, :unavailable}
    assert Process.info(self(), :message_queue_len) == {:message_queue_len, 0}
  end
end
