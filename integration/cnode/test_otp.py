"""Issue 5: links, monitors, exits, gen_server both ways, rpc/erpc into C++, driven from Elixir through the probe."""
import harness
from cnode_node import start_cnode


def setup(c, extra=()):
    c.epmd()
    cn = start_cnode(c, extra=extra)
    ex = c.elixir("ex")
    ex.eval(f"Process.put(:cn, :\"{cn.node}\")")
    return cn, ex


def probe(ex):
    """A new probe owned by the agent process; its pid is stored as :probe."""
    return ex.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:probe, p); "
                   "is_pid(p) and node(p) == Process.get(:cn)")


# A watcher process linked (or monitoring) the probe, reporting what happened to the agent as {:watch, X}.
WATCH_LINK = ("me = self(); p = Process.get(:probe); trap = {trap}; "
              "w = spawn(fn -> Process.flag(:trap_exit, trap); Process.link(p); send(me, :linked); "
              "receive do m -> send(me, {{:watch, m}}) after 10_000 -> send(me, {{:watch, :nothing}}) end end); "
              "receive do :linked -> :ok end; Process.put(:watcher, w); :ok")


def test_erpc_builtins_and_rpc_forms(c):
    cn, ex = setup(c)
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :node, [])") == f":{cn.node}"
    assert ex.eval(":rpc.call(Process.get(:cn), :erlang, :node, [])") == f":{cn.node}"
    assert ex.eval(":rpc.block_call(Process.get(:cn), :erlang, :node, [])") == f":{cn.node}"
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :nodes, [])") == "[:ex@localhost]"
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :whereis, [:echo]) |> is_pid()") == "true"
    assert ex.eval(":erpc.call(Process.get(:cn), :erlang, :whereis, [:nope])") == ":undefined"
    # the services a BEAM peer talks to are registered (global_name_server and pg too when those layers run)
    assert ex.eval("r = :erpc.call(Process.get(:cn), :erlang, :registered, []); "
                   "Enum.all?([:echo, :net_kernel, :rex], &(&1 in r))") == "true"
    info = ex.eval("i = :erpc.call(Process.get(:cn), :cnode, :info, []); {i.node == Process.get(:cn), "
                   "i.processes > 2, i.connections}")
    assert info == "{true, true, 1}", info
    # the C-node form of rex: {Pid, {call, M, F, A, GL}} answered with {rex, Result}
    assert ex.eval("send({:rex, Process.get(:cn)}, {self(), {:call, :erlang, :node, [], :user}}); "
                   "receive do {:rex, r} -> r after 5000 -> :timeout end") == f":{cn.node}"


def test_unknown_function_same_as_beam(c):
    cn, ex = setup(c)
    other = c.elixir("other")
    ours = ex.eval(":rpc.call(Process.get(:cn), :nomod, :f, [1, 2])")
    beam = ex.eval(":rpc.call(:other@localhost, :nomod, :f, [1, 2])")
    assert ours == beam == "{:badrpc, {:EXIT, {:undef, [{:nomod, :f, [1, 2], []}]}}}", (ours, beam)
    ours = ex.eval("try do :erpc.call(Process.get(:cn), :nomod, :f, []) catch c, r -> {c, r} end")
    beam = ex.eval("try do :erpc.call(:other@localhost, :nomod, :f, []) catch c, r -> {c, r} end")
    assert ours == beam, (ours, beam)
    ours = ex.eval("try do :erpc.call(Process.get(:cn), :erlang, :whereis, [\"x\"]) catch c, r -> {c, elem(r, 0), elem(r, 1)} end")
    assert ours == "{:error, :exception, :badarg}", ours


def test_rpc_cast_and_multicall(c):
    cn, ex = setup(c)
    c.elixir("other")
    assert ex.eval(":rpc.cast(Process.get(:cn), :erlang, :send, [self(), :from_cast]); "
                   "receive do :from_cast -> :ok after 5000 -> :timeout end") == ":ok"
    assert ex.eval(":erpc.cast(Process.get(:cn), :erlang, :send, [self(), :from_ecast]); "
                   "receive do :from_ecast -> :ok after 5000 -> :timeout end") == ":ok"
    out = ex.eval(":erpc.multicall([Process.get(:cn), :other@localhost], :erlang, :node, [])")
    assert out == f"[ok: :{cn.node}, ok: :other@localhost]", out
    out = ex.eval(":rpc.multicall([Process.get(:cn), :other@localhost], :erlang, :node, [])")
    assert out == f"{{[:{cn.node}, :other@localhost], []}}", out


