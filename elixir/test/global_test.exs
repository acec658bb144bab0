defmodule CNode.GlobalTest do
  use CNode.Case, async: true
  alias CNode.Probe

  defp name, do: {:cnode_global_test, make_ref()}

  test "global_register/2: the probe's name is seen from Elixir; unregister removes it", ctx do
    probe = probe(ctx)
    name = name()
    assert Probe.global_register(probe, name) == :yes
    wait_until(fn -> :global.whereis_name(name) == probe end, 10_000, "the name in :global")
    assert GenServer.call({:global, name}, {:sleep, 0}) == :ok

    assert Probe.global_register(probe(ctx), name) == :no
    assert :ok = Probe.global_unregister(probe, name)
    wait_until(fn -> :global.whereis_name(name) == :undefined end)
  end

  test "global_register/2 of a name Elixir holds is :no", ctx do
    probe = probe(ctx)
    name = name()
    :yes = :global.register_name(name, self())
    assert Probe.global_register(probe, name) == :no
    :global.unregister_name(name)
  end

  test "global_register/3 with a resolve method", ctx do
    probe = probe(ctx)
    name = name()
    assert Probe.global_register(probe, name, &:global.notify_all_name/3) == :yes
    wait_until(fn -> :global.whereis_name(name) == probe end)
  end

  test "a probe's name goes when the probe exits", ctx do
    probe = probe(ctx)
    name = name()
    assert Probe.global_register(probe, name) == :yes
    wait_until(fn -> :global.whereis_name(name) == probe end)
    :ok = Probe.stop(probe)
    wait_until(fn -> :global.whereis_name(name) == :undefined end)
  end

  test "global_set_lock/2 and global_del_lock/2 against Elixir's :global.set_lock",
       %{cnode: cnode} = ctx do
    probe = probe(ctx)
    id = {:cnode_global_lock, make_ref()}
    nodes = [node(), cnode]
    assert Probe.global_set_lock(probe, id) == true

    # The lock id is {id, probe}: another requester of the resource is refused while the probe holds it.
    assert :global.set_lock({id, self()}, nodes, 0) == false
    assert :ok = Probe.global_del_lock(probe, id)
    assert :global.set_lock({id, self()}, nodes, 0) == true
    assert Probe.global_set_lock(probe, id) == false
    :global.del_lock({id, self()}, nodes)
    assert Probe.global_set_lock(probe, id) == true
    assert :ok = Probe.global_del_lock(probe, id)
  end

  test "global_trans/3 holds the lock, then releases it", %{cnode: cnode} = ctx do
    probe = probe(ctx)
    id = {:cnode_global_trans, make_ref()}
    assert Probe.global_trans(probe, id, 10) == :ok
    assert :global.set_lock({id, self()}, [node(), cnode], 0) == true
    assert Probe.global_trans(probe, id, 10) == :aborted
    :global.del_lock({id, self()}, [node(), cnode])
  end

  test "CNode.Global: cnode's registrar and name table", %{cnode: cnode} do
    name = name()
    me = self()
    assert CNode.Global.register_name(cnode, name, me) == :yes
    assert :global.whereis_name(name) == me
    assert CNode.Global.whereis_name(cnode, name) == me
    assert name in CNode.Global.registered_names(cnode)
    assert CNode.Global.register_name(cnode, name, me) == :no
    assert :ok = CNode.Global.unregister_name(cnode, name)
    assert CNode.Global.whereis_name(cnode, name) == :undefined
    wait_until(fn -> :global.whereis_name(name) == :undefined end)
    assert :ok = CNode.Global.sync(cnode)
    assert :ok = CNode.Global.sync(cnode, [node()])
  end
end
