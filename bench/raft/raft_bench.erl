%% The peer of bench_raft.py: a ra state machine (a KV map) and the callers that measure both sides.
%%
%% On each ra member: raft_bench:start_ra(Dir) starts ra (2.2, from Debian's rabbitmq-server) with its default
%% system's WAL and segments in Dir, fsync on (wal_sync_method datasync, ra's default, set explicitly);
%% raft_bench:start_cluster(Nodes) on one of them starts the group kvbench with this module as its machine.
%% On the driver: raft_bench:run(Kind, Target, Callers, Millis, WarmMillis) runs Callers processes, each making
%% one request after the other for WarmMillis (not counted) and then Millis, and returns
%% {RequestsPerSecond, P50Us, P99Us, Errors, Count}. Kind: cnode_put | cnode_get (gen_server:call({kv, Node}, ...),
%% what GenServer.call does) | cnode_local ({get, K, local}: no quorum, the floor of a call) | ra_put (ra:process_command) | ra_get (ra:consistent_query).
-module(raft_bench).
-behaviour(ra_machine).

-export([init/1, apply/3]).
-export([start_ra/1, start_cluster/1, ra_leader/1, run/5, run/6, value/0]).

%% --- the ra machine ------------------------------------------------------------------------------------------------

init(_Config) -> #{}.

apply(_Meta, {put, K, V}, State) -> {State#{K => V}, ok};
apply(_Meta, _Other, State) -> {State, {error, badarg}}.

%% --- ra members ----------------------------------------------------------------------------------------------------

start_ra(Dir) ->
    ok = application:load(ra),
    ok = application:set_env(ra, wal_sync_method, datasync),
    case ra:start_in(Dir) of
        {ok, _} -> ok;
        ok -> ok
    end,
    Cfg = ra_system:fetch(default),
    {maps:get(wal_sync_method, Cfg), maps:get(wal_data_dir, Cfg)}.

start_cluster(Nodes) ->
    Ids = [{kvbench, N} || N <- Nodes],
    {ok, Started, []} = ra:start_cluster(default, kvbench, {module, ?MODULE, #{}}, Ids),
    length(Started).

%% The leader as the driver sees it, or none.
ra_leader(Node) ->
    case catch ra:members({kvbench, Node}, 1000) of
        {ok, _Members, {_, LeaderNode}} -> LeaderNode;
        _ -> none
    end.

%% --- the callers ---------------------------------------------------------------------------------------------------

value() -> binary:copy(<<"v">>, 256).

run(Kind, Target, Callers, Millis, WarmMillis) -> run(Kind, Target, Callers, Millis, WarmMillis, none).

%% With a File, each counted request is also a line "D <sent ns> <answered ns> <caller> <seq>" in it
%% (os:perf_counter: CLOCK_MONOTONIC, the clock of cnode's --raft-trace) and a put's value begins with
%% <<Caller:32, Seq:32>>, which the leader's trace records with the proposal (bench/raft/trace_report.py matches the two).
run(Kind, Target, Callers, Millis, WarmMillis, File) ->
    put(trace, File =/= none),
    V = value(),
    Parent = self(),
    T0 = erlang:monotonic_time(microsecond),
    Start = T0 + WarmMillis * 1000,
    End = Start + Millis * 1000,
    Traced = File =/= none,
    Pids = [spawn_link(fun() -> put(trace, Traced),
                                Parent ! {self(), caller(Kind, Target, V, I, Start, End, 0, [], 0)} end)
            || I <- lists:seq(1, Callers)],
    Results0 = [receive {P, R} -> R end || P <- Pids],
    Results = case Traced of
        false -> Results0;
        true ->
            ok = file:write_file(File, [io_lib:format("D ~b ~b ~b ~b~n", [S0, S1, C, Q])
                                        || {L, _} <- Results0, {_, S0, S1, C, Q} <- L]),
            [{[D || {D, _, _, _, _} <- L], E} || {L, E} <- Results0]
    end,
    Lats = lists:sort(lists:append([L || {L, _} <- Results])),
    Errors = lists:sum([E || {_, E} <- Results]),
    N = length(Lats),
    {N * 1000 div Millis, pct(Lats, N, 50), pct(Lats, N, 99), Errors, N}.

pct(_, 0, _) -> 0;
pct(Sorted, N, P) -> lists:nth(max(1, (N * P + 99) div 100), Sorted).

caller(Kind, Target, V, I, Start, End, Seq, Acc, Err) ->
    Now = erlang:monotonic_time(microsecond),
    case Now >= End of
        true -> {Acc, Err};
        false ->
            %% keys {Caller, 0..63}: reads (after the writes) find the keys written by the first 16 callers
            Traced = get(trace) =:= true,
            K = {(I - 1) rem 16 + 1, Seq rem 64},
            V1 = case Traced of
                     true -> <<I:32, Seq:32, (binary:part(V, 8, byte_size(V) - 8))/binary>>;
                     false -> V
                 end,
            P0 = case Traced of true -> os:perf_counter(nanosecond); false -> 0 end,
            Ok = ok(Kind, op(Kind, Target, K, V1)),
            T1 = erlang:monotonic_time(microsecond),
            Sample = case Traced of
                         true -> {T1 - Now, P0, os:perf_counter(nanosecond), I, Seq};
                         false -> T1 - Now
                     end,
            {Acc2, Err2} =
                case {Now >= Start, Ok} of
                    {true, true} -> {[Sample | Acc], Err};
                    {true, false} -> {Acc, Err + 1};
                    {false, _} -> {Acc, Err}
                end,
            caller(Kind, Target, V, I, Start, End, Seq + 1, Acc2, Err2)
    end.

op(Kind, Target, K, V) ->
    try
        case Kind of
            cnode_put -> gen_server:call({kv, Target}, {put, K, V}, 10000);
            cnode_get -> gen_server:call({kv, Target}, {get, K}, 10000);
            cnode_local -> gen_server:call({kv, Target}, {get, K, local}, 10000);
            ra_put -> ra:process_command(Target, {put, K, V}, 10000);
            ra_get -> ra:consistent_query(Target, fun(S) -> maps:get(K, S, not_found) end, 10000)
        end
    catch
        exit:R -> {exit, R}
    end.

ok(cnode_put, ok) -> true;
ok(cnode_get, {ok, _}) -> true;
ok(cnode_get, not_found) -> true;
ok(cnode_local, {ok, _}) -> true;
ok(cnode_local, not_found) -> true;
ok(ra_put, {ok, ok, _}) -> true;
ok(ra_get, {ok, _, _}) -> true;
ok(_, _) -> false.
