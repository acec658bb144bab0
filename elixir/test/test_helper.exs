# The tests talk to real cnode nodes, so this VM must be distributed. `mix test` here runs in a distributed VM with
# a private EPMD (the `test` alias in mix.exs); under `elixir --sname t -S mix test` or `ERL_EPMD_PORT=P mix test`
# this starts distribution when needed.
CNode.Distribution.ensure_started!()

# cnode's info lines (each cnode logs a few as it starts) only when a test fails, or when asked for.
Logger.put_module_level(CNode, :warning)
Logger.put_module_level(CNode.EPMD, :warning)
ExUnit.start(capture_log: true)
