"""Issue 6: cnode as a peer in :pg scopes, against OTP 25 pg on Elixir nodes (pg's own scenarios)."""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

MEMBER = "spawn(fn -> receive do :stop -> :ok end end)"


def elixir(c, name, cn_nodes, scopes=("pg",)):
    """An Elixir node running `scopes` (started unlinked, their pids kept as {:scope, S}), connected to cn_nodes."""
    ex = c.elixir(name)
    for s in scopes:
        ex.eval(f"{{:ok, p}} = :pg.start(:{s}); Process.put({{:scope, :{s}}}, p); :ok")
    for n in cn_nodes:
        assert ex.eval(f"Node.connect(:\"{n}\")") == "true"
    return ex


def probe(ex, cn, key):
    """A probe on cnode `cn` owned by ex's agent, stored as `key` in the agent's dictionary."""
    return ex.eval(f"p = :erpc.call(:\"{cn.node}\", :cnode, :spawn_probe, [self()]); Process.put(:{key}, p); "
                   "is_pid(p)") == "true"


def ex_view(ex, scope, group):
    return ex.eval(f":lists.sort(:pg.get_members(:{scope}, {group}))")


def cn_view(ex, cn, scope, group, fn="get_members"):
    return ex.eval(f":lists.sort(:erpc.call(:\"{cn.node}\", :pg, :{fn}, [:{scope}, {group}]))")


# A pid printed by the shell is relative to the printing node; its external term format is not, but for the node
# name's atom encoding, which changed with OTP 26 (UTF-8 atoms): node name + the format's id, serial and creation.
IDS = (" |> Enum.map(fn p -> b = :erlang.term_to_binary(p); Atom.to_string(node(p)) <> \":\" <> "
       "Base.encode16(binary_part(b, byte_size(b) - 12, 12)) end) |> Enum.sort() |> Enum.join(\",\")")


def ids(node, list_expr):
    """The pids of list_expr (evaluated on node) as sorted node-independent strings."""
    out = node.eval(f"({list_expr}){IDS}").strip('"')
    return sorted(x for x in out.split(",") if x)


def scope_peers(ex, scope="pg"):
    """The peers ex's scope knows, as [{node, version}]: OTP 29's data_publisher keeps the pg protocol version
    of each peer (the peers map, element 8 of its state); pg before 29 speaks only version 0 (remote, element 4)."""
    if ex.otp == "29":
        return ex.eval(f"elem(:sys.get_state(:{scope}), 7) |> Enum.map(fn {{p, {{_, v, _}}}} -> {{node(p), v}} end) "
                       "|> Enum.sort()")
    return ex.eval(f"elem(:sys.get_state(:{scope}), 3) |> Map.keys() |> Enum.map(&{{node(&1), 0}}) |> Enum.sort()")


def expect_peers(ex, nodes_versions):
    """scope_peers(ex) as it must read: nodes_versions is [(node, version spoken by an OTP 29 scope)]."""
    items = ", ".join(f"{{:\"{n}\", {v if ex.otp == '29' else 0}}}" for n, v in sorted(nodes_versions))
    return ex.eval(f"Enum.sort([{items}])")


def wait_eq(get, want, what, timeout=10):
    seen = []

    def ok():
        seen[:] = [get()]
        return seen[0] == want
    try:
        harness.wait_until(ok, timeout, what)
    except Exception:
        raise AssertionError(f"{what}: wanted {want}, last saw {seen[0] if seen else None}")


