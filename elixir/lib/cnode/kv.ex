defmodule CNode.KV do
  @moduledoc """
  A thin client for cnode's Raft KV service (`--raft-group`): a replicated key-value store with compare-and-set,
  counters, locks with fencing tokens and watches.

  Each cnode member started with `--raft-group kv=kv1@host,kv2@host,kv3@host` registers the group's process as
  `:kv`. Any member takes any request: a follower hands it to the leader, which replies once the command is
  committed. Every function here is one `GenServer.call/3` of the shape in the table below, so any Elixir process
  can send the same messages without this package.

      kv = {:kv, [:"kv1@host", :"kv2@host", :"kv3@host"]}   # or {:kv, :"kv1@host"} for one member

      :ok = CNode.KV.put(kv, {:user, 1}, %{name: "Ada"})
      {:ok, %{name: "Ada"}} = CNode.KV.get(kv, {:user, 1})         # linearizable (ReadIndex on the leader)
      {:ok, _} = CNode.KV.get(kv, {:user, 1}, local: true)         # this member's state, maybe stale
      :not_found = CNode.KV.get(kv, :nothing)

      {:ok, 1} = CNode.KV.incr(kv, :visits)                        # a missing key counts as 0
      :ok = CNode.KV.cas(kv, :config, :not_found, %{v: 1})         # expected: as get/2 returns it
      {:error, {:mismatch, {:ok, %{v: 1}}}} = CNode.KV.cas(kv, :config, :not_found, %{v: 2})
      {:ok, %{v: 2}} = CNode.KV.update(kv, :config, fn {:ok, c} -> %{c | v: c.v + 1} end)

  Locks belong to the calling process and go with it (unlock, ttl on the leader's clock, or the owner's death,
  whichever comes first). A lock's token grows with every grant in the group, so `put_fenced/4` refuses the write
  of a holder whose lock has passed to someone else:

      {:ok, token} = CNode.KV.lock(kv, :migrations, 30_000)
      :ok = CNode.KV.put_fenced(kv, :schema, 7, {:migrations, token})
      :ok = CNode.KV.unlock(kv, :migrations, token)

      {:ok, :done} =
        CNode.KV.with_lock(kv, :migrations, 30_000, fn token ->
          :ok = CNode.KV.put_fenced(kv, :schema, 8, {:migrations, token})
          :done
        end)

  A watch sends the caller `{:kv_event, ref, key, {:ok, value} | :not_found}` every time the key changes (the
  value after the change):

      {:ok, ref} = CNode.KV.watch(kv, :config)
      receive do
        {:kv_event, ^ref, :config, {:ok, config}} -> config
      end
      :ok = CNode.KV.unwatch(kv, ref)

  ## Servers: one member or a list

  `server` is `{group, node}` or `{group, [node, ...]}`. With a list, a call goes to the first member and moves
  on to the next only when the request cannot have reached the member: the member's node is not connected and
  `Node.connect/1` fails (`{:error, {:nodedown, node}}`), or no group of that name runs there
  (`{:error, :noproc}`). When every member is passed over, the result is the last member's error. Once a member
  may have taken the request, its outcome is the result, error or not: a member lost during the call gives
  `{:error, {:nodedown, node}}` and no other member is tried, since the command may have been applied (a second
  `incr/3` would count twice, a second `cas/4` would report a mismatch against its own write).

  A watch lives on the member that took it: `node(ref)`. It ends when that member stops (monitor
  `{group, node(ref)}` to know); `unwatch/3` goes to that member.

  ## Results and errors

  The service's replies are returned as they are. Besides those, every function may return:

    * `{:error, :unavailable}` - the group had no leader or no quorum within cnode's
      `--raft-request-timeout-ms` (5 000 by default), or the leader that took a write lost its term. A write may or
      may not have been applied: `put/3` and `delete/2` can be sent again as they are; a `cas/4` sent again may
      report a mismatch against its own write; `incr/3` may count twice; a `lock/3` may have been granted (it
      then ends with its ttl or its owner).
    * `{:error, :timeout}` - no reply within the `:timeout` option (10 000 ms by default: keep it above
      `--raft-request-timeout-ms`, so that the service's own `:unavailable` comes first).
    * `{:error, :noproc}`, `{:error, {:nodedown, node}}` - see above; `{:error, {:exit, reason}}` when the
      member's process exited during the call.

  Every function takes `timeout: ms` (per member tried) in its options.

  ## Requests

  | function | request | reply |
  | --- | --- | --- |
  | `put/3` | `{:put, key, value}` | `:ok` |
  | `get/2` | `{:get, key}`; `local: true`: `{:get, key, :local}` | `{:ok, value}` / `:not_found` |
  | `delete/2` | `{:delete, key}` | `:ok` |
  | `cas/4` | `{:cas, key, expected, new}` | `:ok` / `{:error, {:mismatch, current}}` |
  | `incr/3` | `{:incr, key, by}` | `{:ok, n}` / `{:error, :not_integer}` |
  | `lock/3` | `{:lock, name, ttl_ms}` | `{:ok, token}` / `{:error, :held}` |
  | `unlock/3` | `{:unlock, name, token}` | `:ok` / `{:error, :not_held}` |
  | `put_fenced/4` | `{:put_fenced, key, value, {name, token}}` | `:ok` / `{:error, :stale_token}` |
  | `watch/2` | `{:watch, key}` | `{:ok, ref}`, then `{:kv_event, ref, key, {:ok, v} \\| :not_found}` |
  | `unwatch/2` | `{:unwatch, ref}` | `:ok` |
  | `status/1` | `:status` | a map (this function: `{:ok, map}`) |
  | `add_member/2`, `remove_member/2` | `{:add_member, node}`, `{:remove_member, node}` | `:ok` / `{:error, reason}` |
  | `transfer_leadership/2` | `{:transfer_leadership, node}` | `:ok` / `{:error, reason}` |

  Anything else gets `{:error, :badarg}` from the service.
  """

  @timeout 10_000

  @typedoc "The group's name: the name its process is registered under on every member."
  @type group :: atom()

  @typedoc "One member, or members to try in order (see the module doc)."
  @type server :: {group, node()} | {group, [node(), ...]}

  @type key :: term()
  @type value :: term()

  @typedoc "What `get/2` returns for a key, and what `cas/4` expects and reports."
  @type read :: {:ok, value} | :not_found

  @typedoc "A lock's fencing token: the Raft index of its grant, strictly increasing over the group's grants."
  @type token :: non_neg_integer()

  @typedoc "Errors any function may return besides the service's own."
  @type error ::
          {:error,
           :unavailable | :timeout | :noproc | {:nodedown, node()} | {:exit, term()} | :badarg}

  @type option :: {:timeout, timeout()}

  @doc "Stores `value` under `key` (`{:put, key, value}`): `:ok`."
  @spec put(server, key, value, [option]) :: :ok | error
  def put(server, key, value, opts \\ []), do: call(server, {:put, key, value}, opts)

  @doc """
  Reads `key`: `{:ok, value}` or `:not_found`.

  By default the read is linearizable (`{:get, key}`: the leader confirms its leadership with a quorum, then
  answers once it has applied up to that point), so it sees every write acknowledged before it. With
  `local: true` it is `{:get, key, :local}`: the member answers from its own state at once, possibly stale, even
  without a quorum.
  """
  @spec get(server, key, [option | {:local, boolean()}]) :: read | error
  def get(server, key, opts \\ []) do
    if opts[:local],
      do: call(server, {:get, key, :local}, opts),
      else: call(server, {:get, key}, opts)
  end

  @doc "Removes `key` (`{:delete, key}`): `:ok`, also when there was none."
  @spec delete(server, key, [option]) :: :ok | error
  def delete(server, key, opts \\ []), do: call(server, {:delete, key}, opts)

  @doc """
  Compare-and-set (`{:cas, key, expected, new}`): stores `new` if `key` currently reads `expected`, which is
  shaped as `get/2` returns it: `{:ok, value}`, or `:not_found` to create the key only if it is missing.

  Returns `:ok`, or `{:error, {:mismatch, current}}` with what the key holds (`{:ok, value}` or `:not_found`).
  Values compare as `===` (exactly equal, so `1` does not match `1.0`).

      :ok = CNode.KV.cas(kv, :leader, :not_found, node())
      {:error, {:mismatch, {:ok, other}}} = CNode.KV.cas(kv, :leader, :not_found, node())
  """
  @spec cas(server, key, read, value, [option]) :: :ok | {:error, {:mismatch, read}} | error
  def cas(server, key, expected, new, opts \\ []),
    do: call(server, {:cas, key, expected, new}, opts)

  @doc """
  Adds `by` (an integer, default 1, may be negative) to the integer under `key` (`{:incr, key, by}`); a missing key
  counts as 0. Returns `{:ok, new_value}`, or `{:error, :not_integer}` when the key holds something else.

  Not safe to retry after `{:error, :unavailable}` or `{:error, {:nodedown, _}}`: the first may have counted.
  """
  @spec incr(server, key, integer(), [option]) ::
          {:ok, integer()} | {:error, :not_integer} | error
  def incr(server, key, by \\ 1, opts \\ []) when is_integer(by),
    do: call(server, {:incr, key, by}, opts)

  @doc """
  Reads `key`, applies `fun` to what it reads (`{:ok, value}` or `:not_found`) and stores the result with
  `cas/4`; on a mismatch it applies `fun` again to the value the mismatch reported, until a `cas/4` succeeds.
  Returns `{:ok, new_value}`.

      {:ok, n} = CNode.KV.update(kv, :hits, fn {:ok, n} -> n + 1; :not_found -> 1 end)

      CNode.KV.update(kv, :admins, fn
        {:ok, admins} -> MapSet.put(admins, "ada")
        :not_found -> MapSet.new(["ada"])
      end)

  `fun` may run several times (keep it free of side effects). Options: `attempts:` (100) - after that many
  mismatches in a row, `{:error, :too_many_attempts}`; `local: true` - the first read is local (a stale read
  only costs a retry); `timeout:`. Any other error ends the loop and is returned; after `{:error, :unavailable}`
  the update may or may not have been applied, so it is not retried here.
  """
  @spec update(server, key, (read -> value), [
          option | {:attempts, pos_integer()} | {:local, boolean()}
        ]) :: {:ok, value} | {:error, :too_many_attempts} | error
  def update(server, key, fun, opts \\ []) when is_function(fun, 1) do
    attempts = Keyword.get(opts, :attempts, 100)

    case get(server, key, opts) do
      {:error, _} = error -> error
      current -> update_loop(server, key, fun, current, attempts, opts)
    end
  end

  defp update_loop(_server, _key, _fun, _current, 0, _opts), do: {:error, :too_many_attempts}

  defp update_loop(server, key, fun, current, attempts, opts) do
    new = fun.(current)

    case cas(server, key, current, new, opts) do
      :ok -> {:ok, new}
      {:error, {:mismatch, now}} -> update_loop(server, key, fun, now, attempts - 1, opts)
      error -> error
    end
  end

  @doc """
  Takes the lock `name` (any term) for the calling process for at most `ttl_ms` milliseconds
  (`{:lock, name, ttl_ms}`). Returns `{:ok, token}`, or `{:error, :held}` when another holder has it (the caller
  too: locks do not nest).

  The lock is released by `unlock/3`, when the ttl runs out on the leader's clock, or when the owner exits
  (the leader monitors it; a lost connection to the owner's node counts). A new leader takes the locks over
  with their full ttl from then on, so a lock may outlive its ttl by the time a change of leader takes, never
  end early.

  Options: `wait: ms` (0) - while the lock is held, try again (with a growing pause, at most 250 ms) until `ms`
  have passed; `timeout:` (per request).
  """
  @spec lock(server, term(), pos_integer(), [option | {:wait, non_neg_integer()}]) ::
          {:ok, token} | {:error, :held} | error
  def lock(server, name, ttl_ms, opts \\ []) when is_integer(ttl_ms) and ttl_ms > 0 do
    deadline = now() + Keyword.get(opts, :wait, 0)
    lock_until(server, name, ttl_ms, opts, deadline, 10)
  end

  defp lock_until(server, name, ttl_ms, opts, deadline, pause) do
    case call(server, {:lock, name, ttl_ms}, opts) do
      {:error, :held} = held ->
        case deadline - now() do
          left when left > 0 ->
            Process.sleep(min(:rand.uniform(pause), left))
            lock_until(server, name, ttl_ms, opts, deadline, min(pause * 2, 250))

          _ ->
            held
        end

      other ->
        other
    end
  end

  @doc """
  Releases the lock `name` taken with `token` (`{:unlock, name, token}`): `:ok`, or `{:error, :not_held}` when
  the lock is not held with that token (released already, expired, or taken by someone else since). Any process
  may release a lock whose token it has.
  """
  @spec unlock(server, term(), token, [option]) :: :ok | {:error, :not_held} | error
  def unlock(server, name, token, opts \\ []) when is_integer(token) and token >= 0,
    do: call(server, {:unlock, name, token}, opts)

  @doc """
  Runs `fun.(token)` holding the lock `name` (see `lock/3`), and releases it afterwards, also when `fun` raises
  or exits. Returns `{:ok, fun_result}`, or the error of `lock/3` (`{:error, :held}`, ...) without running `fun`.

      CNode.KV.with_lock(kv, {:job, 42}, 60_000, fn token ->
        :ok = CNode.KV.put_fenced(kv, {:job, 42, :state}, :running, {{:job, 42}, token})
      end, wait: 5_000)

  The release's own result is not reported: a lock that expired while `fun` ran is simply gone. Guard the
  writes `fun` makes with `put_fenced/4` if they must not land after the lock has passed on. Options: those of
  `lock/3` (`wait:`, `timeout:`).
  """
  @spec with_lock(server, term(), pos_integer(), (token -> result), [
          option | {:wait, non_neg_integer()}
        ]) :: {:ok, result} | {:error, :held} | error
        when result: term()
  def with_lock(server, name, ttl_ms, fun, opts \\ []) when is_function(fun, 1) do
    case lock(server, name, ttl_ms, opts) do
      {:ok, token} ->
        try do
          {:ok, fun.(token)}
        after
          unlock(server, name, token, opts)
        end

      error ->
        error
    end
  end

  @doc """
  Stores `value` under `key` only while the lock `name` is held with `token`
  (`{:put_fenced, key, value, {name, token}}`): `:ok`, or `{:error, :stale_token}` (the write is refused).

  The check and the write are one command in the log, so a holder whose lock expired or passed to another
  process cannot overwrite what the new holder wrote, however late its request arrives.
  """
  @spec put_fenced(server, key, value, {term(), token}, [option]) ::
          :ok | {:error, :stale_token} | error
  def put_fenced(server, key, value, {_name, token} = fence, opts \\ [])
      when is_integer(token) and token >= 0,
      do: call(server, {:put_fenced, key, value, fence}, opts)

  @doc """
  Watches `key` (`{:watch, key}`): returns `{:ok, ref}`; from then on the caller gets
  `{:kv_event, ref, key, {:ok, value} | :not_found}` each time the member that took the watch applies a change of
  `key` (a put, a successful `cas/4`, `incr/3` or `put_fenced/4`, a delete of an existing key), with the value
  after it, in log order.

  There is no event for the value at the time of the call: read the key after `watch/2` returns so that no change
  falls in between. The watch ends with `unwatch/3`, when the caller exits, or when the member stops; it lives on
  the member `node(ref)` (see the module doc).
  """
  @spec watch(server, key, [option]) :: {:ok, reference()} | error
  def watch(server, key, opts \\ []), do: call(server, {:watch, key}, opts)

  @doc """
  Ends the watch `ref` (`{:unwatch, ref}` to its member, `node(ref)`): `:ok`, also for a watch that is gone.

  No event of `ref` is sent after the reply; events sent before it may still be in the mailbox: `flush: true`
  drops them.
  """
  @spec unwatch(server, reference(), [option | {:flush, boolean()}]) :: :ok | error
  def unwatch({group, _nodes}, ref, opts \\ []) when is_reference(ref) do
    with :ok <- call({group, node(ref)}, {:unwatch, ref}, opts) do
      if opts[:flush], do: flush_events(ref)
      :ok
    end
  end

  defp flush_events(ref) do
    receive do
      {:kv_event, ^ref, _, _} -> flush_events(ref)
    after
      0 -> :ok
    end
  end

  @doc """
  The member's view of the group (`:status`): `{:ok, map}` with

    * `:role` - `:leader`, `:follower`, `:pre_candidate` or `:candidate`; `:term`; `:leader` - the leader's node
      as this member knows it, or `nil`;
    * `:commit_index`, `:last_applied`, `:last_index`, `:snapshot_index` - positions in the log;
    * `:members` - the current configuration (nodes); `:keys`, `:locks` - counts; `:durable` - whether the
      member persists its log (`--data-dir`).

  With a list of members, the first one that answers.
  """
  @spec status(server, [option]) :: {:ok, map()} | error
  def status(server, opts \\ []) do
    case call(server, :status, opts) do
      %{} = status -> {:ok, status}
      {:error, _} = error -> error
    end
  end

  @doc """
  Adds `node` to the group (`{:add_member, node}`): `:ok` once the new configuration is committed.

  The node must run cnode with `--raft-group` of this group (a node not in that option's list waits to be added,
  then catches up from the leader). Errors: `:already_member`, `:change_in_progress` (one change at a time),
  `:badarg`, and those of every function.
  """
  @spec add_member(server, node(), [option]) :: :ok | {:error, term()}
  def add_member(server, node, opts \\ []) when is_atom(node),
    do: call(server, {:add_member, node}, opts)

  @doc """
  Removes `node` from the group (`{:remove_member, node}`): `:ok` once committed; a leader that removes itself hands
  over first. Errors: `:not_member`, `:change_in_progress`, `:last_member`, and those of every function.
  """
  @spec remove_member(server, node(), [option]) :: :ok | {:error, term()}
  def remove_member(server, node, opts \\ []) when is_atom(node),
    do: call(server, {:remove_member, node}, opts)

  @doc """
  Makes `node` the leader (`{:transfer_leadership, node}`): `:ok` once it leads (at once when it already does).
  Errors: `:not_member`, `:unavailable` (it could not take over, or another member did), `:timeout` (not within
  the request timeout), and those of every function.
  """
  @spec transfer_leadership(server, node(), [option]) :: :ok | {:error, term()}
  def transfer_leadership(server, node, opts \\ []) when is_atom(node),
    do: call(server, {:transfer_leadership, node}, opts)

  ## Calls

  defp call({group, node}, request, opts) when is_atom(group) and is_atom(node),
    do: call({group, [node]}, request, opts)

  defp call({group, [_ | _] = nodes}, request, opts) when is_atom(group) do
    try_members(group, nodes, request, Keyword.get(opts, :timeout, @timeout), nil)
  end

  defp try_members(_group, [], _request, _timeout, last_error), do: last_error

  defp try_members(group, [node | rest], request, timeout, _last_error) do
    case call_member(group, node, request, timeout) do
      {:not_delivered, error} -> try_members(group, rest, request, timeout, error)
      reply -> reply
    end
  end

  # {:not_delivered, error} when the request cannot have reached the member (so another may take it).
  defp call_member(group, node, request, timeout) do
    if connected?(node),
      do: GenServer.call({group, node}, request, timeout),
      else: {:not_delivered, {:error, {:nodedown, node}}}
  catch
    :exit, {:noproc, _} -> {:not_delivered, {:error, :noproc}}
    :exit, {{:nodedown, down}, _} -> {:error, {:nodedown, down}}
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, {reason, {GenServer, :call, _}} -> {:error, {:exit, reason}}
  end

  defp connected?(node) do
    node == node() or node in Node.list([:visible, :hidden]) or Node.connect(node) == true
  end

  defp now, do: System.monotonic_time(:millisecond)
end
