defmodule CNode.Probe do
  @moduledoc """
  cnode's probe: a C++ process on the cnode that Elixir drives to exercise links, monitors, calls, `:pg` and
  `:global` from the C++ side.

      {:ok, probe} = CNode.Probe.spawn(cnode)          # owned by self()
      :ok = CNode.Probe.link(probe, some_pid)
      ref = CNode.Probe.monitor(probe, other_pid)
      assert_receive {:probe, ^probe, {:DOWN, ^ref, :process, ^other_pid, :gone}}

  The probe forwards every message and every signal it gets to its owner as `{:probe, probe, message}`: plain
  messages, `{:EXIT, from, reason}` when it traps exits, `{:DOWN, ref, :process, object, reason}` of its
  monitors, `:pg` monitor events `{ref, :join | :leave, group, pids}`, replies sent to its alias. Each function
  below is one `GenServer.call/3` to the probe and returns the probe's reply as is; like `GenServer.call/3`, it
  exits when the probe is not alive (`:noproc`) or does not answer in time.

  `spawn/2` is the only function with an `{:ok, _} | {:error, _}` result, since it goes through erpc.
  """

  @typedoc "A probe process on a cnode."
  @type t :: pid()

  @typedoc "What `send/3`, `call/4` and `cast/3` can address."
  @type dest ::
          pid()
          | atom()
          | {atom(), node()}
          | reference()
          | {:global, term()}
          | {:via, :global, term()}

  import Kernel, except: [spawn: 1]

  # Time allowed for the probe's own answer on top of any time the request itself takes.
  @margin 10_000

  @doc """
  Starts a probe on `node` owned by `owner` (default: the caller): `:erpc.call(node, :cnode, :spawn_probe,
  [owner])`.

  Returns `{:ok, probe}`, or `{:error, reason}` with erpc's error (for example `{:erpc, :noconnection}`).
  """
  @spec spawn(node(), pid()) :: {:ok, t} | {:error, term()}
  def spawn(node, owner \\ self()) when is_atom(node) and is_pid(owner) do
    case :erpc.call(node, :cnode, :spawn_probe, [owner], 15_000) do
      pid when is_pid(pid) -> {:ok, pid}
      other -> {:error, {:unexpected_reply, other}}
    end
  catch
    :error, {:erpc, _} = reason -> {:error, reason}
    class, reason -> {:error, {class, reason}}
  end

  @doc "As `spawn/2`, but returns the probe and raises on failure."
  @spec spawn!(node(), pid()) :: t
  def spawn!(node, owner \\ self()) do
    case __MODULE__.spawn(node, owner) do
      {:ok, probe} -> probe
      {:error, reason} -> raise "cnode: cannot spawn a probe on #{node}: #{inspect(reason)}"
    end
  end

  @doc "Links the probe to `pid` (`{:link, pid}`); `:ok`."
  @spec link(t, pid()) :: :ok
  def link(probe, pid), do: req(probe, {:link, pid})

  @doc "Removes the probe's link to `pid` (`{:unlink, pid}`, the UNLINK_ID protocol); `:ok`."
  @spec unlink(t, pid()) :: :ok
  def unlink(probe, pid), do: req(probe, {:unlink, pid})

  @doc """
  The probe monitors `target`: a pid, a registered name, or `{name, node}` (`{:monitor, target}`).

  Returns the monitor reference; the owner later gets `{:probe, probe, {:DOWN, ref, :process, object, reason}}`.
  """
  @spec monitor(t, pid() | atom() | {atom(), node()}) :: reference()
  def monitor(probe, target), do: req(probe, {:monitor, target})

  @doc "Removes the probe's monitor `ref` (`{:demonitor, ref}`); `:ok`."
  @spec demonitor(t, reference()) :: :ok
  def demonitor(probe, ref), do: req(probe, {:demonitor, ref})

  @doc """
  Sets the probe's `trap_exit` flag (`{:trap_exit, flag}`); returns the old value.

  While trapping, exit signals reach the owner as `{:probe, probe, {:EXIT, from, reason}}`.
  """
  @spec trap_exit(t, boolean()) :: boolean()
  def trap_exit(probe, flag) when is_boolean(flag), do: req(probe, {:trap_exit, flag})

  @doc "The probe replies `:ok`, then exits with `reason` (`{:exit, reason}`)."
  @spec exit(t, term()) :: :ok
  def exit(probe, reason), do: req(probe, {:exit, reason})

  @doc "The probe calls `exit(pid, reason)`, sending an exit signal (`{:exit, pid, reason}`); `:ok`."
  @spec exit(t, pid(), term()) :: :ok
  def exit(probe, pid, reason), do: req(probe, {:exit, pid, reason})

  @doc """
  The probe sends `msg` to `dest`: a pid, a name, `{name, node}` or an alias (`{:send, dest, msg}`); `:ok`.
  """
  @spec send(t, dest, term()) :: :ok
  def send(probe, dest, msg), do: req(probe, {:send, dest, msg})

  @doc """
  `GenServer.cast/2` from C++ (`{:cast, dest, request}`): any `dest` that `call/4` takes; a global name that is
  not registered is a no-op. `:ok`.
  """
  @spec cast(t, dest, term()) :: :ok
  def cast(probe, dest, request), do: req(probe, {:cast, dest, request})

  @doc """
  `GenServer.call/3` from C++ (`{:call, dest, request, timeout}`).

  Returns `{:ok, reply}`, or `{:error, reason}` where `reason` is what `GenServer.call/3` would exit with:
  `:noproc`, `:timeout`, `{:nodedown, node}`, or the server's exit reason. `dest` may also be `{:global, name}`
  or `{:via, :global, name}`.
  """
  @spec call(t, dest, term(), timeout()) :: {:ok, term()} | {:error, term()}
  def call(probe, dest, request, timeout \\ 5_000) do
    req(probe, {:call, dest, request, timeout}, add_margin(timeout))
  end

  @doc "Registers the probe locally on its cnode as `name` (`{:register, name}`): `:ok`, or `:badarg` if taken."
  @spec register(t, atom()) :: :ok | :badarg
  def register(probe, name) when is_atom(name), do: req(probe, {:register, name})

  @doc "A new alias of the probe (`:alias`): messages sent to it reach the probe (and so its owner)."
  @spec alias(t) :: reference()
  def alias(probe), do: req(probe, :alias)

  @doc "The probe replies `:ok` after `ms` milliseconds (`{:sleep, ms}`): a slow server for callers' timeouts."
  @spec sleep(t, non_neg_integer()) :: :ok
  def sleep(probe, ms), do: req(probe, {:sleep, ms}, add_margin(ms))

  @doc """
  The probe exits with `reason` without replying (`{:crash, reason}`): a server dying mid-call.

  This function returns `{:error, reason}` with the reason `GenServer.call/3` exits with (normally `reason`
  itself) instead of exiting.
  """
  @spec crash(t, term()) :: {:error, term()}
  def crash(probe, reason) do
    {:error, {:unexpected_reply, GenServer.call(probe, {:crash, reason}, @margin)}}
  catch
    :exit, {why, {GenServer, :call, _}} -> {:error, why}
  end

  @doc "The probe replies `:ok`, then exits normally (`:stop`)."
  @spec stop(t) :: :ok
  def stop(probe), do: req(probe, :stop)

  ## :pg

  @doc """
  `:pg.join(scope, group, probe)` on the cnode (`{:pg_join, scope, group}`): `:ok`, or `{:error, :noproc}` when
  cnode does not run `scope` (start it with `args: ["--pg-scope", "scope"]`; `:pg` always runs).
  """
  @spec pg_join(t, atom(), term()) :: :ok | {:error, :noproc}
  def pg_join(probe, scope, group), do: req(probe, {:pg_join, scope, group})

  @doc """
  `:pg.leave(scope, group, probe)` on the cnode (`{:pg_leave, scope, group}`): `:ok`, `:not_joined`, or
  `{:error, :noproc}`.
  """
  @spec pg_leave(t, atom(), term()) :: :ok | :not_joined | {:error, :noproc}
  def pg_leave(probe, scope, group), do: req(probe, {:pg_leave, scope, group})

  @doc """
  `:pg.monitor_scope(scope)` for the probe (`{:pg_monitor_scope, scope}`): `{ref, %{group => pids}}`.

  Then the owner gets `{:probe, probe, {ref, :join | :leave, group, pids}}` for every change in the scope.
  """
  @spec pg_monitor_scope(t, atom()) :: {reference(), %{term() => [pid()]}}
  def pg_monitor_scope(probe, scope), do: req(probe, {:pg_monitor_scope, scope})

  @doc """
  `:pg.monitor(scope, group)` for the probe (`{:pg_monitor, scope, group}`): `{ref, pids}`.

  Then the owner gets `{:probe, probe, {ref, :join | :leave, group, pids}}` for every change in the group.
  """
  @spec pg_monitor(t, atom(), term()) :: {reference(), [pid()]}
  def pg_monitor(probe, scope, group), do: req(probe, {:pg_monitor, scope, group})

  @doc """
  Removes the probe's `:pg` monitor `ref` (`{:pg_demonitor, scope, ref}`): `true` when it existed, else `false`
  (cnode's reply; `:pg.demonitor/2` itself returns `:ok | false`). No event of `ref` reaches the owner after it.
  """
  @spec pg_demonitor(t, atom(), reference()) :: boolean()
  def pg_demonitor(probe, scope, ref), do: req(probe, {:pg_demonitor, scope, ref})

  ## :global

  @doc """
  `:global.register_name(name, probe)` from the cnode (`{:global_register, name}`): `:yes` or `:no`.
  """
  @spec global_register(t, term()) :: :yes | :no
  def global_register(probe, name), do: req(probe, {:global_register, name}, 60_000)

  @doc """
  `:global.register_name(name, probe, method)` from the cnode (`{:global_register, name, method}`): `:yes` or
  `:no`. `method` is the resolve fun used on a name clash after a netsplit, such as `&:global.notify_all_name/3`.
  """
  @spec global_register(t, term(), (term(), pid(), pid() -> pid() | :none)) :: :yes | :no
  def global_register(probe, name, method),
    do: req(probe, {:global_register, name, method}, 60_000)

  @doc "`:global.unregister_name(name)` from the cnode (`{:global_unregister, name}`): `:ok`."
  @spec global_unregister(t, term()) :: :ok
  def global_unregister(probe, name), do: req(probe, {:global_unregister, name}, 60_000)

  @doc """
  `:global.set_lock({id, probe}, [node() | nodes()], 1)` on the cnode (`{:global_set_lock, id}`): `true` or
  `false`.
  """
  @spec global_set_lock(t, term()) :: boolean()
  def global_set_lock(probe, id), do: req(probe, {:global_set_lock, id}, 60_000)

  @doc "`:global.del_lock({id, probe})` on the cnode (`{:global_del_lock, id}`): `:ok`."
  @spec global_del_lock(t, term()) :: :ok
  def global_del_lock(probe, id), do: req(probe, {:global_del_lock, id}, 60_000)

  @doc """
  `:global.trans({id, probe}, fun, nodes, 1)` on the cnode holding the lock for `ms` milliseconds
  (`{:global_trans, id, ms}`): `:ok`, or `:aborted` when the lock was not got.
  """
  @spec global_trans(t, term(), non_neg_integer()) :: :ok | :aborted
  def global_trans(probe, id, ms),
    do: req(probe, {:global_trans, id, ms}, add_margin(ms) + 50_000)

  ## Helpers

  @doc """
  Any other request, for probe calls this module does not know yet: `GenServer.call(probe, request, timeout)`.
  """
  @spec request(t, term(), timeout()) :: term()
  def request(probe, request, timeout \\ @margin), do: req(probe, request, timeout)

  defp req(probe, request, timeout \\ @margin), do: GenServer.call(probe, request, timeout)

  defp add_margin(:infinity), do: :infinity
  defp add_margin(ms), do: ms + @margin
end