def test_join_and_leave_both_directions(c):
    c.epmd()
    cn = start_cnode(c)
    ex = elixir(c, "ex", [cn.node])
    assert probe(ex, cn, "p")
    # a probe subscribes to the whole scope and to one group (pg:monitor_scope/1, pg:monitor/2)
    assert ex.eval("{r, m} = GenServer.call(Process.get(:p), {:pg_monitor_scope, :pg}); Process.put(:sref, r); "
                   "m") == "%{}"
    assert ex.eval("{r, m} = GenServer.call(Process.get(:p), {:pg_monitor, :pg, :g}); Process.put(:gref, r); "
                   "m") == "[]"
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_join, :pg, :g})") == ":ok"
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_join, :pg, :g})") == ":ok"  # counted twice, as pg does
    want = ex.eval("p = Process.get(:p); :lists.sort([p, p])")
    wait_eq(lambda: ex_view(ex, "pg", ":g"), want, "cnode's joins on the Elixir node")
    assert ex.eval(":pg.get_local_members(:pg, :g)") == "[]"
    assert cn_view(ex, cn, "pg", ":g", "get_local_members") == want
    assert ex.eval(f":erpc.call(:\"{cn.node}\", :pg, :which_groups, [])") == "[:g]"
    assert ex.eval(f":erpc.call(:\"{cn.node}\", :pg, :get_members, [:g]) |> length()") == "2"
    # events for the probe's own joins reached the owner, through both subscriptions
    assert ex.eval("p = Process.get(:p); r = Process.get(:sref); receive do {:probe, ^p, {^r, :join, :g, [^p]}} "
                   "-> :ok after 5000 -> :none end") == ":ok"
    # an Elixir member
    ex.eval(f"m = {MEMBER}; Process.put(:m, m); :pg.join(:pg, :g, m)")
    want = ex.eval("p = Process.get(:p); :lists.sort([p, p, Process.get(:m)])")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), want, "an Elixir join on cnode")
    assert ex.eval("p = Process.get(:p); r = Process.get(:gref); m = Process.get(:m); receive do "
                   "{:probe, ^p, {^r, :join, :g, [^m]}} -> :ok after 5000 -> :none end") == ":ok"
    assert ex.eval(":pg.leave(:pg, :g, Process.get(:m))") == ":ok"
    want = ex.eval("p = Process.get(:p); [p, p]")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), want, "an Elixir leave on cnode")
    assert ex.eval("p = Process.get(:p); r = Process.get(:sref); m = Process.get(:m); receive do "
                   "{:probe, ^p, {^r, :leave, :g, [^m]}} -> :ok after 5000 -> :none end") == ":ok"
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_leave, :pg, :g})") == ":ok"
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_leave, :pg, :g})") == ":ok"
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_leave, :pg, :g})") == ":not_joined"
    wait_eq(lambda: ex_view(ex, "pg", ":g"), "[]", "cnode's leaves on the Elixir node")
    assert ex.eval(f":erpc.call(:\"{cn.node}\", :pg, :which_groups, [])") == "[]"
    assert ex.eval("Process.whereis(:pg) == Process.get({:scope, :pg})") == "true"


def test_several_scopes_and_a_missing_scope(c):
    c.epmd()
    cn = start_cnode(c, extra=["--pg-scope", "s1", "--pg-scope", "s2"])
    ex = elixir(c, "ex", [cn.node], scopes=("pg", "s1"))
    other = elixir(c, "other", [cn.node], scopes=("s2",))  # no pg, no s1 here
    assert probe(ex, cn, "p")
    for s in ("pg", "s1", "s2"):
        assert ex.eval(f"GenServer.call(Process.get(:p), {{:pg_join, :{s}, :{s}_group}})") == ":ok"
    want = ids(ex, "[Process.get(:p)]")
    wait_eq(lambda: ids(ex, ":pg.get_members(:pg, :pg_group)"), want, "scope pg on ex")
    wait_eq(lambda: ids(ex, ":pg.get_members(:s1, :s1_group)"), want, "scope s1 on ex")
    wait_eq(lambda: ids(other, ":pg.get_members(:s2, :s2_group)"), want, "scope s2 on other")
    assert ex_view(ex, "pg", ":s1_group") == "[]"  # scopes do not mix
    other.eval(f"m = {MEMBER}; Process.put(:m, m); :pg.join(:s2, :s2_group, m)")
    wait_eq(lambda: other.eval(f"p = :erpc.call(:\"{cn.node}\", :pg, :get_members, [:s2, :s2_group]); "
                               "Process.get(:m) in p"), "true", "other's s2 join on cnode")
    # a scope cnode does not run: reads give [] / badarg as pg's do, a probe join exits noproc
    assert cn_view(ex, cn, "nosuch", ":g") == "[]"
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_join, :nosuch, :g})") == "{:error, :noproc}"
    assert ex.eval(f"try do :erpc.call(:\"{cn.node}\", :pg, :which_groups, [:nosuch]) catch :error, "
                   "{:exception, r, _} -> r end") == ":badarg"
    for n, scopes in ((ex, ("pg", "s1")), (other, ("s2",))):
        for s in scopes:
            assert n.eval(f"Process.whereis(:{s}) == Process.get({{:scope, :{s}}})") == "true"