def test_slow_function_does_not_hold_up_others(c):
    cn, ex = setup(c)
    probe(ex)
    # A call into a probe that sleeps 2 s, from a spawned process, while rpc calls go on.
    out = ex.eval("p = Process.get(:probe); spawn(fn -> GenServer.call(p, {:sleep, 2000}, 10_000) end); "
                  "t = System.monotonic_time(:millisecond); "
                  "for _ <- 1..20, do: :erpc.call(Process.get(:cn), :erlang, :node, []); "
                  "System.monotonic_time(:millisecond) - t < 1500")
    assert out == "true"


def test_link_exit_reasons(c):
    cn, ex = setup(c)
    # probe exits with a reason: the linked (non-trapping) watcher dies with it
    probe(ex)
    ex.eval(WATCH_LINK.format(trap="false"))
    ex.eval("Process.put(:wref, Process.monitor(Process.get(:watcher)))")
    assert ex.eval("GenServer.call(Process.get(:probe), {:exit, :boom})") == ":ok"
    assert ex.eval("r = Process.get(:wref); receive do {:DOWN, ^r, _, _, reason} -> reason after 5000 -> :none end") == ":boom"
    # exit normal: the watcher lives on
    probe(ex)
    ex.eval(WATCH_LINK.format(trap="false"))
    ex.eval("Process.put(:pref, Process.monitor(Process.get(:probe)))")
    assert ex.eval("GenServer.call(Process.get(:probe), {:exit, :normal})") == ":ok"
    # cnode sends the link's exit signal before the DOWN, on the same connection: once the DOWN is here, the watcher
    # has the exit signal, and is_process_alive/1 is ordered after it.
    assert ex.eval("r = Process.get(:pref); receive do {:DOWN, ^r, _, _, :normal} -> "
                   "Process.alive?(Process.get(:watcher)) after 5000 -> :no_down end") == "true"
    # trapping: the watcher gets {:EXIT, probe, reason}
    probe(ex)
    ex.eval(WATCH_LINK.format(trap="true"))
    assert ex.eval("GenServer.call(Process.get(:probe), {:exit, :bye})") == ":ok"
    assert ex.eval("p = Process.get(:probe); receive do {:watch, {:EXIT, ^p, r}} -> r after 5000 -> :none end") == ":bye"


def test_kill_rules_match_the_beam(c):
    cn, ex = setup(c)
    # Process.exit(probe, :kill): the probe dies with :killed and its links see :killed
    probe(ex)
    ex.eval(WATCH_LINK.format(trap="true"))
    ex.eval("Process.exit(Process.get(:probe), :kill)")
    assert ex.eval("p = Process.get(:probe); receive do {:watch, {:EXIT, ^p, r}} -> r after 5000 -> :none end") == ":killed"
    # the same on the BEAM, for comparison
    beam = ex.eval("me = self(); v = spawn(fn -> Process.sleep(:infinity) end); "
                   "spawn(fn -> Process.flag(:trap_exit, true); Process.link(v); send(me, :l); "
                   "receive do {:EXIT, ^v, r} -> send(me, {:beam, r}) end end); "
                   "receive do :l -> :ok end; Process.exit(v, :kill); receive do {:beam, r} -> r after 5000 -> :none end")
    assert beam == ":killed"
    # a probe exiting with reason :kill passes :kill, which a linked trapping process receives as it is
    probe(ex)
    ex.eval(WATCH_LINK.format(trap="true"))
    assert ex.eval("GenServer.call(Process.get(:probe), {:exit, :kill})") == ":ok"
    assert ex.eval("p = Process.get(:probe); receive do {:watch, {:EXIT, ^p, r}} -> r after 5000 -> :none end") == ":kill"
    # a trapping probe gets exit signals as messages; kill is still untrappable
    probe(ex)
    assert ex.eval("GenServer.call(Process.get(:probe), {:trap_exit, true})") == "false"
    ex.eval("Process.exit(Process.get(:probe), :shutdown)")
    assert ex.eval("p = Process.get(:probe); me = self(); receive do {:probe, ^p, {:EXIT, ^me, r}} -> r after 5000 -> :none end") == ":shutdown"
    ex.eval("Process.put(:pref, Process.monitor(Process.get(:probe))); Process.exit(Process.get(:probe), :kill)")
    assert ex.eval("r = Process.get(:pref); receive do {:DOWN, ^r, _, _, reason} -> reason after 5000 -> :none end") == ":killed"


