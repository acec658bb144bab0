defmodule CNode.Distribution do
  @moduledoc """
  Making the current VM a distributed node, which it must be to talk to a cnode.

  A VM's EPMD port is fixed when it boots: `-epmd_port` on erl's command line, which erl's start script sets from
  `$ERL_EPMD_PORT`, else 4369. So there are three ways to run tests that need distribution:

    * `elixir --sname t --cookie c -S mix test`: the VM is distributed from the start and uses the system's EPMD
      (`erl` starts one with `epmd -daemon` when none runs);
    * `ERL_EPMD_PORT=P mix test`, with `ensure_started/1` in `test_helper.exs`: the VM starts distribution itself and,
      when no EPMD answers on `P`, starts a private `epmd -port P` that it owns (stopped with the VM, even on
      `kill -9`);
    * plain `mix test` in this package: its `test` alias (`mix_test/1`) starts a private EPMD on a free port and
      re-runs `mix test` in a distributed child VM that uses it, relaying the output and the exit status. A project
      of yours can do the same with `aliases: [test: fn args -> Mix.Task.run("compile"); CNode.Distribution.mix_test(args) end]`.
  """
  require Logger

  @typedoc "Options of `ensure_started/1`."
  @type option ::
          {:name, atom() | String.t()}
          | {:cookie, atom() | String.t()}
          | {:longnames, boolean()}
          | {:start_epmd, boolean()}

  @doc """
  The TCP port of the EPMD this VM uses: its `-epmd_port` argument (from `$ERL_EPMD_PORT`), else 4369.
  """
  @spec epmd_port() :: :inet.port_number()
  def epmd_port do
    case :init.get_argument(:epmd_port) do
      {:ok, [[port | _] | _]} -> List.to_integer(port)
      _ -> 4369
    end
  end

  @doc """
  Makes this VM a distributed node unless it is one already; returns `{:ok, node()}`.

  When not alive: makes sure an EPMD answers on `epmd_port/0` (starting `CNode.EPMD` there under this
  application's supervisor when none does and `:start_epmd` is true, the default), then `Node.start/2` with
  `:name` (default `cnode_test_<random>@localhost`, which needs no resolvable host name; short names unless
  `longnames: true`) and sets `:cookie` (default: a random one, so that no cookie file is read or created).
  cnodes that `CNode.start_link/1` starts then get the same host.

  Returns `{:error, reason}` when EPMD cannot be started or `Node.start/2` fails.
  """
  @spec ensure_started([option]) :: {:ok, node()} | {:error, term()}
  def ensure_started(opts \\ []) do
    if Node.alive?() do
      {:ok, node()}
    else
      name =
        opts[:name] ||
          "cnode_test_" <> random_hex(4) <> if(opts[:longnames], do: "", else: "@localhost")

      cookie = opts[:cookie] || "c" <> random_hex(12)
      type = if opts[:longnames], do: :longnames, else: :shortnames

      with :ok <- ensure_epmd(epmd_port(), Keyword.get(opts, :start_epmd, true)),
           {:ok, _} <- Node.start(to_atom(name), type) do
        Node.set_cookie(to_atom(cookie))
        {:ok, node()}
      end
    end
  end

  @doc "As `ensure_started/1`, but returns the node name and raises on failure."
  @spec ensure_started!([option]) :: node()
  def ensure_started!(opts \\ []) do
    case ensure_started(opts) do
      {:ok, node} -> node
      {:error, reason} -> raise "cnode: cannot start distribution: #{inspect(reason)}"
    end
  end

  defp ensure_epmd(port, start?) do
    cond do
      CNode.EPMD.answers?(port) ->
        :ok

      not start? ->
        {:error, {:no_epmd, port}}

      true ->
        {:ok, _} = Application.ensure_all_started(:cnode)

        case Supervisor.start_child(CNode.Supervisor, {CNode.EPMD, port: port}) do
          {:ok, _} -> :ok
          {:error, {:already_started, _}} -> :ok
          {:error, reason} -> {:error, {:epmd, reason}}
        end
    end
  end

  @doc """
  The body of a `mix test` alias that runs the tests in a distributed VM with a private EPMD.

  When this VM is already distributed, or was started with an EPMD port (`$ERL_EPMD_PORT`), or runs as the child
  of this function, it runs `mix test args` here (`test_helper.exs` then calls `ensure_started/1`). Otherwise it
  starts `CNode.EPMD` on a free port and runs `elixir --sname cnode_test_<random>@localhost -S mix test args` with
  `ERL_EPMD_PORT` set to it, relaying the output; a failing child exits this task with its status. The child VM
  stops when this one dies (its stdin closes), and with it every cnode it started.
  """
  @spec mix_test([String.t()]) :: :ok
  def mix_test(args) do
    if Node.alive?() or System.get_env("CNODE_MIX_TEST_CHILD") == "1" or
         match?({:ok, _}, :init.get_argument(:epmd_port)) do
      Mix.Task.run("test", args)
      :ok
    else
      run_child(args)
    end
  end

  defp run_child(args) do
    {:ok, epmd} = CNode.EPMD.start_link(port: CNode.EPMD.free_port(), log: false)
    epmd_port = CNode.EPMD.port(epmd)
    elixir = System.find_executable("elixir") || Mix.raise("cnode: no elixir in PATH")

    color =
      if IO.ANSI.enabled?() and not Enum.any?(args, &(&1 in ["--color", "--no-color"])),
        do: ["--color"],
        else: []

    argv =
      ["--erl", "-start_epmd false", "--sname", "cnode_test_" <> random_hex(4) <> "@localhost"] ++
        ["--cookie", "c" <> random_hex(12), "-S", "mix", "test"] ++ color ++ args

    env = [
      {"ERL_EPMD_PORT", Integer.to_string(epmd_port)},
      {"CNODE_MIX_TEST_CHILD", "1"},
      {"MIX_ENV", Atom.to_string(Mix.env())}
    ]

    {port, _os_pid} = CNode.OSProcess.open(elixir, argv, env: env, line: nil)
    status = relay(port)
    CNode.EPMD.stop(epmd)
    if status != 0, do: exit({:shutdown, status})
    :ok
  end

  defp relay(port) do
    receive do
      {^port, {:data, data}} ->
        IO.binwrite(:stdio, data)
        relay(port)

      {^port, {:exit_status, status}} ->
        status
    end
  end

  defp to_atom(a) when is_atom(a), do: a
  defp to_atom(s) when is_binary(s), do: String.to_atom(s)

  @doc false
  def random_hex(bytes), do: Base.encode16(:crypto.strong_rand_bytes(bytes), case: :lower)
end
