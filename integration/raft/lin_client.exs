# Concurrent Elixir clients of a Raft KV group, recording a history for integration/lib/linearizability.py.
#
# LinClient.start(members, opts) spawns opts[:clients] processes, each doing random requests (put, get, cas, incr,
# delete on opts[:keys] keys, and incr by 1 on the key :counter) with GenServer.call to a random member of the
# current member list (LinClient.set_members/1) until LinClient.stop/0. Every request is recorded with
# :erlang.monotonic_time(:nanosecond) taken just before the call and just after the reply, in one ETS table;
# LinClient.dump(path) writes the history as JSON (the encoding of linearizability.term_from_json), times in
# nanoseconds since the start.
# LinClient.record(member, request) makes one recorded request from the calling process (the test's own writes
# and final reads). A reply {:error, :unavailable} or an exit (timeout, nodedown) is an unknown outcome.
defmodule LinClient do
  @tab :lin_history

  def start(members, opts) do
    clients = Keyword.fetch!(opts, :clients)
    seed = Keyword.fetch!(opts, :seed)
    parent = self()

    holder =
      spawn(fn ->
        :ets.new(@tab, [:public, :named_table, :ordered_set, write_concurrency: true])
        send(parent, :table)
        Process.sleep(:infinity)
      end)

    receive do
      :table -> :ok
    end

    :persistent_term.put({__MODULE__, :inflight}, :ets.new(:lin_inflight, [:public, :set, {:heir, holder, nil}]))

    :persistent_term.put({__MODULE__, :holder}, holder)
    :persistent_term.put({__MODULE__, :members}, List.to_tuple(members))
    :persistent_term.put({__MODULE__, :done}, :counters.new(2, [:write_concurrency]))
    :persistent_term.put({__MODULE__, :seq}, :atomics.new(1, []))
    :persistent_term.put({__MODULE__, :opts}, opts)
    :persistent_term.put({__MODULE__, :stop}, :atomics.new(1, []))
    :persistent_term.put({__MODULE__, :hold}, :atomics.new(1, []))
    :persistent_term.put({__MODULE__, :t0}, :erlang.monotonic_time(:nanosecond))

    for id <- 1..clients do
      spawn(fn -> client(id, seed) end)
    end

    :ok
  end

  def stop, do: :atomics.put(:persistent_term.get({__MODULE__, :stop}), 1, 1)

  # While held, the clients make no new request (the requests under way go on): every member down at once would
  # otherwise turn into thousands of instant :nodedown exits of unknown outcome.
  def hold(on), do: :atomics.put(:persistent_term.get({__MODULE__, :hold}), 1, if(on, do: 1, else: 0))

  def set_members(members), do: :persistent_term.put({__MODULE__, :members}, List.to_tuple(members))

  # {operations recorded, clients finished}
  def progress do
    c = :persistent_term.get({__MODULE__, :done})
    {:counters.get(c, 1), :counters.get(c, 2)}
  end

  # How many recorded operations of these kinds ended with an ok outcome, since sequence number `from`.
  def acked_since(from, kinds) do
    :ets.select(@tab, [{{:"$1", :_, :_, :"$2", :_, :_, :_, :"$3"}, [{:>=, :"$1", from}], [{{:"$2", :"$3"}}]}])
    |> Enum.count(fn {req, res} -> elem(req, 0) in kinds and outcome(res) == "ok" end)
  end

  # Requests to this member under way.
  def inflight(member) do
    case :ets.lookup(:persistent_term.get({__MODULE__, :inflight}), member) do
      [{_, n}] -> n
      [] -> 0
    end
  end

  # How many requests of this client are recorded (answered or ended).
  def recorded(client) do
    :ets.select_count(@tab, [{{:_, :"$1", :_, :_, :_, :_, :_, :_}, [{:==, :"$1", client}], [true]}])
  end

  def seq, do: :atomics.get(:persistent_term.get({__MODULE__, :seq}), 1)

  defp client(id, seed) do
    :rand.seed(:exsss, {seed, id, 12345})
    opts = :persistent_term.get({__MODULE__, :opts})
    run(id, opts, %{}, 0, :persistent_term.get({__MODULE__, :stop}))
    :counters.add(:persistent_term.get({__MODULE__, :done}), 2, 1)
  end

  defp run(id, opts, seen, n, stop) do
    cond do
      :atomics.get(stop, 1) != 0 ->
        :ok

      :atomics.get(:persistent_term.get({__MODULE__, :hold}), 1) != 0 ->
        Process.sleep(5)
        run(id, opts, seen, n, stop)

      true ->
        step(id, opts, seen, n, stop)
    end
  end

  defp step(id, opts, seen, n, stop) do
    keys = Keyword.fetch!(opts, :keys)
    key = :rand.uniform(keys) - 1
    roll = :rand.uniform(100)

    req =
      cond do
        roll <= 30 -> {:get, key}
        roll <= 52 -> {:put, key, value(id, n)}
        roll <= 54 -> {:put, key, "s#{id}-#{n}"}
        roll <= 70 -> {:cas, key, Map.get(seen, key, expect(seen)), value(id, n)}
        roll <= 82 -> {:incr, key, :rand.uniform(5)}
        roll <= 88 -> {:delete, key}
        true -> {:incr, :counter, 1}
      end

    members = :persistent_term.get({__MODULE__, :members})
    member = elem(members, :rand.uniform(tuple_size(members)) - 1)
    res = record(member, req, id, Keyword.get(opts, :call_timeout, 10_000))
    run(id, opts, observe(seen, req, res), n + 1, stop)
  end

  defp value(id, n), do: id * 1_000_000 + n

  # a cas expects what this client last saw of the key, or (not having seen it) sometimes :not_found
  defp expect(_seen), do: if(:rand.uniform(2) == 1, do: :not_found, else: {:ok, :rand.uniform(5)})

  defp observe(seen, {:get, k}, {:ok, _} = v), do: Map.put(seen, k, v)
  defp observe(seen, {:get, k}, :not_found), do: Map.put(seen, k, :not_found)
  defp observe(seen, {:put, k, v}, :ok), do: Map.put(seen, k, {:ok, v})
  defp observe(seen, {:cas, k, _, new}, :ok), do: Map.put(seen, k, {:ok, new})
  defp observe(seen, {:cas, k, _, _}, {:error, {:mismatch, cur}}), do: Map.put(seen, k, cur)
  defp observe(seen, {:incr, k, _}, {:ok, n}), do: Map.put(seen, k, {:ok, n})
  defp observe(seen, {:delete, k}, :ok), do: Map.put(seen, k, :not_found)
  defp observe(seen, _, _), do: seen

  def record(member, req, client \\ "driver", timeout \\ 10_000) do
    seq = :atomics.add_get(:persistent_term.get({__MODULE__, :seq}), 1, 1)
    inflight = :persistent_term.get({__MODULE__, :inflight})
    :ets.update_counter(inflight, member, 1, {member, 0})
    t0 = :erlang.monotonic_time(:nanosecond)

    res =
      try do
        GenServer.call({:kv, member}, req, timeout)
      catch
        :exit, reason -> {:"$exit", reason}
      end

    t1 = :erlang.monotonic_time(:nanosecond)
    :ets.update_counter(inflight, member, -1)
    :ets.insert(@tab, {seq, client, member, req, t0, t1, nil, res})
    :counters.add(:persistent_term.get({__MODULE__, :done}), 1, 1)
    res
  end

  # The same from a new process; returns at once.
  def record_async(member, req, client, timeout \\ 20_000) do
    spawn(fn -> record(member, req, client, timeout) end)
    :ok
  end

  defp outcome({:"$exit", _}), do: "unknown"
  defp outcome({:error, :unavailable}), do: "unknown"
  defp outcome(_), do: "ok"

  # The leader every member in the list that answers agrees on, or nil.
  def leader(members) do
    found =
      members
      |> Enum.map(fn n ->
        try do
          GenServer.call({:kv, n}, :status, 500)
        catch
          :exit, _ -> nil
        end
      end)
      |> Enum.filter(& &1)
      |> Enum.map(& &1.leader)
      |> Enum.uniq()

    case found do
      [l] when l != nil -> l
      _ -> nil
    end
  end

  def dump(path) do
    t0 = :persistent_term.get({__MODULE__, :t0})

    ops =
      :ets.tab2list(@tab)
      |> Enum.map(fn {seq, client, member, req, c0, c1, _, res} ->
        [f, key | args] = Tuple.to_list(req)
        out = outcome(res)

        [
          "{\"seq\":", j(seq), ",\"client\":", str(to_string(client)), ",\"member\":", str(to_string(member)),
          ",\"f\":\"", Atom.to_string(f), "\",\"key\":", j(key), ",\"args\":", j(args), ",\"call\":", j(c0 - t0),
          ",\"ret\":", if(out == "ok", do: j(c1 - t0), else: "null"),
          ",\"result\":", if(out == "ok", do: j(res), else: "null"),
          ",\"outcome\":\"", out, "\",\"info\":", str(inspect(res, limit: 20)), "}"
        ]
      end)

    File.write!(path, ["[", Enum.intersperse(ops, ",\n"), "]\n"])
    length(ops)
  end

  defp j(x) when is_integer(x), do: Integer.to_string(x)
  defp j(x) when is_atom(x), do: ["{\"a\":", str(Atom.to_string(x)), "}"]
  defp j(x) when is_binary(x), do: ["{\"b\":", str(x), "}"]
  defp j(x) when is_tuple(x), do: ["{\"t\":", j(Tuple.to_list(x)), "}"]
  defp j(x) when is_list(x), do: ["[", Enum.intersperse(Enum.map(x, &j/1), ","), "]"]

  # JSON string of printable ASCII; anything else becomes \u escapes of its bytes
  defp str(s) do
    body =
      for <<b <- s>> do
        cond do
          b == ?" -> "\\\""
          b == ?\\ -> "\\\\"
          b >= 32 and b < 127 -> <<b>>
          true -> "\\u00" <> Base.encode16(<<b>>)
        end
      end

    ["\"", body, "\""]
  end
end