def test_member_exits(c):
    c.epmd()
    cn = start_cnode(c)
    ex = elixir(c, "ex", [cn.node])
    assert probe(ex, cn, "p")
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_join, :pg, :g})") == ":ok"
    ex.eval(f"m = {MEMBER}; Process.put(:m, m); :pg.join(:pg, :g, [m, m])")
    want = ex.eval("m = Process.get(:m); :lists.sort([Process.get(:p), m, m])")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), want, "both members on cnode")
    wait_eq(lambda: ex_view(ex, "pg", ":g"), want, "both members on ex")
    assert ex.eval("GenServer.call(Process.get(:p), {:exit, :bye})") == ":ok"
    want = ex.eval("m = Process.get(:m); [m, m]")
    wait_eq(lambda: ex_view(ex, "pg", ":g"), want, "the exited cnode member gone on ex")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), want, "the exited cnode member gone on cnode")
    ex.eval("send(Process.get(:m), :stop)")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), "[]", "the exited Elixir member gone on cnode")
    assert ex.eval("Process.whereis(:pg) == Process.get({:scope, :pg})") == "true"


def test_scope_restarted_on_the_elixir_side(c):
    c.epmd()
    cn = start_cnode(c)
    ex = elixir(c, "ex", [cn.node])
    assert probe(ex, cn, "p")
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_join, :pg, :g})") == ":ok"
    ex.eval(f"m = {MEMBER}; Process.put(:m, m); :pg.join(:pg, :g, m)")
    want = ex.eval(":lists.sort([Process.get(:p), Process.get(:m)])")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), want, "members on cnode")
    ex.eval("Process.exit(Process.get({:scope, :pg}), :kill)")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), ex.eval("[Process.get(:p)]"), "ex's members gone with its scope")
    ex.eval("{:ok, p} = :pg.start(:pg); Process.put({:scope, :pg}, p); :ok")
    # the new scope discovers cnode (init's broadcast) and gets the probe back in the sync
    wait_eq(lambda: ex_view(ex, "pg", ":g"), ex.eval("[Process.get(:p)]"), "cnode's member in the new scope")
    ex.eval(":pg.join(:pg, :g, Process.get(:m))")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), want, "a join in the new scope on cnode")
    assert ex.eval("Process.whereis(:pg) == Process.get({:scope, :pg})") == "true"


def test_netsplit_and_heal(c):
    c.epmd()
    cn = start_cnode(c)
    ex = elixir(c, "ex", [cn.node])
    # obs drives cnode's side while ex is cut off: hidden, so it takes part in no mesh and no pg
    obs = c.elixir("obs", hidden=True)
    assert obs.eval(f"Node.connect(:\"{cn.node}\")") == "true"
    for k in ("p", "q", "r"):
        assert probe(obs, cn, k)
    for k in ("p", "q"):
        assert obs.eval(f"GenServer.call(Process.get(:{k}), {{:pg_join, :pg, :g}})") == ":ok"
    ex.eval(f"m = {MEMBER}; Process.put(:m, m); :pg.join(:pg, :g, m); m2 = {MEMBER}; Process.put(:m2, m2); :ok")
    pids = {k: ids(obs, f"[Process.get(:{k})]")[0] for k in ("p", "q", "r")}
    pids.update({k: ids(ex, f"[Process.get(:{k})]")[0] for k in ("m", "m2")})

    def sorted_view(*keys):
        return sorted(pids[k] for k in keys)

    def cn_members():
        return ids(obs, f":erpc.call(:\"{cn.node}\", :pg, :get_members, [:pg, :g])")

    def ex_members():
        return ids(ex, ":pg.get_members(:pg, :g)")
    wait_eq(cn_members, sorted_view("p", "q", "m"), "members on cnode")
    wait_eq(ex_members, sorted_view("p", "q", "m"), "members on ex")
    # an OTP 29 scope speaks version 1 to cnode's (data_publisher's peers map)
    wait_eq(lambda: scope_peers(ex), expect_peers(ex, [(cn.node, 1)]), "ex's scope peers")
    assert ex.eval(f"Node.disconnect(:\"{cn.node}\")") == "true"
    wait_eq(ex_members, sorted_view("m"), "cnode's members gone on ex ('DOWN' noconnection)")
    wait_eq(cn_members, sorted_view("p", "q"), "ex's members gone on cnode ('DOWN' noconnection)")
    # changes on both sides while split
    ex.eval(":pg.join(:pg, :g, Process.get(:m2)); :pg.leave(:pg, :g, Process.get(:m))")
    assert obs.eval("GenServer.call(Process.get(:p), {:pg_leave, :pg, :g})") == ":ok"
    assert obs.eval("GenServer.call(Process.get(:r), {:pg_join, :pg, :g})") == ":ok"
    assert ex.eval(f":net_adm.ping(:\"{cn.node}\")") == ":pong"
    healed = sorted_view("q", "r", "m2")
    wait_eq(ex_members, healed, "ex after the heal")
    wait_eq(cn_members, healed, "cnode after the heal")
    wait_eq(lambda: scope_peers(ex), expect_peers(ex, [(cn.node, 1)]), "ex's scope peers after the heal")
    # and the version-1 path carries later changes too
    assert obs.eval("GenServer.call(Process.get(:q), {:pg_leave, :pg, :g})") == ":ok"
    ex.eval(":pg.join(:pg, :g, Process.get(:m))")
    wait_eq(ex_members, sorted_view("r", "m", "m2"), "ex after changes on both sides")
    wait_eq(cn_members, sorted_view("r", "m", "m2"), "cnode after changes on both sides")
    assert ex.eval("Process.whereis(:pg) == Process.get({:scope, :pg})") == "true"


