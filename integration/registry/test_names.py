"""Issue 7: names registered on either side are seen on every node; unregister and process exit remove them
everywhere; a C++ lock holder and an Elixir one exclude each other."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402


def cluster(c):
    c.epmd()
    cn = start_cnode(c)
    a = c.elixir("a")
    b = c.elixir("b")
    for n in (a, b):
        n.eval(f"Process.put(:cn, :\"{cn.node}\")")
        assert n.eval("Node.connect(Process.get(:cn))") == "true"
    for n in (a, b):
        assert n.eval("t = Task.async(fn -> :global.sync() end); case Task.yield(t, 20_000) do "
                      "{:ok, r} -> r; nil -> :hang end", timeout=30) == ":ok"
    return cn, a, b


def where_everywhere(a, b, name):
    """(a's view, b's view, cnode's view) of a global name, all printed on a so pids compare."""
    out = a.eval(f"n = {name}; {{:global.whereis_name(n), :erpc.call(:b@localhost, :global, :whereis_name, [n]), "
                 ":erpc.call(Process.get(:cn), :global, :whereis_name, [n])}")
    return tuple(x.strip() for x in out.strip("{}").split(","))


def test_names_both_ways(c):
    cn, a, b = cluster(c)
    # Elixir registers: cnode sees it.
    a.eval("p = spawn(fn -> receive do :stop -> :ok end end); Process.put(:ex_p, p); :global.register_name(:ex_name, p)")
    pid = a.eval("Process.get(:ex_p)")
    harness.wait_until(lambda: where_everywhere(a, b, ":ex_name") == (pid, pid, pid), 10, "ex_name everywhere")
    # cnode registers a probe (through the probe call) and through erpc register_name/2.
    a.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:probe, p); :ok")
    assert a.eval("GenServer.call(Process.get(:probe), {:global_register, :cn_name}, 30_000)") == ":yes"
    assert a.eval("GenServer.call(Process.get(:probe), {:global_register, :ex_name}, 30_000)") == ":no"
    probe = a.eval("Process.get(:probe)")
    harness.wait_until(lambda: where_everywhere(a, b, ":cn_name") == (probe, probe, probe), 10, "cn_name everywhere")
    assert a.eval("GenServer.call({:global, :cn_name}, {:call, {:echo, Process.get(:cn)}, :hi, 5000})") == \
        "{:ok, :hi}"
    p2 = a.eval("p2 = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:p2, p2); p2")
    assert a.eval("a = :erpc.call(Process.get(:cn), :global, :register_name, [:cn2, Process.get(:p2)]); a") == ":yes"
    harness.wait_until(lambda: where_everywhere(a, b, ":cn2") == (p2, p2, p2), 10, "cn2 everywhere")
    assert "cn_name" in a.eval(":erpc.call(Process.get(:cn), :global, :registered_names, [])")
    # re_register_name/2 takes pids only, as global:re_register_name/2's guard (and the cluster's lock is free after)
    assert a.eval("try do :erpc.call(Process.get(:cn), :global, :re_register_name, [:x, :foo]) rescue "
                  "e -> elem(e.original, 1) end") == ":function_clause"
    assert a.eval("(:global.set_lock({:global, self()}, [node(), Process.get(:cn)], 0))") == "true"
    a.eval(":global.del_lock({:global, self()}, [node(), Process.get(:cn)])")
    # unregister from cnode; exit of the C++ process; exit of the Elixir process: gone everywhere.
    assert a.eval("GenServer.call(Process.get(:probe), {:global_unregister, :cn_name}, 30_000)") == ":ok"
    gone = (":undefined",) * 3
    harness.wait_until(lambda: where_everywhere(a, b, ":cn_name") == gone, 10, "cn_name gone")
    # gen::call/cast from C++ to {:global, name} and {:via, :global, name}: an Elixir Agent and a C++ process.
    b.eval("{:ok, _} = Agent.start(fn -> [1, 2, 3] end, name: {:global, :agent}); :ok")
    harness.wait_until(lambda: where_everywhere(a, b, ":agent")[2] != ":undefined", 10, "agent on cnode")
    probe_call = "fn r -> GenServer.call(Process.get(:probe), r, 10_000) end"
    assert a.eval(f"({probe_call}).({{:cast, {{:global, :agent}}, {{:cast, &Enum.reverse/1}}}})") == ":ok"
    assert a.eval(f"({probe_call}).({{:call, {{:via, :global, :agent}}, {{:get, &Function.identity/1}}, 5000}})") \
        == "{:ok, [3, 2, 1]}"
    assert a.eval(f"({probe_call}).({{:call, {{:global, :cn2}}, :alias, 5000}}) |> elem(1) |> is_reference()") \
        == "true"
    assert a.eval(f"({probe_call}).({{:call, {{:global, :nobody}}, :x, 5000}})") == "{:error, :noproc}"
    assert a.eval(f"({probe_call}).({{:cast, {{:global, :nobody}}, :x}})") == ":ok"
    a.eval("GenServer.call(Process.get(:p2), :stop)")
    harness.wait_until(lambda: where_everywhere(a, b, ":cn2") == gone, 10, "cn2 gone after exit")
    a.eval("send(Process.get(:ex_p), :stop)")
    harness.wait_until(lambda: where_everywhere(a, b, ":ex_name") == gone, 10, "ex_name gone after exit")
    # Elixir unregister
    b.eval(":global.register_name(:b_name, self())")
    harness.wait_until(lambda: where_everywhere(a, b, ":b_name")[2] != ":undefined", 10, "b_name on cnode")
    b.eval(":global.unregister_name(:b_name)")
    harness.wait_until(lambda: where_everywhere(a, b, ":b_name") == gone, 10, "b_name gone")


