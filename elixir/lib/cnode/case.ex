defmodule CNode.Case do
  @moduledoc """
  An ExUnit case template that gives each test module (or each test) a fresh, connected cnode.

      defmodule MyTest do
        use CNode.Case, async: true

        test "echo", %{cnode: cnode} do
          assert GenServer.call({:echo, cnode}, {:hi, [1, 2.5]}) == {:hi, [1, 2.5]}
        end
      end

  Options (besides `ExUnit.Case`'s own, such as `:async`):

    * `per: :module` (default) starts one cnode in `setup_all` for all tests of the module; `per: :test` starts
      one per test in `setup`.
    * `cnode: opts` - options for `CNode.start_link/1` (for example `args: ["--pg-scope", "s"]`,
      `hidden: true`).

  The context gets `:cnode` (the node name) and `:cnode_server` (the `CNode` GenServer, for `CNode.output/1`,
  `CNode.os_pid/1`, ...). The cnode runs under ExUnit's test supervisor, so it stops after the module (or the
  test) whatever the outcome. Before the first test runs, `Node.connect/1` has connected it and, unless it is
  hidden, `CNode.sync_global/1` has made `:global` consistent between it and this VM.

  The test VM must be distributed. This case template calls `CNode.Distribution.ensure_started/1` when it is not
  (which needs an EPMD on the VM's port, see `CNode.Distribution`); or run
  `elixir --sname t --cookie c -S mix test`.

  Imported helpers: `probe/1,2` (a probe on the test's cnode, stopped when the test ends) and `wait_until/2,3`.
  """
  use ExUnit.CaseTemplate

  using opts do
    {per, opts} = Keyword.pop(opts, :per, :module)
    {cnode_opts, _} = Keyword.pop(opts, :cnode, [])

    unless per in [:module, :test] do
      raise ArgumentError, "CNode.Case: :per must be :module or :test, got: #{inspect(per)}"
    end

    setup_kind = if per == :test, do: :setup, else: :setup_all

    quote do
      import CNode.Case, only: [probe: 1, probe: 2, wait_until: 1, wait_until: 2, wait_until: 3]

      unquote(setup_kind)(context) do
        CNode.Case.__start_cnode__(context, unquote(Macro.escape(cnode_opts)))
      end
    end
  end

  @doc false
  def __start_cnode__(_context, cnode_opts) do
    CNode.Distribution.ensure_started!()
    id = {CNode, make_ref()}

    # Not start_supervised!/1: its error would lose cnode's output, which is what tells why it did not start.
    case ExUnit.Callbacks.start_supervised({CNode, [id: id, connect: true] ++ cnode_opts}) do
      {:ok, pid} ->
        node = CNode.node_name(pid)

        unless cnode_opts[:hidden] do
          :ok = CNode.sync_global(node)
        end

        %{cnode: node, cnode_server: pid}

      {:error, {reason, _child}} ->
        raise "cnode did not start: #{inspect(reason, limit: :infinity, printable_limit: :infinity)}"
    end
  end

  @doc """
  Spawns a probe (`CNode.Probe.spawn/2`) on `node` (the `:cnode` of the test context, or a node name), owned by
  `owner` (default: the caller), and stops it when the test ends (if still alive). Returns the probe's pid.

      test "a monitor fires", %{cnode: cnode} = ctx do
        probe = probe(ctx)
        ...
      end
  """
  @spec probe(map() | node(), pid()) :: pid()
  def probe(context_or_node, owner \\ self())

  def probe(%{cnode: node}, owner), do: probe(node, owner)

  def probe(node, owner) when is_atom(node) do
    probe = CNode.Probe.spawn!(node, owner)

    ExUnit.Callbacks.on_exit(fn ->
      # The probe may be gone, or its node: either is fine.
      try do
        CNode.Probe.stop(probe)
      catch
        :exit, _ -> :ok
      end
    end)

    probe
  end

  @doc """
  Polls `fun` until it returns a truthy value, which is returned; flunks after `timeout` ms (default 10 000).

  A fun that raises or exits is "not yet". This is a deadline wait, not a sleep: use it for conditions that
  have no message to wait for, such as `:pg` membership seen from another node.
  """
  @spec wait_until((() -> term()), timeout(), String.t()) :: term()
  def wait_until(fun, timeout \\ 10_000, what \\ "condition") when is_function(fun, 0) do
    deadline = System.monotonic_time(:millisecond) + timeout
    do_wait_until(fun, deadline, timeout, what)
  end

  defp do_wait_until(fun, deadline, timeout, what) do
    result =
      try do
        {:done, fun.()}
      rescue
        e -> {:not_yet, e}
      catch
        kind, reason -> {:not_yet, {kind, reason}}
      end

    case result do
      {:done, value} when value not in [nil, false] ->
        value

      {_, last} ->
        if System.monotonic_time(:millisecond) > deadline do
          ExUnit.Assertions.flunk(
            "timed out after #{timeout} ms waiting for #{what} (last: #{inspect(last)})"
          )
        end

        # The polling interval of a deadline wait.
        receive do
        after
          20 -> do_wait_until(fun, deadline, timeout, what)
        end
    end
  end
end