def test_hidden_cnode(c):
    c.epmd()
    cn = start_cnode(c, hidden=True)
    ex = elixir(c, "ex", [cn.node])
    assert ex.eval("Node.list()") == "[]" and ex.eval("Node.list(:hidden)") == f"[:{cn.node}]"
    ex.eval(f"m = {MEMBER}; Process.put(:m, m); :pg.join(:pg, :g, m)")
    assert probe(ex, cn, "p")
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_join, :pg, :g})") == ":ok"
    both = ex.eval(":lists.sort([Process.get(:p), Process.get(:m)])")
    wait_eq(lambda: ex_view(ex, "pg", ":g"), both, "a hidden cnode's member on ex")
    wait_eq(lambda: cn_view(ex, cn, "pg", ":g"), both, "ex's member on the hidden cnode")
    assert ex.eval("GenServer.call(Process.get(:p), {:pg_leave, :pg, :g})") == ":ok"
    wait_eq(lambda: ex_view(ex, "pg", ":g"), ex.eval("[Process.get(:m)]"), "a hidden cnode's leave on ex")
    assert ex.eval("Process.whereis(:pg) == Process.get({:scope, :pg})") == "true"


def test_random_joins_leaves_and_exits(c):
    c.epmd()
    cn1 = start_cnode(c, sname="cn1", extra=["--pg-scope", "s1"])
    cn2 = start_cnode(c, sname="cn2", extra=["--pg-scope", "s1", "--connect", cn1.node])
    cns = [cn1, cn2]
    exs = [elixir(c, f"ex{i}", [cn1.node, cn2.node], scopes=("pg", "s1")) for i in range(3)]
    for i, ex in enumerate(exs):
        for other in exs[:i]:
            assert ex.eval(f"Node.connect(:\"{other.node}\")") == "true"
    scopes, groups = ["pg", "s1"], [":g0", ":g1", ":g2", ":g3"]
    # each Elixir agent owns 3 probes on each cnode (keys {:probe, cnode_index, k}) and 4 local members
    for ex in exs:
        for ci, cn in enumerate(cns):
            for k in range(3):
                assert probe(ex, cn, "tmp")
                ex.eval(f"Process.put({{:probe, {ci}, {k}}}, Process.get(:tmp))")
        for k in range(4):
            ex.eval(f"Process.put({{:m, {k}}}, {MEMBER})")
    rnd = random.Random(int(os.environ.get("CNODE_PG_SEED", "6")))
    for _ in range(1000):
        ex = rnd.choice(exs)
        s, g = rnd.choice(scopes), rnd.choice(groups)
        if rnd.random() < 0.5:  # a cnode member
            ci, k = rnd.randrange(2), rnd.randrange(3)
            key = f"{{:probe, {ci}, {k}}}"
            r = rnd.random()
            if r < 0.5:
                assert ex.eval(f"GenServer.call(Process.get({key}), {{:pg_join, :{s}, {g}}})") == ":ok"
            elif r < 0.93:
                assert ex.eval(f"GenServer.call(Process.get({key}), {{:pg_leave, :{s}, {g}}})") in \
                    (":ok", ":not_joined")
            else:
                assert probe(ex, cns[ci], "tmp")
                ex.eval(f"old = Process.get({key}); Process.put({key}, Process.get(:tmp)); "
                        "GenServer.call(old, {:exit, :bye})")
        else:  # an Elixir member
            key = f"{{:m, {rnd.randrange(4)}}}"
            r = rnd.random()
            if r < 0.5:
                assert ex.eval(f":pg.join(:{s}, {g}, Process.get({key}))") == ":ok"
            elif r < 0.93:
                assert ex.eval(f":pg.leave(:{s}, {g}, Process.get({key}))") in (":ok", ":not_joined")
            else:
                ex.eval(f"send(Process.get({key}), :stop); Process.put({key}, {MEMBER}); :ok")
    ident = "Enum.map(&Base.encode16(:erlang.term_to_binary(&1))) |> Enum.sort()"
    expr_ex = f"for s <- [:pg, :s1], g <- [:g0, :g1, :g2, :g3], do: {{s, g, :pg.get_members(s, g) |> {ident}}}"

    def expr_cn(cn):
        return (f"for s <- [:pg, :s1], g <- [:g0, :g1, :g2, :g3], do: {{s, g, :erpc.call(:\"{cn.node}\", "
                f":pg, :get_members, [s, g]) |> {ident}}}")

    def all_views():
        return [ex.eval(expr_ex) for ex in exs] + [exs[0].eval(expr_cn(cn)) for cn in cns]
    try:
        harness.wait_until(lambda: len(set(all_views())) == 1, 20, "every node's get_members to agree")
    except Exception:
        raise AssertionError("views differ:\n" + "\n".join(all_views()))
    total = exs[0].eval(f"for s <- [:pg, :s1], g <- [:g0, :g1, :g2, :g3], reduce: 0 do n -> n + "
                        "length(:pg.get_members(s, g)) end")
    print(f"random run: {total} memberships at the end, views agree on 5 nodes", flush=True)
    for ex in exs:
        for s in scopes:
            assert ex.eval(f"Process.whereis(:{s}) == Process.get({{:scope, :{s}}})") == "true", (ex.node, s)