def test_probe_links_and_monitors_elixir_processes(c):
    cn, ex = setup(c)
    probe(ex)
    # the probe links to an Elixir process that then dies: a trapping probe gets {:EXIT, pid, reason}
    assert ex.eval("GenServer.call(Process.get(:probe), {:trap_exit, true})") == "false"
    ex.eval("v = spawn(fn -> receive do :go -> exit(:gone) end end); Process.put(:victim, v); "
            "GenServer.call(Process.get(:probe), {:link, v})")
    ex.eval("send(Process.get(:victim), :go)")
    assert ex.eval("p = Process.get(:probe); v = Process.get(:victim); "
                   "receive do {:probe, ^p, {:EXIT, ^v, r}} -> r after 5000 -> :none end") == ":gone"
    # monitor an Elixir process from the probe
    ex.eval("v = spawn(fn -> receive do :go -> exit(:done) end end); Process.put(:victim, v); "
            "Process.put(:mref, GenServer.call(Process.get(:probe), {:monitor, v}))")
    ex.eval("send(Process.get(:victim), :go)")
    assert ex.eval("p = Process.get(:probe); r = Process.get(:mref); "
                   "receive do {:probe, ^p, {:DOWN, ^r, :process, _, why}} -> why after 5000 -> :none end") == ":done"
    # monitor a registered name that does not exist: noproc at once
    assert ex.eval("r = GenServer.call(Process.get(:probe), {:monitor, {:nobody, node()}}); p = Process.get(:probe); "
                   "receive do {:probe, ^p, {:DOWN, ^r, :process, obj, why}} -> {obj, why} after 5000 -> :none end") == \
        "{{:nobody, :ex@localhost}, :noproc}"
    # unlink: a later exit of the unlinked process does not reach the probe
    ex.eval("v = spawn(fn -> receive do :go -> exit(:late) end end); Process.put(:victim, v); "
            "GenServer.call(Process.get(:probe), {:link, v}); GenServer.call(Process.get(:probe), {:unlink, v}); "
            "send(v, :go)")
    assert ex.eval("p = Process.get(:probe); receive do {:probe, ^p, {:EXIT, _, :late}} -> :got after 500 -> :none end") == ":none"


def test_monitor_probe_from_elixir(c):
    cn, ex = setup(c)
    probe(ex)
    ex.eval("Process.put(:pref, Process.monitor(Process.get(:probe)))")
    assert ex.eval("GenServer.call(Process.get(:probe), {:exit, :shutdown})") == ":ok"
    assert ex.eval("r = Process.get(:pref); receive do {:DOWN, ^r, :process, _, why} -> why after 5000 -> :none end") == ":shutdown"
    # a dead pid: noproc
    assert ex.eval("r = Process.monitor(Process.get(:probe)); receive do {:DOWN, ^r, :process, _, why} -> why after 5000 -> :none end") == ":noproc"
    # a name on cnode that does not exist: noproc; one that does: the monitor holds
    assert ex.eval("r = Process.monitor({:nobody, Process.get(:cn)}); receive do {:DOWN, ^r, :process, _, why} -> why after 5000 -> :none end") == ":noproc"


def test_noconnection_when_cnode_dies(c):
    cn, ex = setup(c)
    probe(ex)
    ex.eval("Process.put(:pref, Process.monitor(Process.get(:probe)))")
    cn.kill9()
    assert ex.eval("r = Process.get(:pref); receive do {:DOWN, ^r, :process, _, why} -> why after 90_000 -> :none end",
                   timeout=100) == ":noconnection"


def test_genserver_calls_into_cpp(c):
    cn, ex = setup(c)
    probe(ex)
    assert ex.eval("GenServer.call({:echo, Process.get(:cn)}, {:hello, [1, 2]})") == "{:hello, [1, 2]}"
    # timeout
    assert ex.eval("try do GenServer.call(Process.get(:probe), {:sleep, 1000}, 100) catch :exit, {r, _} -> r end") == ":timeout"
    # server death mid-call
    assert ex.eval("try do GenServer.call(Process.get(:probe), {:crash, :oops}, 5000) catch :exit, {r, _} -> r end") == ":oops"
    # multi_call over an Elixir node and cnode
    ex.eval("defmodule EchoSrv do use GenServer; def init(x), do: {:ok, x}; "
            "def handle_call(r, _, s), do: {:reply, r, s} end; GenServer.start(EchoSrv, nil, name: :echo)")
    out = ex.eval("GenServer.multi_call([node(), Process.get(:cn)], :echo, :hi)")
    assert out == f"{{[{cn.node}: :hi, ex@localhost: :hi], []}}" or \
        out == f"{{[ex@localhost: :hi, {cn.node}: :hi], []}}", out


