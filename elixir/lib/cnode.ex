defmodule CNode do
  @moduledoc """
  Starts the `cnode` executable (a C++ node that joins Erlang/Elixir clusters as a peer) from Elixir, typically
  from ExUnit, and stops it again.

  Each `CNode` is a GenServer that owns one cnode OS process under a Port:

      {:ok, pid} = CNode.start_link(sname: "peer", connect: true)
      node = CNode.node_name(pid)              # :"peer@myhost"
      GenServer.call({:echo, node}, :hello)    # :hello
      CNode.stop(pid)

  or under a supervisor, `{CNode, opts}` (see `child_spec/1`). In tests, `CNode.Case` does this for you and
  `CNode.Probe` drives cnode's probe processes.

  `start_link/1` returns once cnode has logged `ready NODE`. The OS process stops when the GenServer stops (SIGTERM,
  SIGKILL after 5 s), and also when the VM dies without stopping it, even on `kill -9`: cnode runs behind a small
  `sh` watcher that kills it when its stdin, the Port, closes. So a crashed test run leaves no cnode behind.

  cnode's log lines go to `Logger` with metadata `cnode: node`: `info` and `debug` lines at `:info` and `:debug`,
  `warning` and `error` lines at their level. The recent lines are also kept: `output/1`, `await_output/3`.

  ## Which executable

  The `:bin` option, else the `:bin` key of the `:cnode` application environment, else `$CNODE_BIN`, else
  `build/bin/cnode` of the repository this package sits in (#{inspect(Path.expand("../../build/bin/cnode", __DIR__))}).
  """
  use GenServer
  require Logger

  @default_bin Path.expand("../../build/bin/cnode", __DIR__)
  @kept_lines 1_000

  @typedoc "A running `CNode` (its GenServer)."
  @type server :: GenServer.server()

  @typedoc "Options of `start_link/1`."
  @type option ::
          {:bin, Path.t()}
          | {:sname, String.t() | atom()}
          | {:name, String.t() | atom()}
          | {:cookie, String.t() | atom()}
          | {:epmd_port, :inet.port_number() | :private}
          | {:embedded_epmd, boolean()}
          | {:hidden, boolean()}
          | {:log_level, :error | :warning | :info | :debug}
          | {:log, boolean()}
          | {:args, [String.t()]}
          | {:env, [{String.t(), String.t() | nil}]}
          | {:connect, boolean()}
          | {:ready_timeout, timeout()}
          | {:server_name, GenServer.name()}
          | {:id, term()}
          | {:restart, :temporary | :transient | :permanent}

  @doc """
  A child spec for `{CNode, opts}`; `opts` as for `start_link/1`, plus `:id` (default `CNode`) and `:restart`.

  The default restart is `:temporary`: a cnode that dies is reported (`{:cnode_exited, status}`), not silently
  replaced by a new one under the same name. The shutdown time leaves room for cnode's own shutdown.
  """
  @spec child_spec([option]) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :id, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      restart: Keyword.get(opts, :restart, :temporary),
      shutdown: 10_000,
      type: :worker
    }
  end

  @doc """
  Starts a cnode and returns `{:ok, pid}` once it is ready (it has logged `ready NODE`).

  Options:

    * `:sname` / `:name` - the node's short or long name; without `@HOST`, the host of this VM's node name (or of
      this machine when the VM is not distributed) is added. Default: a short name `cnode_<random>`, or a long one
      when this VM uses long names.
    * `:cookie` - default: this VM's cookie when it is distributed, else a random one.
    * `:epmd_port` - the EPMD port cnode registers with and looks peers up in. Default: this VM's
      (`CNode.Distribution.epmd_port/0`). `:private` picks a free port and implies `embedded_epmd: true`.
    * `:embedded_epmd` - `--embedded-epmd`: cnode starts its own EPMD on that port when none answers (`false`).
    * `:hidden` - `--hidden` (`false`).
    * `:log_level` - cnode's `--log-level` (cnode's default, `info`).
    * `:log` - send cnode's lines to `Logger` (`true`).
    * `:args` - more command-line arguments, e.g. `["--pg-scope", "my_scope", "--threads", "1"]`.
    * `:env` - extra environment variables for the OS process (`{"NAME", nil}` unsets one).
    * `:connect` - `Node.connect/1` to it once ready, failing the start when that fails (`false`).
    * `:ready_timeout` - how long to wait for `ready` (20 000 ms).
    * `:bin` - the executable (see the module doc).
    * `:server_name` - a name to register the GenServer under.

  Errors: `{:error, {:no_executable, path}}`, `{:error, {:cnode_exited, status, output}}` (cnode exited before
  being ready, `output` being its lines, e.g. a usage error or the name being taken),
  `{:error, {:ready_timeout, output}}`, `{:error, {:connect_failed, node}}`. As with any `GenServer.start_link/3`,
  a failed start also sends the linked caller an exit signal; `start/1` (or a supervisor) avoids that.
  """
  @spec start_link([option]) :: GenServer.on_start()
  def start_link(opts \\ []) do
    gen_opts = if name = opts[:server_name], do: [name: name], else: []
    GenServer.start_link(__MODULE__, opts, gen_opts)
  end

  @doc "As `start_link/1`, without a link to the caller."
  @spec start([option]) :: GenServer.on_start()
  def start(opts \\ []) do
    gen_opts = if name = opts[:server_name], do: [name: name], else: []
    GenServer.start(__MODULE__, opts, gen_opts)
  end

  @doc "The cnode's node name, e.g. `:\"cnode_1a2b3c@myhost\"`."
  @spec node_name(server) :: node()
  def node_name(server), do: GenServer.call(server, :node_name)

  @doc "The OS pid of the cnode process."
  @spec os_pid(server) :: non_neg_integer()
  def os_pid(server), do: GenServer.call(server, :os_pid)

  @doc "The cookie cnode was started with."
  @spec cookie(server) :: atom()
  def cookie(server), do: GenServer.call(server, :cookie)

  @doc "The EPMD port cnode was started with."
  @spec epmd_port(server) :: :inet.port_number()
  def epmd_port(server), do: GenServer.call(server, :epmd_port)

  @doc "The lines cnode has printed (the last #{@kept_lines}), oldest first."
  @spec output(server) :: [String.t()]
  def output(server), do: GenServer.call(server, :output)

  @doc """
  Waits until a line cnode has printed (since it started, among the last #{@kept_lines}) contains `substring`.

  Returns `{:ok, line}`, or `{:error, :timeout}` after `timeout` ms. Handy to wait for `"up NODE"` or
  `"down NODE"`.
  """
  @spec await_output(server, String.t(), timeout()) :: {:ok, String.t()} | {:error, :timeout}
  def await_output(server, substring, timeout \\ 10_000) do
    GenServer.call(server, {:await_output, substring, timeout}, call_timeout(timeout))
  end

  @doc """
  `Node.connect/1` from this VM to the cnode, then waits until the cnode is in `Node.list/1`.
  Returns `:ok` or `{:error, :not_connected}`.
  """
  @spec connect(server | node()) :: :ok | {:error, :not_connected}
  def connect(node) when is_atom(node) and node not in [nil, true, false] do
    if Node.connect(node) == true, do: :ok, else: {:error, :not_connected}
  end

  def connect(server), do: connect(node_name(server))

  @doc """
  Waits until `:global` on this VM and on the cnode are in sync with each other (`:global.sync/1` on both sides),
  so that names registered on either side before are known on both. Returns `:ok` or `{:error, reason}`.

  A newly connected node exchanges `:global` names asynchronously after the connection is up; `CNode.Case`
  calls this after connecting a visible cnode.
  """
  @spec sync_global(server | node()) :: :ok | {:error, term()}
  def sync_global(node) when is_atom(node) and node not in [nil, true, false] do
    with :ok <- :global.sync([node]),
         :ok <- :erpc.call(node, :global, :sync, [[node()]], 60_000) do
      :ok
    end
  catch
    kind, reason -> {:error, {kind, reason}}
  end

  def sync_global(server), do: sync_global(node_name(server))

  @doc """
  Stops the cnode OS process (SIGTERM, SIGKILL after 5 s) and the GenServer. Returns `:ok`.
  """
  @spec stop(server, timeout()) :: :ok
  def stop(server, timeout \\ 15_000), do: GenServer.stop(server, :normal, timeout)

  @doc """
  The executable `start_link/1` runs when given no `:bin`: the `:bin` key of the `:cnode` application
  environment, `$CNODE_BIN`, else the repository's `build/bin/cnode`.
  """
  @spec default_bin() :: Path.t()
  def default_bin do
    Application.get_env(:cnode, :bin) || non_empty(System.get_env("CNODE_BIN")) || @default_bin
  end

  defp non_empty(""), do: nil
  defp non_empty(s), do: s

  defp call_timeout(:infinity), do: :infinity
  defp call_timeout(ms), do: ms + 5_000

  ## GenServer

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    bin = Path.expand(opts[:bin] || default_bin())

    if File.regular?(bin) do
      start_os_process(bin, opts)
    else
      {:stop, {:no_executable, bin}}
    end
  end

  defp start_os_process(bin, opts) do
    {flag, node} = node_name_from(opts)
    cookie = to_string(opts[:cookie] || default_cookie())
    {epmd_port, embedded?} = epmd_from(opts)

    args =
      [
        flag,
        Atom.to_string(node),
        "--cookie",
        cookie,
        "--epmd-port",
        Integer.to_string(epmd_port)
      ] ++
        if(embedded?, do: ["--embedded-epmd"], else: []) ++
        if(opts[:hidden], do: ["--hidden"], else: []) ++
        if(level = opts[:log_level], do: ["--log-level", to_string(level)], else: []) ++
        Enum.map(Keyword.get(opts, :args, []), &to_string/1)

    {port, os_pid} = CNode.OSProcess.open(bin, args, env: Keyword.get(opts, :env, []))

    state = %{
      port: port,
      os_pid: os_pid,
      node: node,
      cookie: String.to_atom(cookie),
      epmd_port: epmd_port,
      log?: Keyword.get(opts, :log, true),
      lines: :queue.new(),
      nlines: 0,
      partial: "",
      waiters: []
    }

    deadline =
      case Keyword.get(opts, :ready_timeout, 20_000) do
        :infinity -> :infinity
        ms -> System.monotonic_time(:millisecond) + ms
      end

    with {:ok, state} <- await_ready(state, "ready #{node}", deadline),
         :ok <- maybe_connect(state, opts[:connect]) do
      {:ok, state}
    else
      {:error, reason, state} ->
        if state.port, do: CNode.OSProcess.stop(state.port, state.os_pid)
        {:stop, reason}
    end
  end

  defp maybe_connect(state, true) do
    case connect(state.node) do
      :ok -> :ok
      {:error, _} -> {:error, {:connect_failed, state.node}, state}
    end
  end

  defp maybe_connect(_state, _), do: :ok

  defp await_ready(state, needle, deadline) do
    port = state.port

    timeout =
      if deadline == :infinity,
        do: :infinity,
        else: max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, data}} ->
        {state, lines} = take_lines(state, data)

        if Enum.any?(lines, &ready_line?(&1, needle)),
          do: {:ok, state},
          else: await_ready(state, needle, deadline)

      {^port, {:exit_status, status}} ->
        {:error, {:cnode_exited, status, all_lines(state)}, %{state | port: nil}}
    after
      timeout -> {:error, {:ready_timeout, all_lines(state)}, state}
    end
  end

  # "ready NODE" followed by the end of the line or a non-name character (so that a@h does not match a@host).
  defp ready_line?(line, needle) do
    case :binary.match(line, needle) do
      {pos, len} ->
        case binary_part(line, pos + len, byte_size(line) - pos - len) do
          "" ->
            true

          <<c, _::binary>> ->
            not (c in ?a..?z or c in ?A..?Z or c in ?0..?9 or c in [?_, ?-, ?., ?@])
        end

      :nomatch ->
        false
    end
  end

  defp node_name_from(opts) do
    cond do
      name = opts[:name] -> {"--name", full_name(name, true)}
      sname = opts[:sname] -> {"--sname", full_name(sname, false)}
      longnames?() -> {"--name", full_name("cnode_" <> CNode.Distribution.random_hex(3), true)}
      true -> {"--sname", full_name("cnode_" <> CNode.Distribution.random_hex(3), false)}
    end
  end

  defp full_name(name, long?) do
    name = to_string(name)

    if String.contains?(name, "@") do
      String.to_atom(name)
    else
      String.to_atom(name <> "@" <> host(long?))
    end
  end

  defp host(long?) do
    if Node.alive?() do
      node() |> Atom.to_string() |> String.split("@") |> List.last()
    else
      {:ok, h} = :inet.gethostname()
      h = List.to_string(h)
      if long?, do: h, else: h |> String.split(".") |> hd()
    end
  end

  defp longnames? do
    Node.alive?() and :net_kernel.longnames() == true
  end

  defp default_cookie do
    case Node.alive?() && Node.get_cookie() do
      cookie when is_atom(cookie) and cookie not in [nil, false, :nocookie] -> cookie
      _ -> "c" <> CNode.Distribution.random_hex(12)
    end
  end

  defp epmd_from(opts) do
    case Keyword.get(opts, :epmd_port) do
      :private -> {CNode.OSProcess.free_port(), true}
      nil -> {CNode.Distribution.epmd_port(), Keyword.get(opts, :embedded_epmd, false)}
      p when is_integer(p) -> {p, Keyword.get(opts, :embedded_epmd, false)}
    end
  end

  @impl true
  def handle_call(:node_name, _from, state), do: {:reply, state.node, state}
  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}
  def handle_call(:cookie, _from, state), do: {:reply, state.cookie, state}
  def handle_call(:epmd_port, _from, state), do: {:reply, state.epmd_port, state}
  def handle_call(:output, _from, state), do: {:reply, all_lines(state), state}

  def handle_call({:await_output, substring, timeout}, from, state) do
    case Enum.find(all_lines(state), &String.contains?(&1, substring)) do
      nil ->
        ref = make_ref()

        timer =
          if timeout != :infinity, do: Process.send_after(self(), {:await_timeout, ref}, timeout)

        {:noreply, %{state | waiters: [{ref, from, substring, timer} | state.waiters]}}

      line ->
        {:reply, {:ok, line}, state}
    end
  end

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = state) do
    {state, _lines} = take_lines(state, data)
    {:noreply, state}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    Logger.error("cnode #{state.node} exited with status #{status}", cnode: state.node)
    {:stop, {:cnode_exited, status}, %{state | port: nil}}
  end

  def handle_info({:await_timeout, ref}, state) do
    case List.keytake(state.waiters, ref, 0) do
      {{^ref, from, _, _}, rest} ->
        GenServer.reply(from, {:error, :timeout})
        {:noreply, %{state | waiters: rest}}

      nil ->
        {:noreply, state}
    end
  end

  def handle_info({:EXIT, port, _reason}, %{port: port} = state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}
  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{port: nil}), do: :ok

  def terminate(_reason, state) do
    CNode.OSProcess.stop(state.port, state.os_pid)
    :ok
  end

  ## Lines

  defp take_lines(state, {:noeol, part}), do: {%{state | partial: state.partial <> part}, []}

  defp take_lines(state, {:eol, part}) do
    line = state.partial <> part
    state = %{state | partial: ""}
    log(state, line)
    {lines, n} = {:queue.in(line, state.lines), state.nlines + 1}
    {lines, n} = if n > @kept_lines, do: {:queue.drop(lines), n - 1}, else: {lines, n}
    state = %{state | lines: lines, nlines: n} |> wake_waiters(line)
    {state, [line]}
  end

  defp wake_waiters(state, line) do
    {matched, rest} =
      Enum.split_with(state.waiters, fn {_, _, sub, _} -> String.contains?(line, sub) end)

    for {_ref, from, _, timer} <- matched do
      if timer, do: Process.cancel_timer(timer)
      GenServer.reply(from, {:ok, line})
    end

    %{state | waiters: rest}
  end

  defp all_lines(state), do: :queue.to_list(state.lines)

  defp log(%{log?: false}, _line), do: :ok

  defp log(state, line) do
    meta = [cnode: state.node]

    case level(line) do
      :error -> Logger.error(line, meta)
      :warning -> Logger.warning(line, meta)
      :debug -> Logger.debug(line, meta)
      :info -> Logger.info(line, meta)
    end
  end

  # "cnode warning: ..." today; a JSON line's "level" field if the format changes.
  @doc false
  def level(line) do
    cond do
      line =~ ~r/^\S*\s*(error|err|critical|fatal)\b:?/i -> :error
      line =~ ~r/^\S*\s*(warning|warn)\b:?/i -> :warning
      line =~ ~r/^\S*\s*debug\b:?/i -> :debug
      line =~ ~r/"level"\s*:\s*"(error|err|critical|fatal)"/i -> :error
      line =~ ~r/"level"\s*:\s*"(warning|warn)"/i -> :warning
      line =~ ~r/"level"\s*:\s*"debug"/i -> :debug
      true -> :info
    end
  end
end