def test_name_gone_when_cnode_goes_down(c):
    cn, a, b = cluster(c)
    a.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:probe, p); :ok")
    assert a.eval("GenServer.call(Process.get(:probe), {:global_register, :cn_name}, 30_000)") == ":yes"
    harness.wait_until(lambda: b.eval(":global.whereis_name(:cn_name) |> is_pid()") == "true", 10, "name on b")
    cn.stop()
    harness.wait_until(lambda: b.eval(":global.whereis_name(:cn_name)") == ":undefined", 15, "name gone")
    assert b.eval("t = Task.async(fn -> :global.sync() end); case Task.yield(t, 20_000) do {:ok, r} -> r; "
                  "nil -> :hang end", timeout=30) == ":ok"


def test_external_names_as_on_the_beam(c):
    """global:register_name_external/2 names (global_names_ext): one registered before cnode joins arrives with the
    exchange, one registered after with the register_ext call; cnode's get_names_ext equals a's, and they go with
    unregister_name_external."""
    c.epmd()
    cn = start_cnode(c)
    a = c.elixir("a")
    a.eval(f"Process.put(:cn, :\"{cn.node}\")")
    a.eval("p = spawn(fn -> receive do :stop -> :ok end end); Process.put(:e1, p); "
           ":yes = :global.register_name_external(:ext1, p)")
    assert a.eval("Node.connect(Process.get(:cn))") == "true"
    assert a.eval(":global.sync()", timeout=30) == ":ok"
    ext = "fn n -> Enum.sort(:gen_server.call({:global_name_server, n}, :get_names_ext)) end"
    same = f"({ext}).(node()) == ({ext}).(Process.get(:cn))"
    assert a.eval(f"({ext}).(node()) |> length()") == "1"
    harness.wait_until(lambda: a.eval(same) == "true", 10, "ext1 in cnode's names_ext")
    assert a.eval(":erpc.call(Process.get(:cn), :global, :whereis_name, [:ext1]) == Process.get(:e1)") == "true"
    a.eval("p = spawn(fn -> receive do :stop -> :ok end end); :yes = :global.register_name_external(:ext2, p)")
    assert a.eval(f"({ext}).(node()) |> length()") == "2"
    harness.wait_until(lambda: a.eval(same) == "true", 10, "ext2 in cnode's names_ext")
    a.eval(":global.unregister_name_external(:ext1)")
    harness.wait_until(lambda: a.eval(f"({ext}).(Process.get(:cn)) |> length()") == "1", 10, "ext1 gone on cnode")
    assert a.eval(same) == "true"


def test_set_lock_excludes_across(c):
    cn, a, b = cluster(c)
    # An Elixir holder blocks the C++ side (through :global.trans from an erpc... the probe has no lock call, so
    # we use set_lock with retries 0 from Elixir against a lock held by a cnode process, and the other way round).
    a.eval("me = self(); h = spawn(fn -> true = :global.set_lock({:res, :ex}); send(me, :locked); "
           "receive do :release -> :global.del_lock({:res, :ex}); send(me, :released) end end); "
           "receive do :locked -> :ok end; Process.put(:holder, h)")
    # the lock is on cnode too: its table refuses another requester
    assert b.eval("(:global.set_lock({:res, :other}, [Process.get(:cn)], 0))") == "false"
    assert b.eval("(:global.set_lock({:res, :other}, [node(), Process.get(:cn)], 0))") == "false"
    a.eval("send(Process.get(:holder), :release); receive do :released -> :ok end")
    assert b.eval("(:global.set_lock({:res, :other}, [node(), Process.get(:cn)], 0))") == "true"
    # trans from Elixir is excluded by the lock b now holds on cnode
    assert a.eval("(:global.trans({:res, :t}, fn -> :ran end, [Process.get(:cn)], 0))") == ":aborted"
    b.eval(":global.del_lock({:res, :other}, [node(), Process.get(:cn)])")
    assert a.eval("(:global.trans({:res, :t}, fn -> :ran end, [Process.get(:cn)], 0))") == ":ran"


harness.main(globals())
