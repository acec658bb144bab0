%% The fault scenarios' driver (integration/faults/): loaded into a hidden erl node of the test bed that is never cut
%% off, it makes and reads the cluster's state on every node through erpc with a deadline, so a frozen or cut-off
%% node makes a call fail ({badrpc, _}), never hang. Nodes are given as [{Node, beam | cnode}]: a BEAM node's members
%% are processes spawned there; a cnode's are probes (cnode:spawn_probe/1) driven by gen_server calls.
-module(faults_drv).
-export([call/4, call/5, nodes_of/1, shape/1, meshed/1, ping_all/1,
         member/2, pg_join/3, pg_leave/3, pg_views/2, pg_consistent/2, pg_count/2, scope_pids/1,
         gl_register/2, gl_whereis/2, gl_names/1, gl_sync/2, gl_sync_all/2, alive/1,
         echo_loop/4, collect/2, percentile/2,
         call_loop/3, stop_loops/1, max_queue/2, burst_sink/2]).

-define(T, 5000).

call(N, M, F, A) -> call(N, M, F, A, ?T).

call(N, M, F, A, T) ->
    try erpc:call(N, M, F, A, T) catch C:R -> {badrpc, {C, R}} end.

names(Nodes) -> [N || {N, _} <- Nodes].

%% The visible connections of N among Nodes (which are all cluster nodes), sorted; {badrpc, _} if unreachable.
nodes_of(N) ->
    case call(N, erlang, nodes, []) of
        L when is_list(L) -> lists:sort(L);
        E -> E
    end.

shape(Nodes) -> [{N, nodes_of(N)} || N <- names(Nodes)].

%% true when the connection graph among Nodes is the given partition: each node sees exactly the rest of its side.
meshed(Sides) ->
    lists:all(fun(S) ->
                  Want = lists:sort(names(S)),
                  lists:all(fun(N) -> nodes_of(N) =:= Want -- [N] end, Want)
              end, Sides).

%% Dials every pair of Nodes that is not connected, in the background (a dial to an unreachable node takes up to
%% net_setuptime): what an operator's reconnect (libcluster and the like) does after a heal. A BEAM node runs
%% net_adm:ping; a cnode gets a probe that calls {net_kernel, Other} (auto-connect), then stops.
ping_all(Nodes) ->
    [spawn(fun() -> dial(X, K, Y) end)
     || {X, K} <- Nodes, {Y, _} <- Nodes, X =/= Y, not is_connected(X, Y)],
    ok.

is_connected(X, Y) ->
    case nodes_of(X) of
        L when is_list(L) -> lists:member(Y, L);
        _ -> true  % unreachable from here: nothing to do
    end.

dial(X, beam, Y) -> call(X, net_adm, ping, [Y], 10000);
dial(X, cnode, Y) ->
    case call(X, cnode, spawn_probe, [self()]) of
        P when is_pid(P) ->
            catch gen_server:call(P, {call, {net_kernel, Y}, {is_auth, X}, 8000}, 10000),
            catch gen_server:call(P, stop, 2000);
        _ -> error
    end.

%% A process that can be a member or a name's owner, on node N.
member(N, beam) -> spawn(N, timer, sleep, [infinity]);
member(N, cnode) -> call(N, cnode, spawn_probe, [self()]).

pg_join({N, K}, G, P) when is_pid(P) ->
    case K of
        beam -> call(N, pg, join, [pg, G, P]);
        cnode -> catch gen_server:call(P, {pg_join, pg, G}, ?T)
    end;
pg_join({N, K}, G, new) ->
    P = member(N, K),
    ok = pg_join({N, K}, G, P),
    P.

pg_leave({N, K}, G, P) ->
    case K of
        beam -> call(N, pg, leave, [pg, G, P]);
        cnode -> catch gen_server:call(P, {pg_leave, pg, G}, ?T)
    end.

view(N, F, Groups) ->
    [{G, case call(N, pg, F, [pg, G]) of L when is_list(L) -> lists:sort(L); E -> E end} || G <- Groups].

pg_views(Nodes, Groups) -> [{N, view(N, get_members, Groups)} || N <- names(Nodes)].

%% ok when every node's view of every group is its own members plus those of the nodes it is connected to (pg's
%% promise for connected scopes, whatever the connection graph); else the first difference.
pg_consistent(Nodes, Groups) ->
    Ns = names(Nodes),
    Local = maps:from_list([{N, view(N, get_local_members, Groups)} || N <- Ns]),
    check_views(Ns, Ns, Groups, Local).

check_views([], _, _, _) -> ok;
check_views([N | Rest], Ns, Groups, Local) ->
    case nodes_of(N) of
        L when is_list(L) ->
            Peers = [N | [X || X <- L, lists:member(X, Ns)]],
            Want = [{G, lists:sort(lists:append([proplists:get_value(G, maps:get(X, Local)) || X <- Peers]))}
                    || G <- Groups],
            case view(N, get_members, Groups) of
                Want -> check_views(Rest, Ns, Groups, Local);
                Got -> {differs, N, [{G, length(W), length(case lists:keyfind(G, 1, Got) of
                                                              {_, V} when is_list(V) -> V; _ -> [] end)}
                                     || {G, W} <- Want]}
            end;
        E -> {unreachable, N, E}
    end.

%% Memberships on the cluster as a whole (local members of every node).
pg_count(Nodes, Groups) ->
    lists:sum([length(L) || {N, _} <- Nodes, {_, L} <- view(N, get_local_members, Groups), is_list(L)]).

scope_pids(Nodes) -> [{N, call(N, erlang, whereis, [pg])} || N <- names(Nodes)].

