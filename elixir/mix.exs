defmodule CNode.MixProject do
  use Mix.Project

  def project do
    [
      app: :cnode,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: [],
      aliases: aliases(),
      preferred_cli_env: [test: :test],
      docs: [main: "readme", extras: ["README.md"]]
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto], mod: {CNode.Application, []}]
  end

  # `mix test` needs a distributed VM. When it is not one (plain `mix test`), the alias starts a private EPMD on a
  # free port and re-runs `mix test` in a distributed child VM that uses it (see CNode.Distribution.mix_test/1).
  defp aliases, do: [test: &test/1]

  defp test(args) do
    Mix.Task.run("compile")
    CNode.Distribution.mix_test(args)
  end
end
