defmodule CNode.PGTest do
  # cnode takes part in the scope :cnode_pg_test (besides :pg); this VM runs the same scope.
  use CNode.Case, async: true, cnode: [args: ["--pg-scope", "cnode_pg_test"]]
  alias CNode.Probe

  @scope :cnode_pg_test

  setup_all do
    # The scope runs in this VM for the whole module (setup_all's supervisor), before and after every test.
    {:ok, _} = start_supervised(%{id: @scope, start: {:pg, :start_link, [@scope]}})
    :ok
  end

  defp group, do: {:group, make_ref()}

  test "pg_join/3 and pg_leave/3: the probe is a member seen from Elixir",
       %{cnode: cnode} = ctx do
    probe = probe(ctx)
    g = group()
    assert :ok = Probe.pg_join(probe, @scope, g)

    wait_until(
      fn -> :pg.get_members(@scope, g) == [probe] end,
      10_000,
      "the probe in #{inspect(g)}"
    )

    assert :erpc.call(cnode, :pg, :get_local_members, [@scope, g]) == [probe]

    assert :ok = Probe.pg_leave(probe, @scope, g)
    assert Probe.pg_leave(probe, @scope, g) == :not_joined
    wait_until(fn -> :pg.get_members(@scope, g) == [] end, 10_000, "the group to empty")
  end

  test "a probe that exits leaves its groups", ctx do
    probe = probe(ctx)
    g = group()
    assert :ok = Probe.pg_join(probe, @scope, g)
    wait_until(fn -> :pg.get_members(@scope, g) == [probe] end)
    assert :ok = Probe.exit(probe, :bye)
    wait_until(fn -> :pg.get_members(@scope, g) == [] end)
  end

  test "the default scope :pg runs on cnode; an unknown scope is {:error, :noproc}", ctx do
    probe = probe(ctx)
    assert :ok = Probe.pg_join(probe, :pg, group())
    assert Probe.pg_join(probe, :cnode_no_such_scope, group()) == {:error, :noproc}
  end

  test "pg_monitor/3: joins and leaves of Elixir processes reach the owner", ctx do
    probe = probe(ctx)
    g = group()
    assert {ref, []} = Probe.pg_monitor(probe, @scope, g)
    me = self()
    :ok = :pg.join(@scope, g, me)
    assert_receive {:probe, ^probe, {^ref, :join, ^g, [^me]}}, 5_000
    :ok = :pg.leave(@scope, g, me)
    assert_receive {:probe, ^probe, {^ref, :leave, ^g, [^me]}}, 5_000

    assert Probe.pg_demonitor(probe, @scope, ref) == true
    assert Probe.pg_demonitor(probe, @scope, ref) == false
    :ok = :pg.join(@scope, g, me)

    # The probe's own join travels after our join on the connection to the cnode: it is seen once the probe is
    # a member, and the demonitored ref must have sent nothing.
    :ok = Probe.pg_join(probe, @scope, g)
    wait_until(fn -> Enum.sort(:pg.get_members(@scope, g)) == Enum.sort([me, probe]) end)
    :ok = Probe.send(probe, me, :marker)
    assert_receive :marker, 5_000
    refute_received {:probe, ^probe, {^ref, _, _, _}}
  end

  test "pg_monitor_scope/2 lists the groups and reports changes", ctx do
    probe = probe(ctx)
    g = group()
    me = self()
    :ok = :pg.join(@scope, g, me)
    wait_until(fn -> :erpc.call(ctx.cnode, :pg, :get_members, [@scope, g]) == [me] end)
    assert {ref, groups} = Probe.pg_monitor_scope(probe, @scope)
    assert groups[g] == [me]
    :ok = :pg.leave(@scope, g, me)
    assert_receive {:probe, ^probe, {^ref, :leave, ^g, [^me]}}, 5_000
  end

  test "CNode.PG: cnode's view of the scope", %{cnode: cnode} = ctx do
    probe = probe(ctx)
    g = group()
    me = self()
    :ok = :pg.join(@scope, g, me)
    :ok = CNode.Probe.pg_join(probe, @scope, g)

    wait_until(fn ->
      Enum.sort(CNode.PG.get_members(cnode, @scope, g)) == Enum.sort([me, probe])
    end)

    assert CNode.PG.get_local_members(cnode, @scope, g) == [probe]
    assert g in CNode.PG.which_groups(cnode, @scope)
    assert g in CNode.PG.which_local_groups(cnode, @scope)
    :ok = CNode.Probe.pg_join(probe, :pg, g)
    assert CNode.PG.get_local_members(cnode, g) == [probe]
    assert CNode.PG.get_members(cnode, :cnode_no_such_scope, g) == []
  end
end
