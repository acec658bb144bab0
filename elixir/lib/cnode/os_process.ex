defmodule CNode.OSProcess do
  @moduledoc false
  # Programs started under a Port that die with their owner.
  #
  # A Port closes the program's stdin when the port closes or the VM dies (even on SIGKILL), but cnode and epmd do
  # not read stdin. So the program is started through `sh`: the shell forks a watcher that reads stdin until EOF and
  # then sends SIGTERM (SIGKILL after 5 s) to the program, then the shell `exec`s the program. The program so keeps
  # the shell's pid, which is the port's :os_pid, and its stdout/stderr are the port's; the watcher's are /dev/null,
  # so the port sees EOF, and reports the exit status, as soon as the program exits.

  @watch_and_exec """
  exec 3<&0
  ( while read -r _line; do :; done
    kill -TERM $$ 2>/dev/null || exit 0
    i=0
    while kill -0 $$ 2>/dev/null; do
      i=$((i + 1))
      if [ "$i" -gt 50 ]; then kill -KILL $$ 2>/dev/null; exit 0; fi
      sleep 0.1
    done ) <&3 >/dev/null 2>&1 &
  exec "$@" 3<&-
  """

  @doc false
  # Opens a port running `exe args` under the watcher. Returns {port, os_pid}.
  @spec open(Path.t(), [String.t()], keyword()) :: {port(), non_neg_integer()}
  def open(exe, args, opts \\ []) do
    sh = System.find_executable("sh") || raise "cnode: no sh in PATH"
    # A nil value unsets the variable (a Port's false).
    env =
      for {k, v} <- Keyword.get(opts, :env, []),
          do: {to_charlist(k), if(v, do: to_charlist(v), else: false)}

    port_opts =
      [
        :binary,
        :exit_status,
        :use_stdio,
        :stderr_to_stdout,
        :hide,
        if(line = Keyword.get(opts, :line, 16_384), do: {:line, line}, else: :stream),
        {:args, ["-c", @watch_and_exec, "cnode-watch", exe | args]},
        {:env, env}
      ] ++ if(cd = opts[:cd], do: [{:cd, to_charlist(cd)}], else: [])

    port = Port.open({:spawn_executable, sh}, port_opts)
    {:os_pid, os_pid} = Port.info(port, :os_pid)
    {port, os_pid}
  end

  @doc false
  # Stops the program: SIGTERM, then SIGKILL after `grace` ms, waiting for the port's exit status (which the caller,
  # the port's owner, would otherwise receive). Returns the exit status, or :unknown.
  @spec stop(port(), non_neg_integer(), non_neg_integer()) :: non_neg_integer() | :unknown
  def stop(port, os_pid, grace \\ 5_000) do
    status =
      with :timeout <- await_exit(port, 0),
           _ <- signal(os_pid, "TERM"),
           :timeout <- await_exit(port, grace),
           _ <- signal(os_pid, "KILL"),
           :timeout <- await_exit(port, 2_000) do
        :unknown
      end

    try do
      Port.close(port)
    rescue
      ArgumentError -> :ok
    end

    status
  end

  defp await_exit(port, timeout) do
    receive do
      {^port, {:exit_status, status}} -> status
    after
      timeout -> :timeout
    end
  end

  @doc false
  @spec signal(non_neg_integer(), String.t()) :: :ok | :error
  def signal(os_pid, sig) do
    case System.cmd("kill", ["-#{sig}", Integer.to_string(os_pid)], stderr_to_stdout: true) do
      {_, 0} -> :ok
      _ -> :error
    end
  end

  @doc false
  # True while a process with this pid exists and is not a zombie.
  @spec alive?(non_neg_integer()) :: boolean()
  def alive?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        # pid (comm) state ...: comm may hold spaces and parentheses, the state follows the last ")".
        state = stat |> String.split(")") |> List.last() |> String.trim_leading()
        not String.starts_with?(state, ["Z", "X"])

      {:error, _} ->
        match?(
          {_, 0},
          System.cmd("kill", ["-0", Integer.to_string(os_pid)], stderr_to_stdout: true)
        )
    end
  end

  @doc false
  # A TCP port that was free a moment ago (the kernel's pick for a listen socket on port 0).
  @spec free_port() :: :inet.port_number()
  def free_port do
    {:ok, sock} = :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, reuseaddr: false])
    {:ok, port} = :inet.port(sock)
    :ok = :gen_tcp.close(sock)
    port
  end
end
