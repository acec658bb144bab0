defmodule CNode.PG do
  @moduledoc """
  cnode's view of `:pg`: the `:pg` functions cnode answers over erpc, called on a cnode.

      CNode.PG.get_members(cnode, :workers)          # :pg.get_members(:pg, :workers) as cnode sees it
      CNode.PG.which_groups(cnode, :my_scope)

  Each returns what the `:pg` function returns on a BEAM node and raises what `:erpc.call/5` raises (for example
  when the node is down). A scope cnode does not run (`--pg-scope`) has no members and no groups, as on a BEAM
  node. To join or monitor from the C++ side, use a probe (`CNode.Probe.pg_join/3`, ...).
  """

  @timeout 15_000

  @doc "`:pg.get_members(scope, group)` on `node` (scope `:pg` by default): every member, local or remote."
  @spec get_members(node(), atom(), term()) :: [pid()]
  def get_members(node, scope \\ :pg, group), do: pg(node, :get_members, [scope, group])

  @doc "`:pg.get_local_members(scope, group)` on `node`: the members that are cnode processes."
  @spec get_local_members(node(), atom(), term()) :: [pid()]
  def get_local_members(node, scope \\ :pg, group),
    do: pg(node, :get_local_members, [scope, group])

  @doc "`:pg.which_groups(scope)` on `node`."
  @spec which_groups(node(), atom()) :: [term()]
  def which_groups(node, scope \\ :pg), do: pg(node, :which_groups, [scope])

  @doc "`:pg.which_local_groups(scope)` on `node`: the groups with a cnode process in them."
  @spec which_local_groups(node(), atom()) :: [term()]
  def which_local_groups(node, scope \\ :pg), do: pg(node, :which_local_groups, [scope])

  defp pg(node, f, args), do: :erpc.call(node, :pg, f, args, @timeout)
end
