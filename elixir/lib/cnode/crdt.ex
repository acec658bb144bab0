defmodule CNode.CRDT do
  @moduledoc """
  A thin client for cnode's CRDT service (`--crdt`): counters, sets, maps and registers replicated by delta-state
  anti-entropy, that stay writable and readable on every replica through partitions.

  Each cnode started with `--crdt c1@host,c2@host,c3@host` runs a replica registered as `:crdt`. Every function
  here is one `GenServer.call/3` to `{:crdt, node}` of the shape in the table below, so any Elixir process can send
  the same messages without this package.

      c1 = :"c1@host"

      :ok = CNode.CRDT.counter_add(c1, :page_views, 1)
      :ok = CNode.CRDT.set_add(c1, {:room, 42}, "alice")
      :ok = CNode.CRDT.map_put(c1, :flags, :dark_mode, true)
      :ok = CNode.CRDT.register_put(c1, :leader, :"c2@host")

      {:ok, 1} = CNode.CRDT.value(c1, :page_views)
      {:ok, ["alice"]} = CNode.CRDT.value(c1, {:room, 42})
      {:ok, true} = CNode.CRDT.map_get(c1, :flags, :dark_mode)
      :not_found = CNode.CRDT.value(c1, :never_written)

      :ok = CNode.CRDT.subscribe(c1, :flags)
      receive do
        {:crdt_changed, :flags, %{} = flags} -> flags
      end

  ## What it guarantees, and what not

  Writes and reads are local to the replica called: a write returns `:ok` as soon as that replica has it (also while
  it is cut off from the others), and reaches the other replicas within about one `--crdt-sync-ms` (200 ms by
  default) while they are connected. Replicas that have received the same writes hold the same values, whatever the
  order the writes arrived in. There is no read-your-writes across replicas: a write on one replica is not yet
  visible on another right after `:ok`.

    * a counter (`counter_add/3`) sums every update exactly once;
    * a set (`set_add/3`, `set_remove/3`) is add-wins: an add concurrent with a remove of the same element leaves it
      present; a remove removes the adds it has seen;
    * a map (`map_put/4`, `map_remove/3`) is add-wins on keys, and a put replaces the values it has seen; of
      concurrent puts to one key the one with the largest hybrid-logical-clock timestamp wins, on every replica;
    * a register (`register_put/3`) keeps the write with the largest timestamp: last-writer-wins depends on the
      clocks (a replica whose clock is ahead wins over a later write elsewhere; cnode logs a clock more than a minute
      ahead).

  Every name holds one type, fixed by its first operation; another operation on it returns
  `{:error, {:wrong_type, type}}` with the name's type (`:pn_counter`, `:aw_or_set`, `:aw_lww_map`,
  `:lww_register`).

  ## Requests

  | function | request | reply |
  | --- | --- | --- |
  | `counter_add/3` | `{:counter_add, name, integer}` | `:ok` |
  | `set_add/3`, `set_remove/3` | `{:set_add, name, element}`, `{:set_remove, name, element}` | `:ok` |
  | `map_put/4`, `map_remove/3` | `{:map_put, name, key, value}`, `{:map_remove, name, key}` | `:ok` |
  | `register_put/3` | `{:register_put, name, value}` | `:ok` |
  | `value/2` | `{:value, name}` | `{:ok, value}` (an integer, a list in term order, a map, the value) / `:not_found` |
  | `map_get/3` | `{:map_get, name, key}` | `{:ok, value}` / `:not_found` |
  | `subscribe/2` | `{:subscribe, name}` | `:ok`, then `{:crdt_changed, name, value}` messages |
  | `unsubscribe/2` | `{:unsubscribe, name}` | `:ok` |
  | `status/1` | `:status` | a map (this function: `{:ok, map}`) |

  Anything else gets `{:error, :badarg}` from the service (so does `counter_add/3` with an integer beyond 64 bits).

  ## Results and errors

  Besides the service's replies, every function may return `{:error, :timeout}` (no reply within the `:timeout`
  option, 5 000 ms by default), `{:error, :noproc}` (no replica runs on that node), `{:error, {:nodedown, node}}`
  or `{:error, {:exit, reason}}`. A write that timed out may or may not have been taken: a `counter_add/3` sent
  again may count twice; the other writes can be sent again as they are.
  """

  @timeout 5_000

  @typedoc "The node of a replica (its process is `{:crdt, node}`)."
  @type replica :: node()
  @typedoc "An object's name: any term."
  @type name :: term()
  @typedoc "The CRDT type a name holds."
  @type crdt_type :: :pn_counter | :aw_or_set | :aw_lww_map | :lww_register
  @typedoc "Errors any function may return."
  @type error ::
          {:error,
           {:wrong_type, crdt_type}
           | :badarg
           | :timeout
           | :noproc
           | {:nodedown, node()}
           | {:exit, term()}}
  @type option :: {:timeout, timeout()}

  @doc "Adds `amount` (negative: subtracts) to the PN-counter `name` (`{:counter_add, name, amount}`)."
  @spec counter_add(replica, name, integer(), [option]) :: :ok | error
  def counter_add(replica, name, amount \\ 1, opts \\ []) when is_integer(amount),
    do: call(replica, {:counter_add, name, amount}, opts)

  @doc "Adds `element` to the add-wins set `name` (`{:set_add, name, element}`)."
  @spec set_add(replica, name, term(), [option]) :: :ok | error
  def set_add(replica, name, element, opts \\ []),
    do: call(replica, {:set_add, name, element}, opts)

  @doc """
  Removes `element` from the set `name`, as this replica has seen it (`{:set_remove, name, element}`): an add of it
  on another replica that this one has not seen yet survives.
  """
  @spec set_remove(replica, name, term(), [option]) :: :ok | error
  def set_remove(replica, name, element, opts \\ []),
    do: call(replica, {:set_remove, name, element}, opts)

  @doc "Puts `value` under `key` in the map `name` (`{:map_put, name, key, value}`)."
  @spec map_put(replica, name, term(), term(), [option]) :: :ok | error
  def map_put(replica, name, key, value, opts \\ []),
    do: call(replica, {:map_put, name, key, value}, opts)

  @doc "Removes `key` from the map `name`, as this replica has seen it (`{:map_remove, name, key}`)."
  @spec map_remove(replica, name, term(), [option]) :: :ok | error
  def map_remove(replica, name, key, opts \\ []),
    do: call(replica, {:map_remove, name, key}, opts)

  @doc "Writes the last-writer-wins register `name` (`{:register_put, name, value}`)."
  @spec register_put(replica, name, term(), [option]) :: :ok | error
  def register_put(replica, name, value, opts \\ []),
    do: call(replica, {:register_put, name, value}, opts)

  @doc """
  The value of `name` at this replica (`{:value, name}`): `{:ok, integer}` for a counter, `{:ok, list}` (in Erlang
  term order) for a set, `{:ok, map}` for a map, `{:ok, value}` for a register; `:not_found` for a name nobody has
  written (that this replica has heard of).
  """
  @spec value(replica, name, [option]) :: {:ok, term()} | :not_found | error
  def value(replica, name, opts \\ []), do: call(replica, {:value, name}, opts)

  @doc "The value under `key` in the map `name` (`{:map_get, name, key}`): `{:ok, value}` or `:not_found`."
  @spec map_get(replica, name, term(), [option]) :: {:ok, term()} | :not_found | error
  def map_get(replica, name, key, opts \\ []), do: call(replica, {:map_get, name, key}, opts)

  @doc """
  Subscribes the calling process to `name` at this replica (`{:subscribe, name}`): it gets
  `{:crdt_changed, name, value}` whenever the value there changes, by a local write or by a merge, at most once per
  sync interval (a burst of changes sends the last value). The replica monitors the subscriber: a subscription ends
  with its process. The current value is not sent: subscribe first, then read it with `value/2`.
  """
  @spec subscribe(replica, name, [option]) :: :ok | error
  def subscribe(replica, name, opts \\ []), do: call(replica, {:subscribe, name}, opts)

  @doc "Ends the calling process's subscription to `name` (`{:unsubscribe, name}`)."
  @spec unsubscribe(replica, name, [option]) :: :ok | error
  def unsubscribe(replica, name, opts \\ []), do: call(replica, {:unsubscribe, name}, opts)

  @doc """
  The replica's status (`:status`): `{:ok, map}` with `:replicas` (the replicas in contact), `:peers` (every replica
  it syncs with), `:sync_ms`, `:names`, `:unacked` (per peer, the delta intervals it has not acknowledged),
  `:bytes_out` (per peer, bytes sent on the connection), `:writer`, `:incarnation`, `:subscriptions` and `:data_dir`.
  """
  @spec status(replica, [option]) :: {:ok, map()} | error
  def status(replica, opts \\ []) do
    case call(replica, :status, opts) do
      %{} = status -> {:ok, status}
      other -> other
    end
  end

  defp call(replica, request, opts) when is_atom(replica) do
    GenServer.call({:crdt, replica}, request, Keyword.get(opts, :timeout, @timeout))
  catch
    :exit, {:noproc, _} -> {:error, :noproc}
    :exit, {{:nodedown, down}, _} -> {:error, {:nodedown, down}}
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, {reason, {GenServer, :call, _}} -> {:error, {:exit, reason}}
  end
end