def test_cpp_client_calls_elixir(c):
    cn, ex = setup(c)
    probe(ex)
    ex.eval("defmodule Srv do use GenServer; def init(x), do: {:ok, x}; "
            "def handle_call({:sleep, t}, _, s), do: (Process.sleep(t); {:reply, :slept, s}); "
            "def handle_call(:die, _, _), do: exit(:died); "
            "def handle_call(r, _, s), do: {:reply, {:got, r}, s} end; GenServer.start(Srv, nil, name: :srv)")
    call = "GenServer.call(Process.get(:probe), {{:call, {dest}, {req}, {timeout}}}, 20_000)"
    assert ex.eval(call.format(dest="{:srv, node()}", req=":x", timeout=5000)) == "{:ok, {:got, :x}}"
    assert ex.eval(call.format(dest="Process.whereis(:srv)", req=":y", timeout=5000)) == "{:ok, {:got, :y}}"
    assert ex.eval(call.format(dest="{:srv, node()}", req="{:sleep, 500}", timeout=100)) == "{:error, :timeout}"
    assert ex.eval(call.format(dest="{:nobody, node()}", req=":x", timeout=5000)) == "{:error, :noproc}"
    assert ex.eval(call.format(dest="{:srv, node()}", req=":die", timeout=5000)) == "{:error, :died}"
    # nodedown: a server on a node that goes away mid-call
    other = c.elixir("other")
    other.eval("defmodule Slow do use GenServer; def init(x), do: {:ok, x}; "
               "def handle_call(_, _, s), do: (Process.sleep(60_000); {:reply, :late, s}) end; "
               "GenServer.start(Slow, nil, name: :slow)")
    ex.eval("me = self(); p = Process.get(:probe); "
            "spawn(fn -> send(me, {:res, GenServer.call(p, {:call, {:slow, :other@localhost}, :x, 30_000}, 40_000)}) end)")
    harness.wait_until(lambda: cn.node in other.eval("inspect(Node.list())"), 10, "cnode connected to other")
    other.kill9()
    assert ex.eval("receive do {:res, r} -> r after 20_000 -> :none end", timeout=30) == "{:error, {:nodedown, :other@localhost}}"


def test_spawn_request_options(c):
    cn, ex = setup(c)
    # monitor: a spawn_reply, then the process runs the registered function and the DOWN says normal
    out = ex.eval("r = :erlang.spawn_request(Process.get(:cn), :erlang, :send, [self(), :spawned], [:monitor]); "
                  "pid = receive do {:spawn_reply, ^r, :ok, p} -> p after 5000 -> :none end; "
                  "got = receive do :spawned -> :yes after 5000 -> :no end; "
                  "why = receive do {:DOWN, ^r, :process, ^pid, w} -> w after 5000 -> :none end; "
                  "{node(pid) == Process.get(:cn), got, why}")
    assert out == "{true, :yes, :normal}", out
    # link: an unknown function ends with undef, which reaches the linked (trapping) caller as on the BEAM
    other = c.elixir("other")
    for target in ["Process.get(:cn)", ":other@localhost"]:
        out = ex.eval("Process.flag(:trap_exit, true); "
                      f"r = :erlang.spawn_request({target}, :nomod, :nofun, [1], [:link]); "
                      "pid = receive do {:spawn_reply, ^r, :ok, p} -> p after 5000 -> :none end; "
                      "why = receive do {:EXIT, ^pid, {w, _}} -> w after 5000 -> :none end; "
                      "Process.flag(:trap_exit, false); why")
        assert out == ":undef", (target, out)


def test_aliases_both_ways(c):
    cn, ex = setup(c)
    probe(ex)
    # an alias made by the probe reaches it from Elixir
    ex.eval("Process.put(:al, GenServer.call(Process.get(:probe), :alias))")
    ex.eval("send(Process.get(:al), :via_alias)")
    assert ex.eval("p = Process.get(:probe); receive do {:probe, ^p, :via_alias} -> :ok after 5000 -> :none end") == ":ok"
    # the probe sends to an Elixir alias (ALIAS_SEND)
    assert ex.eval("a = :erlang.alias(); GenServer.call(Process.get(:probe), {:send, a, :to_alias}); "
                   "receive do :to_alias -> :ok after 5000 -> :none end") == ":ok"


harness.main(globals())
