defmodule CNode.EPMD do
  @moduledoc """
  A real `epmd -port PORT` owned by a GenServer, for a private EPMD on a free port.

  The daemon runs under a Port and stops with its owner: in `terminate/2`, and also when the VM dies without
  running it (even on `kill -9`), because the program's stdin closes then and a watcher kills it.

      {:ok, epmd} = CNode.EPMD.start_link(port: CNode.EPMD.free_port())
      CNode.EPMD.port(epmd)

  Most users never start one: `CNode.Distribution.ensure_started/1` does when the VM needs one, and
  `mix test` in this package runs the tests in a VM with its own.
  """
  use GenServer
  require Logger

  @typedoc "Options of `start_link/1`."
  @type option ::
          {:port, :inet.port_number()}
          | {:bin, Path.t()}
          | {:timeout, timeout()}
          | {:log, boolean()}
          | {:name, GenServer.name()}

  @doc "A child spec; `opts` as for `start_link/1`."
  @spec child_spec([option]) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{id: {__MODULE__, opts[:port]}, start: {__MODULE__, :start_link, [opts]}, shutdown: 10_000}
  end

  @doc """
  Starts `epmd -port PORT` and returns once it answers a NAMES request.

  Options: `:port` (default: a free port), `:bin` (default: `epmd` in `PATH`), `:timeout` for the first answer
  (10 000 ms), `:log` (`true`: the daemon's lines go to `Logger` at `:debug`), `:name` to register the GenServer. Returns `{:error, {:epmd_exited, status, output}}` when the
  daemon exits at once (for example the port is taken), `{:error, {:timeout, output}}` when it never answers.
  """
  @spec start_link([option]) :: GenServer.on_start()
  def start_link(opts \\ []) do
    {gen_opts, opts} = Keyword.split(opts, [:name])
    GenServer.start_link(__MODULE__, opts, gen_opts)
  end

  @doc "The TCP port the daemon listens on."
  @spec port(GenServer.server()) :: :inet.port_number()
  def port(server), do: GenServer.call(server, :port)

  @doc "The daemon's OS pid."
  @spec os_pid(GenServer.server()) :: non_neg_integer()
  def os_pid(server), do: GenServer.call(server, :os_pid)

  @doc "Stops the daemon and its owner."
  @spec stop(GenServer.server()) :: :ok
  def stop(server), do: GenServer.stop(server)

  @doc "A TCP port that was free a moment ago (a listen socket on port 0 asks the kernel)."
  @spec free_port() :: :inet.port_number()
  defdelegate free_port(), to: CNode.OSProcess

  @doc """
  Whether an EPMD answers on `port` of 127.0.0.1: it must reply to a NAMES request with its own port number.
  """
  @spec answers?(:inet.port_number(), timeout()) :: boolean()
  def answers?(port, timeout \\ 1_000) do
    case :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, packet: :raw], timeout) do
      {:ok, sock} ->
        try do
          # NAMES_REQ: 2-byte length, then 110; the reply starts with EPMD's port as 4 bytes.
          :ok = :gen_tcp.send(sock, <<1::16, 110>>)
          match?({:ok, <<^port::32>>}, :gen_tcp.recv(sock, 4, timeout))
        after
          :gen_tcp.close(sock)
        end

      {:error, _} ->
        false
    end
  end

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    tcp_port = opts[:port] || free_port()
    bin = opts[:bin] || System.find_executable("epmd") || raise "cnode: no epmd in PATH"
    {port, os_pid} = CNode.OSProcess.open(bin, ["-port", Integer.to_string(tcp_port)])
    deadline = System.monotonic_time(:millisecond) + Keyword.get(opts, :timeout, 10_000)

    state = %{
      port: port,
      os_pid: os_pid,
      tcp_port: tcp_port,
      output: [],
      log?: Keyword.get(opts, :log, true)
    }

    case await_answer(state, deadline) do
      {:ok, state} ->
        {:ok, state}

      {:error, reason, state} ->
        CNode.OSProcess.stop(state.port, state.os_pid)
        {:stop, reason}
    end
  end

  defp await_answer(state, deadline) do
    cond do
      answers?(state.tcp_port, 200) ->
        {:ok, state}

      System.monotonic_time(:millisecond) > deadline ->
        {:error, {:timeout, Enum.reverse(state.output)}, state}

      true ->
        port = state.port

        # Drain what the daemon printed and notice an early exit; the wait is the deadline loop's interval.
        receive do
          {^port, {:exit_status, status}} ->
            {:error, {:epmd_exited, status, Enum.reverse(state.output)}, state}

          {^port, {:data, {_, line}}} ->
            await_answer(%{state | output: [line | state.output]}, deadline)
        after
          50 -> await_answer(state, deadline)
        end
    end
  end

  @impl true
  def handle_call(:port, _from, state), do: {:reply, state.tcp_port, state}
  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}

  @impl true
  def handle_info({port, {:data, {_, line}}}, %{port: port} = state) do
    if state.log?, do: Logger.debug("epmd: " <> line)
    {:noreply, state}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    Logger.error("epmd on port #{state.tcp_port} exited with status #{status}")
    {:stop, {:epmd_exited, status}, %{state | port: nil}}
  end

  def handle_info({:EXIT, port, _}, %{port: port} = state), do: {:noreply, state}
  def handle_info({:EXIT, _, reason}, state), do: {:stop, reason, state}
  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{port: nil}), do: :ok
  def terminate(_reason, state), do: CNode.OSProcess.stop(state.port, state.os_pid)
end
