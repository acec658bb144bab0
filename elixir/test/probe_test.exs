defmodule CNode.ProbeTest do
  use CNode.Case, async: true
  alias CNode.Probe

  # An Elixir process that exits with the reason it is sent.
  defp victim do
    spawn(fn ->
      receive do
        {:exit_with, reason} -> exit(reason)
      end
    end)
  end

  defp kill_with(pid, reason) do
    ref = Process.monitor(pid)
    send(pid, {:exit_with, reason})
    assert_receive {:DOWN, ^ref, :process, ^pid, ^reason}, 5_000
  end

  # A message round trip through the probe: whatever the probe forwarded before it is in our mailbox after it.
  defp sync(probe) do
    marker = make_ref()
    :ok = Probe.send(probe, self(), marker)
    assert_receive ^marker, 5_000
  end

  test "spawn/2 starts a probe on the cnode, owned by the caller", %{cnode: cnode} do
    assert {:ok, probe} = Probe.spawn(cnode)
    assert node(probe) == cnode
    assert :ok = Probe.stop(probe)
    assert {:error, {:erpc, :noconnection}} = Probe.spawn(:nobody@nowhere)
  end

  test "a link kills the probe when the Elixir process exits with a reason", ctx do
    probe = probe(ctx)
    pid = victim()
    probe_ref = Process.monitor(probe)
    assert :ok = Probe.link(probe, pid)
    kill_with(pid, :boom)
    assert_receive {:DOWN, ^probe_ref, :process, ^probe, :boom}, 5_000
  end

  test "a link from a trapping probe forwards the EXIT to the owner", ctx do
    probe = probe(ctx)
    assert Probe.trap_exit(probe, true) == false
    assert Probe.trap_exit(probe, true) == true
    pid = victim()
    assert :ok = Probe.link(probe, pid)
    kill_with(pid, :bye)
    assert_receive {:probe, ^probe, {:EXIT, ^pid, :bye}}, 5_000
    assert :ok = Probe.stop(probe)
  end

  test "unlink/2 removes the link", ctx do
    probe = probe(ctx)
    pid = victim()
    assert :ok = Probe.link(probe, pid)
    assert :ok = Probe.unlink(probe, pid)
    kill_with(pid, :boom)
    sync(probe)
    assert Probe.trap_exit(probe, false) == false
  end

  test "a monitor that fires reaches the owner as {:probe, probe, {:DOWN, ...}}", ctx do
    probe = probe(ctx)
    pid = victim()
    ref = Probe.monitor(probe, pid)
    assert is_reference(ref)
    kill_with(pid, :gone)
    assert_receive {:probe, ^probe, {:DOWN, ^ref, :process, ^pid, :gone}}, 5_000
  end

  test "monitors of names: local to the cnode, {name, node}, and missing ones", ctx do
    probe = probe(ctx)
    pid = victim()
    name = :"probe_test_victim_#{System.unique_integer([:positive])}"
    Process.register(pid, name)
    ref = Probe.monitor(probe, {name, node()})
    kill_with(pid, :gone)
    assert_receive {:probe, ^probe, {:DOWN, ^ref, :process, {^name, node}, :gone}}, 5_000
    assert node == node()

    ref = Probe.monitor(probe, :no_such_name_on_cnode)
    assert_receive {:probe, ^probe, {:DOWN, ^ref, :process, _, :noproc}}, 5_000
  end

  test "demonitor/2: no DOWN after it", ctx do
    probe = probe(ctx)
    pid = victim()
    ref = Probe.monitor(probe, pid)
    assert :ok = Probe.demonitor(probe, ref)
    kill_with(pid, :gone)
    sync(probe)
    refute_received {:probe, ^probe, {:DOWN, ^ref, _, _, _}}
  end

  test "exit/2 makes the probe exit with the reason, exit/3 sends an exit signal", ctx do
    probe = probe(ctx)
    ref = Process.monitor(probe)
    assert :ok = Probe.exit(probe, {:shutdown, :asked})
    assert_receive {:DOWN, ^ref, :process, ^probe, {:shutdown, :asked}}, 5_000

    probe = probe(ctx)
    Process.flag(:trap_exit, true)
    # A link so that the signal is seen as {:EXIT, probe, reason} by this trapping test process.
    assert :ok = Probe.exit(probe, self(), :from_cpp)
    assert_receive {:EXIT, ^probe, :from_cpp}, 5_000
  end

  test "send/3 to a pid, a name, {name, node} and an alias", ctx do
    probe = probe(ctx)
    name = :"probe_test_#{System.unique_integer([:positive])}"
    Process.register(self(), name)
    assert :ok = Probe.send(probe, self(), :to_pid)
    assert_receive :to_pid, 5_000
    assert :ok = Probe.send(probe, {name, node()}, :to_name_node)
    assert_receive :to_name_node, 5_000
    alias = :erlang.alias()
    assert :ok = Probe.send(probe, alias, :to_alias)
    assert_receive :to_alias, 5_000
  end

  test "call/4 and cast/3 reach an Elixir GenServer, with GenServer.call's errors", ctx do
    probe = probe(ctx)
    {:ok, agent} = start_supervised({Agent, fn -> 1 end})

    assert Probe.call(probe, agent, {:get, &Function.identity/1}, 5_000) == {:ok, 1}
    assert :ok = Probe.cast(probe, agent, {:cast, &(&1 + 1)})
    assert Probe.call(probe, agent, {:get, &Function.identity/1}, 5_000) == {:ok, 2}

    assert Probe.call(probe, {:no_such_server, node()}, :hi, 5_000) == {:error, :noproc}

    slow = probe(ctx)
    assert Probe.call(probe, slow, {:sleep, 2_000}, 100) == {:error, :timeout}
    # The C++ side calls the echo server of its own node.
    assert Probe.call(probe, :echo, {:x, [1]}) == {:ok, {:x, [1]}}
  end

  test "call/4 to {:global, name} and {:via, :global, name}", ctx do
    probe = probe(ctx)
    name = {:probe_test_agent, make_ref()}
    start = {Agent, :start_link, [fn -> :global_state end, [name: {:global, name}]]}
    {:ok, _} = start_supervised(%{id: :global_agent, start: start})

    assert Probe.call(probe, {:global, name}, {:get, &Function.identity/1}) ==
             {:ok, :global_state}

    assert Probe.call(probe, {:via, :global, name}, {:get, &Function.identity/1}) ==
             {:ok, :global_state}

    assert Probe.call(probe, {:global, :no_such_global_name}, :x) == {:error, :noproc}
  end

  test "register/2: the name is the probe's on the cnode, once", %{cnode: cnode} = ctx do
    probe = probe(ctx)
    name = :"probe_test_#{System.unique_integer([:positive])}"
    assert :ok = Probe.register(probe, name)
    assert :erpc.call(cnode, :erlang, :whereis, [name]) == probe
    assert Probe.register(probe(ctx), name) == :badarg
    assert GenServer.call({name, cnode}, {:sleep, 0}) == :ok
  end

  test "alias/1: messages to the alias reach the owner", ctx do
    probe = probe(ctx)
    alias = Probe.alias(probe)
    assert is_reference(alias)
    send(alias, :via_alias)
    assert_receive {:probe, ^probe, :via_alias}, 5_000
  end

  test "plain messages to the probe are forwarded", ctx do
    probe = probe(ctx)
    send(probe, {:hello, self()})
    me = self()
    assert_receive {:probe, ^probe, {:hello, ^me}}, 5_000
  end

  test "sleep/2, crash/2 and stop/1", ctx do
    probe = probe(ctx)
    assert :ok = Probe.sleep(probe, 10)
    ref = Process.monitor(probe)
    assert Probe.crash(probe, :mid_call) == {:error, :mid_call}
    assert_receive {:DOWN, ^ref, :process, ^probe, :mid_call}, 5_000

    probe = probe(ctx)
    ref = Process.monitor(probe)
    assert :ok = Probe.stop(probe)
    assert_receive {:DOWN, ^ref, :process, ^probe, :normal}, 5_000
    catch_exit(Probe.sleep(probe, 0))
  end
end
