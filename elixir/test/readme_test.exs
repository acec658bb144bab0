# The README's ExUnit example, compiled and run as it is written there.
readme = File.read!(Path.expand("../README.md", __DIR__))

[example] =
  Regex.run(~r/```elixir\n(defmodule MyApp\.CNodeTest.*?)```/s, readme, capture: :all_but_first)

Code.compile_string(example, Path.expand("../README.md", __DIR__))
