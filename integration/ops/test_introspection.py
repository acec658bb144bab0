"""Ops: the rpc introspection that observer-style tools ask a node for (erlang:memory/0,1, system_info/1,
statistics/1, process_info/1,2), called on cnode from Elixir with :rpc and :erpc, each answer's shape checked and
compared with what the same call gives on a real BEAM node (`ref`) in the same test."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from ops_util import start_http_cnode  # noqa: E402


def cluster(c):
    c.epmd()
    cn = start_http_cnode(c)
    ref = c.elixir("ref")
    ex = c.elixir("ex")
    ex.eval(f"Process.put(:cn, :\"{cn.node}\"); Process.put(:ref, :\"{ref.node}\")")
    for n in ("cn", "ref"):
        assert ex.eval(f"Node.connect(Process.get(:{n}))") == "true"
    # rpc/erpc to cnode and to ref: R.(node_key, m, f, a)
    ex.eval("Process.put(:rpc, fn n, m, f, a -> :rpc.call(Process.get(n), m, f, a) end); "
            "Process.put(:erpc, fn n, m, f, a -> :erpc.call(Process.get(n), m, f, a) end); :ok")
    return cn, ref, ex


def check(ex, cond, show):
    """Asserts that the Elixir expression cond is true; on failure the message shows the value of show."""
    if ex.eval(cond) != "true":
        raise AssertionError(f"not true: {cond}\n  with {show} = {ex.eval(show)}")


def call(via, node, m, f, args):
    return f"Process.get(:{via}).(:{node}, :{m}, :{f}, {args})"


def test_memory(c):
    cn, ref, ex = cluster(c)
    for via in ("rpc", "erpc"):
        ex.eval(f"Process.put(:m, {call(via, 'cn', 'erlang', 'memory', '[]')}); "
                f"Process.put(:r, {call(via, 'ref', 'erlang', 'memory', '[]')}); :ok")
        check(ex, "Keyword.keyword?(Process.get(:m))", "Process.get(:m)")
        check(ex, "Enum.all?(Process.get(:m), fn {_, v} -> is_integer(v) and v >= 0 end)", "Process.get(:m)")
        check(ex, "Enum.all?([:total, :processes, :system, :atom, :binary, :code, :ets], "
                  "&Keyword.has_key?(Process.get(:m), &1))", "Process.get(:m)")
        check(ex, "Process.get(:m)[:total] > 0", "Process.get(:m)")
        # the same keys in the same order as a BEAM's, and the BEAM's sums: total = processes + system
        check(ex, "Keyword.keys(Process.get(:m)) == Keyword.keys(Process.get(:r))", "{Process.get(:m), Process.get(:r)}")
        check(ex, "m = Process.get(:m); m[:total] == m[:processes] + m[:system]", "Process.get(:m)")
        check(ex, "m = Process.get(:m); m[:processes_used] <= m[:processes] and m[:atom_used] <= m[:atom]",
              "Process.get(:m)")
        check(ex, f"t = {call(via, 'cn', 'erlang', 'memory', '[:total]')}; is_integer(t) and t > 0",
              call(via, 'cn', 'erlang', 'memory', '[:total]'))
        check(ex, f"is_integer({call(via, 'cn', 'erlang', 'memory', '[:atom]')})",
              call(via, 'cn', 'erlang', 'memory', '[:atom]'))
        # a list of types: a list of {type, size} in that order, as a BEAM's
        lst = "[[:total, :atom, :ets]]"
        check(ex, f"x = {call(via, 'cn', 'erlang', 'memory', lst)}; Keyword.keys(x) == [:total, :atom, :ets] and "
                  "Enum.all?(Keyword.values(x), &is_integer/1)", call(via, 'cn', 'erlang', 'memory', lst))
        check(ex, f"Keyword.keys({call(via, 'ref', 'erlang', 'memory', lst)}) == [:total, :atom, :ets]", "nil")
    # an unknown type: badarg, as a BEAM says it
    check(ex, f"match?({{:badrpc, {{:EXIT, {{:badarg, _}}}}}}, {call('rpc', 'cn', 'erlang', 'memory', '[:bogus]')})",
          call('rpc', 'cn', 'erlang', 'memory', '[:bogus]'))
    check(ex, f"match?({{:badrpc, {{:EXIT, {{:badarg, _}}}}}}, {call('rpc', 'ref', 'erlang', 'memory', '[:bogus]')})",
          call('rpc', 'ref', 'erlang', 'memory', '[:bogus]'))
    check(ex, f"try do {call('erpc', 'cn', 'erlang', 'memory', '[:bogus]')} catch :error, {{:exception, r, _}} -> "
              "r == :badarg end", "nil")


def test_system_info(c):
    cn, ref, ex = cluster(c)
    for via in ("rpc", "erpc"):
        si = lambda node, item: call(via, node, "erlang", "system_info", f"[:{item}]")  # noqa: E731
        assert ex.eval(si("cn", "otp_release")) == "'25'"  # a charlist, as a BEAM's
        check(ex, f"{si('cn', 'otp_release')} == {si('ref', 'otp_release')}", si("ref", "otp_release"))
        for item in ("process_count", "atom_count", "atom_limit", "schedulers"):
            check(ex, f"x = {si('cn', item)}; is_integer(x) and x >= 1", si("cn", item))
            check(ex, f"is_integer({si('ref', item)})", si("ref", item))
        assert ex.eval(si("cn", "atom_limit")) == "1048576"
        check(ex, f"{si('cn', 'atom_limit')} == {si('ref', 'atom_limit')}", si("ref", "atom_limit"))
        check(ex, f"{si('cn', 'atom_count')} <= {si('cn', 'atom_limit')}", si("cn", "atom_count"))
    si = lambda node, item: call("rpc", node, "erlang", "system_info", f"[:{item}]")  # noqa: E731
    # process_count follows spawns and exits
    before = int(ex.eval(si("cn", "process_count")))
    for k in range(5):
        assert ex.eval(f"p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put({{:p, {k}}}, p);"
                       " is_pid(p)") == "true"
    assert int(ex.eval(si("cn", "process_count"))) == before + 5
    for k in range(5):
        assert ex.eval(f"GenServer.call(Process.get({{:p, {k}}}), :stop)") == ":ok"
    harness.wait_until(lambda: int(ex.eval(si("cn", "process_count"))) == before, 10, "process_count back")
    # atom_count follows a new atom cnode sees (in an echo call)
    atoms = int(ex.eval(si("cn", "atom_count")))
    assert ex.eval("GenServer.call({:echo, Process.get(:cn)}, :brand_new_atom_for_atom_count_4711)") == \
        ":brand_new_atom_for_atom_count_4711"
    assert int(ex.eval(si("cn", "atom_count"))) >= atoms + 1
    check(ex, f"match?({{:badrpc, {{:EXIT, {{:badarg, _}}}}}}, {si('cn', 'no_such_item')})", si("cn", "no_such_item"))
    check(ex, f"match?({{:badrpc, {{:EXIT, {{:badarg, _}}}}}}, {si('ref', 'no_such_item')})", "nil")


def test_statistics(c):
    cn, ref, ex = cluster(c)
    for via in ("rpc", "erpc"):
        st = lambda node, item: call(via, node, "erlang", "statistics", f"[:{item}]")  # noqa: E731
        for item in ("runtime", "wall_clock", "reductions"):
            pair = "match?({t, s} when is_integer(t) and is_integer(s) and t >= 0 and s >= 0 and s <= t, x)"
            check(ex, f"x = {st('cn', item)}; {pair}", st("cn", item))
            check(ex, f"x = {st('ref', item)}; {pair}", st("ref", item))
            # a total never goes back
            check(ex, f"{{t1, _}} = {st('cn', item)}; {{t2, _}} = {st('cn', item)}; t2 >= t1", st("cn", item))
    st = lambda item: call("rpc", "cn", "erlang", "statistics", f"[:{item}]")  # noqa: E731
    # reductions count work: 200 echo calls later the total is higher, and "since last" is what came since
    ex.eval(f"{{t, _}} = {st('reductions')}; Process.put(:red, t)")
    assert ex.eval("Enum.all?(1..200, fn i -> GenServer.call({:echo, Process.get(:cn)}, i) == i end)") == "true"
    check(ex, f"{{t, s}} = {st('reductions')}; t > Process.get(:red) + 200 and s > 200 and t == Process.get(:red) + s",
          st("reductions"))
    # wall_clock counts milliseconds since the node started: at least the time the test has seen pass
    ex.eval(f"{{w, _}} = {st('wall_clock')}; Process.put(:w, w); Process.put(:t0, System.monotonic_time(:millisecond))")
    assert ex.eval("Enum.all?(1..50, fn i -> GenServer.call({:echo, Process.get(:cn)}, i) == i end)") == "true"
    check(ex, f"{{w, _}} = {st('wall_clock')}; w - Process.get(:w) >= System.monotonic_time(:millisecond) - "
              "Process.get(:t0) - 1", st("wall_clock"))
    check(ex, f"match?({{:badrpc, {{:EXIT, {{:badarg, _}}}}}}, {st('no_such_item')})", st("no_such_item"))


def test_process_info(c):
    cn, ref, ex = cluster(c)
    ex.eval("p = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:p, p)")
    ex.eval("q = :erpc.call(Process.get(:cn), :cnode, :spawn_probe, [self()]); Process.put(:q, q)")
    # a BEAM process on ref for the same calls
    ex.eval("Process.put(:rp, Node.spawn(Process.get(:ref), fn -> receive do :never -> :ok end end))")
    for via in ("rpc", "erpc"):
        pi = lambda node, pid, item: call(via, node, "erlang", "process_info", f"[Process.get(:{pid}), {item}]")  # noqa
        assert ex.eval(pi("cn", "p", ":message_queue_len")) == "{:message_queue_len, 0}"
        assert ex.eval(pi("ref", "rp", ":message_queue_len")) == "{:message_queue_len, 0}"
        assert ex.eval(pi("cn", "p", ":registered_name")) == "[]"  # not registered: [], as a BEAM's
        assert ex.eval(pi("ref", "rp", ":registered_name")) == "[]"
        assert ex.eval(pi("cn", "p", ":links")) == "{:links, []}"
        assert ex.eval(pi("cn", "p", ":monitors")) == "{:monitors, []}"
    rpc_pi = lambda pid, item: call("rpc", "cn", "erlang", "process_info", f"[{pid}, {item}]")  # noqa: E731
    # a registered name
    assert ex.eval("GenServer.call(Process.get(:p), {:register, :intro_probe})") == ":ok"
    assert ex.eval(rpc_pi("Process.get(:p)", ":registered_name")) == "{:registered_name, :intro_probe}"
    echo = ":rpc.call(Process.get(:cn), :erlang, :whereis, [:echo])"
    assert ex.eval(rpc_pi(echo, ":registered_name")) == "{:registered_name, :echo}"
    # links and monitors, both ways the probe can make them
    assert ex.eval("GenServer.call(Process.get(:p), {:link, Process.get(:q)})") == ":ok"
    assert ex.eval("GenServer.call(Process.get(:p), {:monitor, Process.get(:rp)}) |> is_reference()") == "true"
    assert ex.eval(f"{rpc_pi('Process.get(:p)', ':links')} == {{:links, [Process.get(:q)]}}") == "true"
    harness.wait_until(lambda: ex.eval(f"{rpc_pi('Process.get(:q)', ':links')} == {{:links, [Process.get(:p)]}}")
                       == "true", 10, "the link on q's side")
    assert ex.eval(f"{rpc_pi('Process.get(:p)', ':monitors')} == {{:monitors, [{{:process, Process.get(:rp)}}]}}") \
        == "true", ex.eval(rpc_pi("Process.get(:p)", ":monitors"))
    # the remote end of that monitor, as the BEAM tells it: ref's process is monitored by the probe (once cnode's
    # monitor request, sent on its own connection to ref, got there)
    harness.wait_until(lambda: ex.eval(":rpc.call(Process.get(:ref), :erlang, :process_info, [Process.get(:rp), "
                                       ":monitored_by]) == {:monitored_by, [Process.get(:p)]}") == "true",
                       10, "ref's process monitored by the probe")
    # cnode's pg scope monitors the Elixir node's, as ex's scope monitors cnode's (real pg on both sides)
    ex.eval("{:ok, s} = :pg.start(:pg); Process.put(:scope, s); :ok")
    cn_pg = ":rpc.call(Process.get(:cn), :erlang, :whereis, [:pg])"
    harness.wait_until(lambda: ex.eval(f"{rpc_pi(cn_pg, ':monitors')} == {{:monitors, [{{:process, Process.get(:scope)}}]}}")
                       == "true", 10, "cnode's pg scope monitoring ex's")
    harness.wait_until(lambda: ex.eval(f":erlang.process_info(Process.get(:scope), :monitors) == "
                                       f"{{:monitors, [{{:process, {cn_pg}}}]}}") == "true", 10,
                       "ex's pg scope monitoring cnode's")
    # a queue: messages sent behind a call in which the probe sleeps stay queued (one sender: they come in order)
    ex.eval("q = Process.get(:q); send(q, {:\"$gen_call\", {self(), make_ref()}, {:sleep, 5_000}}); "
            "Enum.each(1..3, &send(q, {:queued, &1})); :ok")
    harness.wait_until(lambda: ex.eval(rpc_pi("Process.get(:q)", ":message_queue_len")) == "{:message_queue_len, 3}",
                       5, "3 messages queued at the sleeping probe")
    ex.eval("r = spawn(fn -> receive do :never -> :ok end end); Enum.each(1..3, &send(r, &1)); Process.put(:lp, r)")
    assert ex.eval(":erlang.process_info(Process.get(:lp), :message_queue_len)") == "{:message_queue_len, 3}"
    # a list of items: a list of tuples in that order, as a BEAM's
    items = "[:message_queue_len, :registered_name, :links]"
    assert ex.eval(rpc_pi("Process.get(:p)", items)) == \
        ex.eval("[message_queue_len: 0, registered_name: :intro_probe, links: [Process.get(:q)]]")
    assert ex.eval(f":rpc.call(Process.get(:ref), :erlang, :process_info, [Process.get(:rp), {items}]) |> "
                   "Keyword.keys()") == "[:message_queue_len, :registered_name, :links]"
    check(ex, f"x = {call('erpc', 'cn', 'erlang', 'process_info', '[Process.get(:p)]')}; Keyword.keyword?(x) and "
              "Enum.all?([:registered_name, :message_queue_len, :links], &Keyword.has_key?(x, &1))",
          call('erpc', 'cn', 'erlang', 'process_info', '[Process.get(:p)]'))
    # errors as a BEAM's: an unknown item, a pid of another node: badarg
    check(ex, f"match?({{:badrpc, {{:EXIT, {{:badarg, _}}}}}}, {rpc_pi('Process.get(:p)', ':no_such_item')})", "nil")
    check(ex, f"match?({{:badrpc, {{:EXIT, {{:badarg, _}}}}}}, {rpc_pi('self()', ':links')})", rpc_pi("self()", ":links"))
    check(ex, "match?({:badrpc, {:EXIT, {:badarg, _}}}, :rpc.call(Process.get(:ref), :erlang, :process_info, "
              "[self(), :links]))", "nil")
    # a dead pid: undefined, for one item, a list and process_info/1
    assert ex.eval("GenServer.call(Process.get(:p), :stop)") == ":ok"
    harness.wait_until(lambda: ex.eval(rpc_pi("Process.get(:p)", ":message_queue_len")) == ":undefined", 10,
                       "the stopped probe undefined")
    for via in ("rpc", "erpc"):
        assert ex.eval(call(via, "cn", "erlang", "process_info", f"[Process.get(:p), {items}]")) == ":undefined"
        assert ex.eval(call(via, "cn", "erlang", "process_info", "[Process.get(:p)]")) == ":undefined"
    # the link is gone with it
    harness.wait_until(lambda: ex.eval(rpc_pi("Process.get(:q)", ":links")) == "{:links, []}", 10, "q's link gone")


harness.main(globals())