%% Registers Name for a new process on N (global:register_name/2 run there): {Result, Pid}.
gl_register({N, K}, Name) ->
    P = member(N, K),
    {call(N, global, register_name, [Name, P], 30000), P}.

gl_whereis(Nodes, Name) -> [{N, call(N, global, whereis_name, [Name])} || N <- names(Nodes)].

gl_names(Nodes) ->
    [{N, case call(N, global, registered_names, []) of L when is_list(L) -> lists:sort(L); E -> E end}
     || N <- names(Nodes)].

%% global:sync() on N with a deadline: {ok, Ms} or {hang, Ms}.
gl_sync(N, Ms) ->
    T0 = erlang:monotonic_time(millisecond),
    R = call(N, global, sync, [], Ms),
    T = erlang:monotonic_time(millisecond) - T0,
    case R of
        ok -> {ok, T};
        {badrpc, {error, {erpc, timeout}}} -> {hang, T};
        E -> {E, T}
    end.

%% gl_sync/2 on every node at once: {ok, LongestMs} or {failed, [{Node, Result}]}.
gl_sync_all(Nodes, Ms) ->
    Refs = [{N, spawn_monitor(fun() -> exit({sync, gl_sync(N, Ms)}) end)} || N <- names(Nodes)],
    Rs = [{N, receive {'DOWN', R, process, P, {sync, X}} -> X; {'DOWN', R, process, P, E} -> {crash, E} end}
          || {N, {P, R}} <- Refs],
    case [X || {_, {ok, _}} = X <- Rs] of
        L when length(L) =:= length(Rs) -> {ok, lists:max([0 | [T || {_, {ok, T}} <- Rs]])};
        _ -> {failed, [X || {_, R} = X <- Rs, element(1, R) =/= ok]}
    end.

alive(P) -> call(node(P), erlang, is_process_alive, [P]).

%% A process that, until Until (monotonic ms), calls Probe's {call, Dest, Payload, 10000} one after the other
%% and sends Owner {lat, Tag, [Ms]} at the end (a failed call counts as {error, R}).
echo_loop(Probe, Dest, Payload, {Tag, Owner, Until}) ->
    spawn(fun() -> Owner ! {lat, Tag, echo_loop(Probe, Dest, Payload, Until, [])} end).

echo_loop(Probe, Dest, Payload, Until, Acc) ->
    case erlang:monotonic_time(millisecond) >= Until of
        true -> lists:reverse(Acc);
        false ->
            T0 = erlang:monotonic_time(microsecond),
            R = (catch gen_server:call(Probe, {call, Dest, Payload, 10000}, 15000)),
            Ms = (erlang:monotonic_time(microsecond) - T0) / 1000,
            X = case R of {ok, _} -> Ms; _ -> {error, R} end,
            echo_loop(Probe, Dest, Payload, Until, [X | Acc])
    end.

%% The latencies of N loops tagged Tag: {Latencies, Errors}.
collect(Tag, N) -> collect(Tag, N, [], []).

collect(_, 0, L, E) -> {lists:sort(L), E};
collect(Tag, N, L, E) ->
    receive
        {lat, Tag, Xs} ->
            collect(Tag, N - 1, [X || X <- Xs, is_number(X)] ++ L, [X || X <- Xs, not is_number(X)] ++ E)
    after 60000 -> {lists:sort(L), [{missing, N} | E]}
    end.

percentile([], _) -> none;
percentile(L, P) -> lists:nth(max(1, min(length(L), round(P / 100 * length(L)))), L).

%% ---- overload (scen_overload.py)

%% A process that calls Fun() one call after the other (each timed; a throw or an exit counts as {error, R}) until
%% it is sent stop, then sends Owner {lat, Tag, [Ms]} (for collect/2). Returns its pid.
call_loop(Fun, Tag, Owner) ->
    spawn(fun() -> Owner ! {lat, Tag, call_loop(Fun, [])} end).

call_loop(Fun, Acc) ->
    receive stop -> lists:reverse(Acc)
    after 0 ->
        T0 = erlang:monotonic_time(microsecond),
        X = try Fun(), (erlang:monotonic_time(microsecond) - T0) / 1000 catch C:R -> {error, {C, R}} end,
        timer:sleep(20),
        call_loop(Fun, [X | Acc])
    end.

stop_loops(Pids) -> [P ! stop || P <- Pids], ok.

%% A process sampling the message queue length of the process registered as Name on cnode N every 100 ms until
%% sent {stop, From}; answers From {max_queue, Longest}.
max_queue(N, Name) ->
    spawn(fun() -> max_queue(N, Name, 0) end).

max_queue(N, Name, M) ->
    receive {stop, From} -> From ! {max_queue, M}
    after 100 ->
        L = case call(N, erlang, whereis, [Name], 2000) of
                P when is_pid(P) ->
                    case call(N, erlang, process_info, [P, message_queue_len], 2000) of
                        {message_queue_len, Q} -> Q;
                        _ -> 0
                    end;
                _ -> 0
            end,
        max_queue(N, Name, max(M, L))
    end.

%% A process on this node that takes Count messages, then sends Owner {burst_done, self(), Ms} (milliseconds from
%% its first message to its last).
burst_sink(Owner, Count) ->
    spawn(fun() ->
              receive _ -> ok end,
              T0 = erlang:monotonic_time(millisecond),
              burst_sink_loop(Count - 1),
              Owner ! {burst_done, self(), erlang:monotonic_time(millisecond) - T0}
          end).

burst_sink_loop(0) -> ok;
burst_sink_loop(N) -> receive _ -> burst_sink_loop(N - 1) end.