def mixed_cluster(c, otps=("25", "27", "29"), members=20):
    """cnode and one Elixir node per release, each with its own members of :g. OTP 29's pg crashes an OTP 25
    scope ({discover, Pid, 1}: badarg), as OTP supports only releases two apart in one cluster: the releases connect
    through cnode and to their neighbours (25-27, 27-29) only (connect_all false: no transitive mesh)."""
    c.epmd()
    cn = start_cnode(c)
    obs = c.elixir("obs", hidden=True)  # drives cnode's probes while the others are cut off
    assert obs.eval(f"Node.connect(:\"{cn.node}\")") == "true"
    exs = {}
    for otp in otps:
        ex = c.elixir(f"ex{otp}", otp=otp, args=["--erl", "-connect_all false"])
        ex.eval("{:ok, p} = :pg.start(:pg); Process.put({:scope, :pg}, p); :ok")
        assert ex.eval(f"Node.connect(:\"{cn.node}\")") == "true"
        exs[otp] = ex
    for a, b in (("25", "27"), ("27", "29")):
        if a in exs and b in exs:
            assert exs[a].eval(f"Node.connect(:\"{exs[b].node}\")") == "true"
    if "25" in exs and "29" in exs:
        assert exs["29"].node not in exs["25"].eval("Node.list()")
    # each Elixir node: `members` members of :g; cnode: as many probes
    for ex in exs.values():
        ex.eval(f"ms = for _ <- 1..{members}, do: {MEMBER}; Process.put(:ms, ms); :pg.join(:pg, :g, ms)")
    obs.eval(f"ps = for _ <- 1..{members}, do: :erpc.call(:\"{cn.node}\", :cnode, :spawn_probe, [self()]); "
             "Process.put(:ps, ps); :ok")
    assert obs.eval("Enum.map(Process.get(:ps), &GenServer.call(&1, {:pg_join, :pg, :g})) |> Enum.uniq()") == \
        "[:ok]"
    return cn, obs, exs


