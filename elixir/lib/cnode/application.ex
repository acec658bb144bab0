defmodule CNode.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    # Holds a CNode.EPMD started by CNode.Distribution.ensure_started/1, if any.
    Supervisor.start_link([], strategy: :one_for_one, name: CNode.Supervisor)
  end
end
