defmodule CNode.LifecycleTest do
  use ExUnit.Case, async: true
  import CNode.Case, only: [wait_until: 1, wait_until: 3]
  alias CNode.OSProcess

  defp gone?(os_pid), do: not OSProcess.alive?(os_pid)

  test "start_link/1: ready, named, pingable; stop/1 ends the OS process" do
    {:ok, pid} = CNode.start_link(sname: "lifecycle_#{System.unique_integer([:positive])}")
    node = CNode.node_name(pid)
    assert node |> Atom.to_string() |> String.starts_with?("lifecycle_")

    assert node
           |> Atom.to_string()
           |> String.ends_with?(
             "@" <> (node() |> Atom.to_string() |> String.split("@") |> List.last())
           )

    assert CNode.cookie(pid) == Node.get_cookie()
    assert CNode.epmd_port(pid) == CNode.Distribution.epmd_port()
    assert Node.ping(node) == :pong
    assert {:ok, line} = CNode.await_output(pid, "ready #{node}")
    assert line =~ "distribution port"
    assert {:ok, _} = CNode.await_output(pid, "up #{node()}")
    assert CNode.output(pid) |> Enum.any?(&(&1 =~ "ready #{node}"))
    os_pid = CNode.os_pid(pid)
    assert OSProcess.alive?(os_pid)
    assert :ok = CNode.stop(pid)
    assert gone?(os_pid)
  end

  test "await_output/3 times out" do
    {:ok, pid} = CNode.start_link()
    assert CNode.await_output(pid, "no such line", 50) == {:error, :timeout}
    CNode.stop(pid)
  end

  test "connect: true and hidden: true" do
    {:ok, pid} = CNode.start_link(connect: true, hidden: true)
    node = CNode.node_name(pid)
    assert node in Node.list(:hidden)
    refute node in Node.list()
    CNode.stop(pid)
    wait_until(fn -> node not in Node.list(:connected) end)
  end

  test "as a supervised child: the OS process stops with the child" do
    pid = start_supervised!({CNode, id: :sup_child})
    os_pid = CNode.os_pid(pid)
    assert :ok = stop_supervised(:sup_child)
    assert gone?(os_pid)
  end

  test "the OS process stops when the owner crashes" do
    test = self()

    owner =
      spawn(fn ->
        {:ok, pid} = CNode.start_link()
        send(test, {:os_pid, CNode.os_pid(pid)})

        receive do
          :crash -> exit(:crashed)
        end
      end)

    assert_receive {:os_pid, os_pid}, 30_000
    assert OSProcess.alive?(os_pid)
    send(owner, :crash)
    wait_until(fn -> gone?(os_pid) end, 15_000, "cnode #{os_pid} to stop")
  end

  test "epmd_port: :private starts cnode with its embedded EPMD on a free port" do
    {:ok, pid} = CNode.start(epmd_port: :private)
    port = CNode.epmd_port(pid)
    assert port != CNode.Distribution.epmd_port()
    assert CNode.EPMD.answers?(port)
    CNode.stop(pid)
    wait_until(fn -> not CNode.EPMD.answers?(port) end)
  end

  test "errors: no executable, a usage error, a taken name, no ready line in time", ctx do
    assert CNode.start(bin: "/nonexistent/cnode") ==
             {:error, {:no_executable, "/nonexistent/cnode"}}

    assert {:error, {:cnode_exited, 2, lines}} = CNode.start(args: ["--no-such-option"])
    assert Enum.any?(lines, &(&1 =~ "no-such-option"))

    {:ok, first} = CNode.start()
    name = CNode.node_name(first)
    assert {:error, {:cnode_exited, 1, lines}} = CNode.start(sname: Atom.to_string(name))
    assert Enum.any?(lines, &(&1 =~ "already registered")), inspect(lines)
    CNode.stop(first)

    # A program that never says ready: it is killed after the timeout.
    dir = Path.join(System.tmp_dir!(), "cnode_test_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    script = Path.join(dir, "silent")

    File.write!(
      script,
      "#!/bin/sh\necho \"pid $$ foo=$FOO home=${HOME-unset}\"\nexec sleep 600\n"
    )

    File.chmod!(script, 0o755)

    env = [{"FOO", "bar"}, {"HOME", nil}]

    assert {:error, {:ready_timeout, [line]}} =
             CNode.start(bin: script, ready_timeout: 500, env: env)

    assert [_, os_pid] = Regex.run(~r/^pid (\d+) foo=bar home=unset$/, line)
    assert gone?(String.to_integer(os_pid))
    _ = ctx
  end

  test "CNode.EPMD: a private epmd that answers, and stops with its owner" do
    {:ok, epmd} = CNode.EPMD.start_link(port: CNode.EPMD.free_port())
    port = CNode.EPMD.port(epmd)
    os_pid = CNode.EPMD.os_pid(epmd)
    assert CNode.EPMD.answers?(port)
    {:ok, pid} = CNode.start(epmd_port: port)
    assert {:ok, names} = :erl_epmd.names({127, 0, 0, 1}) |> then(fn _ -> epmd_names(port) end)
    assert names =~ CNode.node_name(pid) |> Atom.to_string() |> String.split("@") |> hd()
    CNode.stop(pid)
    CNode.EPMD.stop(epmd)
    assert gone?(os_pid)
    refute CNode.EPMD.answers?(port)
  end

  # The names an EPMD lists, as the text of its NAMES reply.
  defp epmd_names(port) do
    {:ok, sock} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false])
    :ok = :gen_tcp.send(sock, <<1::16, 110>>)
    {:ok, <<^port::32, text::binary>>} = recv_all(sock, <<>>)
    :gen_tcp.close(sock)
    {:ok, text}
  end

  defp recv_all(sock, acc) do
    case :gen_tcp.recv(sock, 0, 5_000) do
      {:ok, data} -> recv_all(sock, acc <> data)
      {:error, :closed} -> {:ok, acc}
    end
  end

  test "level/1 maps cnode's line prefixes to Logger levels" do
    assert CNode.level("cnode info: ready a@b (distribution port 1, visible)") == :info
    assert CNode.level("cnode debug: x") == :debug
    assert CNode.level("cnode warning: x") == :warning
    assert CNode.level("cnode error: x") == :error
    assert CNode.level("error: name cnode already registered") == :error
    assert CNode.level("cnode info: error in a message text") == :info
    assert CNode.level(~s({"level":"warning","msg":"x"})) == :warning
    assert CNode.level("usage: cnode [options]") == :info
  end