def test_mixed_otp_cluster_netsplit_heal_and_restart(c):
    """cnode between OTP 25, 27 and 29 scopes: version 0 to 25 and 27, version 1 to 29, through netsplits of all
    three at once (a thundering herd of discovers and syncs at the heal) and a restart of the OTP 29 scope."""
    cn, obs, exs = mixed_cluster(c)
    neighbours = {"25": ["27"], "27": ["25", "29"], "29": ["27"]}

    def local(otp):
        return ids(exs[otp], ":pg.get_local_members(:pg, :g)")

    def cn_own():
        return ids(obs, f":erpc.call(:\"{cn.node}\", :pg, :get_local_members, [:pg, :g])")

    def want_on(otp, cn_part):  # pg is not transitive: a node sees itself, cnode and its direct neighbours
        return sorted(local(otp) + cn_part + sum((local(n) for n in neighbours[otp]), []))

    def check_views(what, cn_part):
        for otp, ex in exs.items():
            wait_eq(lambda: ids(ex, ":pg.get_members(:pg, :g)"), want_on(otp, cn_part), f"OTP {otp} {what}")
        every = sorted(cn_part + sum((local(o) for o in exs), []))
        wait_eq(lambda: ids(obs, f":erpc.call(:\"{cn.node}\", :pg, :get_members, [:pg, :g])"), every,
                f"cnode {what}")
        for otp, ex in exs.items():  # versions: 1 only between OTP 29 scopes and cnode
            want = [(cn.node, 1)] + [(exs[n].node, 0) for n in neighbours[otp]]
            wait_eq(lambda: scope_peers(ex), expect_peers(ex, want), f"OTP {otp}'s scope peers {what}")

    cn_part = cn_own()
    assert len(cn_part) == 20
    check_views("at the start", cn_part)
    # all three cut off from cnode at once; changes on every side while split
    for ex in exs.values():
        assert ex.eval(f"Node.disconnect(:\"{cn.node}\")") == "true"
    for otp, ex in exs.items():
        wait_eq(lambda: ids(ex, ":pg.get_members(:pg, :g)"), want_on(otp, []), f"OTP {otp} without cnode")
    wait_eq(lambda: ids(obs, f":erpc.call(:\"{cn.node}\", :pg, :get_members, [:pg, :g])"), cn_part,
            "cnode alone")
    assert obs.eval("Enum.map(Enum.take(Process.get(:ps), 5), &GenServer.call(&1, {:pg_leave, :pg, :g})) "
                    "|> Enum.uniq()") == "[:ok]"
    for ex in exs.values():
        ex.eval(f"[m | _] = Process.get(:ms); :pg.leave(:pg, :g, m); :pg.join(:pg, :g, {MEMBER})")
    # the heal: every node dials cnode in the same moment, each scope discovers and syncs with it
    pings = [ex.eval_async(f"Node.ping(:\"{cn.node}\")") for ex in exs.values()]
    assert [r() for r in pings] == [":pong"] * len(pings)
    cn_part = cn_own()
    assert len(cn_part) == 15
    check_views("after the heal", cn_part)
    # the OTP 29 scope restarts: its members go from cnode's view, the new scope gets cnode's members (local_data)
    ex29 = exs["29"]
    ex29.eval("Process.exit(Process.get({:scope, :pg}), :kill)")
    wait_eq(lambda: ids(obs, f":erpc.call(:\"{cn.node}\", :pg, :get_members, [:pg, :g])"),
            sorted(cn_part + local("25") + local("27")), "cnode after OTP 29's scope died")
    ex29.eval("{:ok, p} = :pg.start(:pg); Process.put({:scope, :pg}, p); :pg.join(:pg, :g, Process.get(:ms))")
    check_views("after OTP 29's scope restarted", cn_part)
    # and a cnode member's exit reaches every release in its own words
    assert obs.eval("[p | _] = Enum.drop(Process.get(:ps), 5); GenServer.call(p, {:exit, :bye})") == ":ok"
    cn_part = cn_own()
    assert len(cn_part) == 14
    check_views("after a cnode member exited", cn_part)
    for otp, ex in exs.items():
        if otp != "29":
            assert ex.eval("Process.whereis(:pg) == Process.get({:scope, :pg})") == "true", otp


if harness.OTP != "29":
    # The mixed cluster needs the OTP 27 and 29 chroots; it runs with CNODE_OTP=29 (scripts/test-otp 29).
    del test_mixed_otp_cluster_netsplit_heal_and_restart


harness.main(globals())
