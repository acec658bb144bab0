defmodule CNode.Global do
  @moduledoc """
  `:global` called on a cnode: cnode's name server answers these over erpc as a BEAM node's does.

      :yes = CNode.Global.register_name(cnode, :my_name, pid)   # registered by cnode's registrar
      CNode.Global.whereis_name(cnode, :my_name)                # pid
      :ok = CNode.Global.sync(cnode)

  Each returns what the `:global` function returns and raises what `:erpc.call/5` raises. To register or lock as
  a cnode process, use a probe (`CNode.Probe.global_register/2`, `CNode.Probe.global_set_lock/2`, ...).
  """

  @timeout 120_000

  @doc "`:global.whereis_name(name)` on `node`: a pid or `:undefined`."
  @spec whereis_name(node(), term()) :: pid() | :undefined
  def whereis_name(node, name), do: global(node, :whereis_name, [name])

  @doc "`:global.registered_names()` on `node`."
  @spec registered_names(node()) :: [term()]
  def registered_names(node), do: global(node, :registered_names, [])

  @doc "`:global.register_name(name, pid)` on `node`: `:yes` or `:no`."
  @spec register_name(node(), term(), pid()) :: :yes | :no
  def register_name(node, name, pid), do: global(node, :register_name, [name, pid])

  @doc "`:global.re_register_name(name, pid)` on `node`: `:yes`."
  @spec re_register_name(node(), term(), pid()) :: :yes
  def re_register_name(node, name, pid), do: global(node, :re_register_name, [name, pid])

  @doc "`:global.unregister_name(name)` on `node`: `:ok`."
  @spec unregister_name(node(), term()) :: :ok
  def unregister_name(node, name), do: global(node, :unregister_name, [name])

  @doc """
  `:global.sync()` on `node` (or `:global.sync(nodes)` with a list): `:ok` once every visible node (every node
  listed) is in sync with cnode or down.
  """
  @spec sync(node(), [node()] | :all) :: :ok | {:error, term()}
  def sync(node, nodes \\ :all)
  def sync(node, :all), do: global(node, :sync, [])
  def sync(node, nodes) when is_list(nodes), do: global(node, :sync, [nodes])

  defp global(node, f, args), do: :erpc.call(node, :global, f, args, @timeout)
end