end

defmodule CNode.LoggerTest do
  # Changes the CNode module's log level, which every test shares: not async.
  use ExUnit.Case, async: false
  import ExUnit.CaptureLog

  setup do
    Logger.put_module_level(CNode, :debug)
    on_exit(fn -> Logger.put_module_level(CNode, :warning) end)
  end

  test "cnode's lines go to Logger, at cnode's level" do
    log =
      capture_log([level: :debug], fn ->
        {:ok, pid} = CNode.start_link(log_level: :debug, connect: true)
        node = CNode.node_name(pid)
        # Something unexpected for a cnode :pg scope: ignored, with a debug line.
        send({:pg, node}, :unexpected)
        assert {:ok, _} = CNode.await_output(pid, "cnode debug")
        CNode.stop(pid)
        send(self(), {:node, node})
      end)

    assert_received {:node, node}
    assert log =~ ~r/\[info\]\s+cnode info: ready #{node}/
    assert log =~ ~r/\[debug\]\s+cnode debug: /
  end

  test "log: false keeps them out of Logger, output/1 still has them" do
    log =
      capture_log([level: :debug], fn ->
        {:ok, pid} = CNode.start_link(log: false)
        assert Enum.any?(CNode.output(pid), &(&1 =~ "ready "))
        CNode.stop(pid)
      end)

    refute log =~ "ready "
  end
end

defmodule CNode.PerTestCaseTest do
  use CNode.Case, async: true, per: :test

  setup %{cnode_server: server} do
    os_pid = CNode.os_pid(server)
    # on_exit runs after the test's supervisor has stopped the cnode.
    on_exit(fn -> refute CNode.OSProcess.alive?(os_pid) end)
    :ok
  end

  test "a connected cnode of its own", %{cnode: cnode} do
    assert cnode in Node.list()
    assert GenServer.call({:echo, cnode}, 1) == 1
  end

  test "another one", %{cnode: cnode} do
    assert cnode in Node.list()
  end
end

defmodule CNode.OrphanTest do
  use ExUnit.Case, async: true
  import CNode.Case, only: [wait_until: 3]

  @child """
  {:ok, _} = Application.ensure_all_started(:cnode)
  {:ok, pid} = CNode.start_link(epmd_port: :private)
  IO.puts("CNODE_OS_PID \#{CNode.os_pid(pid)} VM_OS_PID \#{System.pid()}")
  Process.sleep(:infinity)
  """

  test "a VM killed with SIGKILL leaves no cnode behind" do
    ebin = CNode |> :code.which() |> Path.dirname()
    elixir = System.find_executable("elixir")

    {port, _} =
      CNode.OSProcess.open(elixir, ["-pa", ebin, "-e", @child],
        env: [{"CNODE_BIN", CNode.default_bin()}]
      )

    {cnode_os_pid, vm_os_pid} =
      receive_line(port, ~r/CNODE_OS_PID (\d+) VM_OS_PID (\d+)/, 60_000)
      |> then(fn [_, c, v] -> {String.to_integer(c), String.to_integer(v)} end)

    assert CNode.OSProcess.alive?(cnode_os_pid)
    assert CNode.OSProcess.signal(vm_os_pid, "KILL") == :ok
    wait_until(fn -> not CNode.OSProcess.alive?(vm_os_pid) end, 15_000, "the VM to die")
    wait_until(fn -> not CNode.OSProcess.alive?(cnode_os_pid) end, 15_000, "its cnode to stop")
    CNode.OSProcess.stop(port, vm_os_pid)
  end

  defp receive_line(port, regex, timeout) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        Regex.run(regex, line) || receive_line(port, regex, timeout)

      {^port, {:exit_status, status}} ->
        flunk("the child VM exited with status #{status}")
    after
      timeout -> flunk("no line matching #{inspect(regex)}")
    end
  end
end
