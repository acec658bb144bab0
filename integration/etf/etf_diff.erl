%% The differential test's BEAM side: generates terms (etf_gen), pipes term_to_binary of each through
%% `cnode-etf roundtrip --packet 4` and checks what comes back:
%%   - binary_to_term(Out) =:= In, for every term;
%%   - Out =:= term_to_binary(In), byte for byte, unless In holds a map of more than 32 keys (their order in the
%%     encoding follows the BEAM's hash-array mapped trie, which we do not copy; then only the size must match). For
%%     compressed or minor_version input the canonical bytes are what we promise, i.e. the inner bytes of the
%%     compressed input.
%% Malformed frames are mixed into the stream: each must come back as {error, Reason, Offset} without ending it.
%%
%% run/1 returns {ok, Summary} or {fail, Report}, where Report names the seed and the first failing terms readably.
-module(etf_diff).
-export([run/1, print_check/1]).

-define(WINDOW, 256).
-define(REPLY_TIMEOUT, 30000).
-define(MAX_DETAILS, 5).
-define(MAX_SHRINK, 200).

%% Opts: #{tool := Path, seed := integer(), count := integer(), other => node(), dump_dir => Dir}; with dump_dir,
%% the input bytes of every failing frame are written there as fail-<index>.etf (readable with cnode-etf print).
run(#{tool := Tool, seed := Seed, count := Count} = Opts) ->
    rand:seed(exsss, Seed),
    T0 = erlang:monotonic_time(millisecond),
    Ctx = etf_gen:new_ctx(maps:get(other, Opts, undefined)),
    Catalogue = etf_gen:catalogue(Ctx),
    Malformed = malformed(Catalogue),
    Crafted = [{crafted, Name, Bin} || {Name, Bin} <- etf_gen:crafted()],
    Port = open_tool(Tool, ["roundtrip", "--packet", "4"]),
    Fixed = Catalogue ++ Crafted ++ Malformed,
    Source = {Fixed, Ctx, max(0, Count - length(Fixed))},
    St = pump(Port, Source, queue:new(), 0, #{dump_dir => maps:get(dump_dir, Opts, undefined), checked => 0, failures => 0, details => [], kinds => #{},
                                             bytes_in => 0, bytes_out => 0}),
    catch port_close(Port),
    Ms = erlang:monotonic_time(millisecond) - T0,
    summarise(Seed, Ms, shrink_all(Tool, St)).

open_tool(Tool, Args) ->
    open_port({spawn_executable, Tool}, [{args, Args}, {packet, 4}, binary, exit_status, use_stdio]).

%% Keeps up to WINDOW frames in flight; replies come back in order, so a queue pairs them with their inputs.
pump(Port, Source, Q, InFlight, St) ->
    case InFlight < ?WINDOW andalso next(Source) of
        {Item, Source1} ->
            port_command(Port, element(3, Item)),
            pump(Port, Source1, queue:in(Item, Q), InFlight + 1,
                 St#{bytes_in := maps:get(bytes_in, St) + byte_size(element(3, Item))});
        _ when InFlight =:= 0 ->
            St;
        _ ->
            {{value, Item}, Q1} = queue:out(Q),
            receive
                {Port, {data, Out}} ->
                    St1 = check(Item, Out, St#{bytes_out := maps:get(bytes_out, St) + byte_size(Out)}),
                    pump(Port, Source, Q1, InFlight - 1, St1#{checked := maps:get(checked, St1) + 1});
                {Port, {exit_status, Status}} ->
                    fail_whole(St, Item, io_lib:format("cnode-etf exited with status ~p while this term was in "
                                                       "flight (or one of the ~p before it)", [Status, InFlight - 1]))
            after ?REPLY_TIMEOUT ->
                fail_whole(St, Item, "no reply within 30 s")
            end
    end.

fail_whole(St, Item, Why) ->
    St#{failures := maps:get(failures, St) + 1, details := [detail(Item, <<>>, lists:flatten(Why)) | maps:get(details, St)],
        aborted => true}.

%% Items: {Index, Name, InBytes, Term, Options} for terms and {Index, {malformed, What}, InBytes, none, []}.
next({[{crafted, Name, Bin} | Rest], Ctx, N}) ->
    % The options [crafted] make the check compare with term_to_binary(binary_to_term(Bin)), not with Bin.
    {{get_index(), Name, Bin, binary_to_term(Bin), [crafted]}, {Rest, Ctx, N}};
next({[{malformed, What, Bin} | Rest], Ctx, N}) ->
    {{get_index(), {malformed, What}, Bin, none, []}, {Rest, Ctx, N}};
next({[{Name, T, O} | Rest], Ctx, N}) ->
    Idx = get_index(),
    {{Idx, Name, term_to_binary(T, O), T, O}, {Rest, Ctx, N}};
next({[], _Ctx, 0}) ->
    done;
next({[], Ctx, N}) ->
    T = etf_gen:term(Ctx),
    O = etf_gen:options(),
    {{get_index(), random, term_to_binary(T, O), T, O}, {[], Ctx, N - 1}}.

get_index() ->
    I = case get(etf_diff_index) of undefined -> 0; V -> V end,
    put(etf_diff_index, I + 1),
    I.

check({_, {malformed, _}, _, _, _} = Item, Out, St) ->
    case catch binary_to_term(Out) of
        {error, Reason, Offset} when is_atom(Reason), is_integer(Offset), Offset >= 0,
                                     Offset =< byte_size(element(3, Item)) ->
            St;
        Other ->
            record(St, Item, Out, io_lib:format("malformed input answered with ~tP, expected {error, Reason, Offset}",
                                                [Other, 8]))
    end;
check({_, _, _, T, _} = Item, Out, St) ->
    case catch binary_to_term(Out) of
        {'EXIT', _} ->
            record(St, Item, Out, "the reply does not decode with binary_to_term");
        T2 when T2 =/= T ->
            % OTP 25 cannot round-trip some terms itself: a map of more than 32 keys with a one-word external
            % reference as a key comes back =/= (its hash trie is built with another hash). There only the bytes
            % can be compared.
            case binary_to_term(term_to_binary(T)) =:= T of
                true -> record(St, Item, Out, io_lib:format("binary_to_term(Out) =/= In; got ~tP", [T2, 12]));
                false -> compare_bytes(Item, Out, St#{beam_quirks => maps:get(beam_quirks, St, 0) + 1})
            end;
        _ ->
            compare_bytes(Item, Out, St)
    end.

compare_bytes({_, _, In, T, O} = Item, Out, St) ->
    Expected = case O of [] -> In; _ -> term_to_binary(T) end,
    case Out =:= Expected of
        true -> St;
        false ->
            case has_big_map(T) of
                true when byte_size(Out) =:= byte_size(Expected) -> St;
                true -> record(St, Item, Out, io_lib:format("size ~p, term_to_binary gives ~p (big map)",
                                                            [byte_size(Out), byte_size(Expected)]));
                false -> record(St, Item, Out, byte_diff(Expected, Out))
            end
    end.

byte_diff(Expected, Out) ->
    Off = first_diff(Expected, Out, 0),
    io_lib:format("bytes differ from term_to_binary(In) at offset ~p (sizes ~p/~p): expected ~w, got ~w",
                  [Off, byte_size(Expected), byte_size(Out), window(Expected, Off), window(Out, Off)]).

first_diff(<<X, A/binary>>, <<X, B/binary>>, N) -> first_diff(A, B, N + 1);
first_diff(_, _, N) -> N.

window(Bin, Off) ->
    Start = max(0, Off - 8),
    binary:part(Bin, Start, min(24, byte_size(Bin) - Start)).

record(St, {Idx, Name, _, T, O} = Item, Out, Why) ->
    Kind = case Name of random -> kind(T); {malformed, W} -> {malformed, W}; _ -> Name end,
    Kinds = maps:update_with(Kind, fun(N) -> N + 1 end, 1, maps:get(kinds, St)),
    Details = case length(maps:get(details, St)) < ?MAX_DETAILS of
                  true -> [detail(Item, Out, lists:flatten(Why)) | maps:get(details, St)];
                  false -> maps:get(details, St)
              end,
    _ = O,
    case maps:get(dump_dir, St) of
        undefined -> ok;
        Dir -> file:write_file(filename:join(Dir, io_lib:format("fail-~7..0B.etf", [Idx])), element(3, Item))
    end,
    Shrink0 = maps:get(shrink, St, []),
    Shrink = case T =/= none andalso length(Shrink0) < ?MAX_SHRINK of
                 true -> [T | Shrink0];
                 false -> Shrink0
             end,
    St#{failures := maps:get(failures, St) + 1, kinds := Kinds, details := Details, shrink => Shrink}.

detail({Idx, Name, In, T, O}, Out, Why) ->
    lists:flatten(io_lib:format("term #~p (~tp, term_to_binary options ~p): ~ts~n    term: ~tP~n    in  (~p bytes): ~w~n"
                                "    out (~p bytes): ~w",
                                [Idx, Name, O, Why, T, 25, byte_size(In), head(In), byte_size(Out), head(Out)])).

head(B) when byte_size(B) > 96 -> <<(binary:part(B, 0, 96))/binary, "...">>;
head(B) -> B.

kind(T) when is_integer(T) -> integer;
kind(T) when is_float(T) -> float;
kind(T) when is_atom(T) -> atom;
kind(T) when is_bitstring(T), not is_binary(T) -> bitstring;
kind(T) when is_binary(T) -> binary;
kind(T) when is_tuple(T) -> tuple;
kind(T) when is_list(T) -> list;
kind(T) when is_map(T) -> map;
kind(T) when is_function(T) -> 'fun';
kind(T) when is_pid(T) -> pid;
kind(T) when is_port(T) -> port;
kind(T) when is_reference(T) -> reference.

%% Iterative walk: catalogue terms nest a million deep.
has_big_map(T) -> big_map_in([T]).

big_map_in([]) -> false;
big_map_in([T | Rest]) when is_map(T) ->
    map_size(T) > 32 orelse big_map_in(maps:keys(T) ++ maps:values(T) ++ Rest);
big_map_in([T | Rest]) when is_tuple(T) -> big_map_in(tuple_to_list(T) ++ Rest);
big_map_in([[H | Tl] | Rest]) -> big_map_in([H, Tl | Rest]);
big_map_in([T | Rest]) when is_function(T) ->
    {env, Env} = erlang:fun_info(T, env),
    big_map_in(Env ++ Rest);
big_map_in([_ | Rest]) -> big_map_in(Rest).

%% Malformed frames: truncations of catalogue encodings at a random point and a few classic breakages.
malformed(Catalogue) ->
    Small = [term_to_binary(T, O) || {_, T, O} <- Catalogue, erts_debug:flat_size(T) < 2000],
    Cut = [{malformed, truncated, binary:part(B, 0, rand:uniform(byte_size(B)) - 1)}
           || B <- lists:sublist(Small, 200), byte_size(B) > 1],
    Cut ++ [{malformed, empty, <<>>}, {malformed, version, <<130, 97, 1>>}, {malformed, tag, <<131, 200>>},
            {malformed, trailing, <<131, 106, 0>>}, {malformed, bits, <<131, 77, 0, 0, 0, 1, 0, 0>>},
            {malformed, bits9, <<131, 77, 0, 0, 0, 1, 9, 0>>}, {malformed, ref0, <<131, 90, 0, 0, 115, 1, $a, 0:32>>},
            {malformed, atom, <<131, 119, 2, 16#c3, 16#28>>},
            {malformed, dup_map, <<131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3>>},
            {malformed, bomb, <<131, 80, 255, 255, 255, 255, 120, 156, 3, 0, 0, 0, 0, 1>>}].

%% The smallest part of each of the first failing terms that still fails on its own (a subterm, a tuple element, a
%% map key or value, a list head or tail): what a bug report wants to show.
shrink_all(Tool, #{shrink := Terms} = St) when Terms =/= [] ->
    Port = open_tool(Tool, ["roundtrip", "--packet", "4"]),
    Small = [shrink(Port, T) || T <- lists:reverse(Terms)],
    catch port_close(Port),
    St#{smallest => lists:sublist(lists:usort(Small), 2 * ?MAX_DETAILS)};
shrink_all(_, St) ->
    St.

shrink(Port, T) ->
    case [S || S <- parts(T), erts_debug:flat_size(S) < 100000, fails(Port, S)] of
        [S | _] -> shrink(Port, S);
        [] -> T
    end.

parts(T) when is_tuple(T) -> tuple_to_list(T);
parts([H | Tl]) -> [H, Tl];
parts(T) when is_map(T) -> maps:keys(T) ++ maps:values(T);
parts(T) when is_function(T) -> element(2, erlang:fun_info(T, env));
parts(_) -> [].

fails(Port, T) ->
    B = term_to_binary(T),
    port_command(Port, B),
    receive
        {Port, {data, Out}} ->
            ((catch binary_to_term(Out)) =/= T andalso binary_to_term(B) =:= T)
                orelse (Out =/= B andalso not has_big_map(T))
    after ?REPLY_TIMEOUT -> true
    end.

summarise(Seed, Ms, #{failures := 0} = St) ->
    {ok, lists:flatten(io_lib:format("seed ~p: ~p frames checked (~p bytes in, ~p out) in ~p ms; ~p terms the BEAM "
                                     "cannot round-trip itself were compared by bytes only",
                                     [Seed, maps:get(checked, St), maps:get(bytes_in, St), maps:get(bytes_out, St),
                                      Ms, maps:get(beam_quirks, St, 0)]))};
summarise(Seed, Ms, St) ->
    {fail, lists:flatten(
             [io_lib:format("seed ~p: ~p failures in ~p frames (~p ms)~s; failures by kind: ~0tp~n",
                            [Seed, maps:get(failures, St), maps:get(checked, St), Ms,
                             case maps:is_key(aborted, St) of true -> ", ABORTED"; false -> "" end,
                             maps:get(kinds, St)]),
              [[D, "\n"] || D <- lists:reverse(maps:get(details, St))],
              [io_lib:format("distinct smallest failing parts of the first failing terms (term, then term_to_binary):~n", []) || maps:is_key(smallest, St)],
              [io_lib:format("    ~tP~n      ~w~n", [S, 12, head(term_to_binary(S))]) || S <- maps:get(smallest, St, [])]])}.

%% ---------------------------------------------------------------------------------------------------------------
%% print -> erl_parse: printable terms (no pids, ports, refs or funs) through `cnode-etf print --packet 4`; the text
%% must parse with erl_parse:parse_term to a term =:= the input.
print_check(#{tool := Tool, seed := Seed, count := Count} = Opts) ->
    rand:seed(exsss, Seed),
    Ctx = etf_gen:new_ctx(maps:get(other, Opts, undefined)),
    % erl_scan takes seconds for a few megabytes of text: the huge catalogue terms are the roundtrip's business.
    Terms = [T || {_, T, _} <- etf_gen:catalogue(Ctx), erts_debug:flat_size(T) < 200000,
                  byte_size(term_to_binary(T)) < 65536, printable(T)]
        ++ lists:filter(fun printable/1, [etf_gen:term(Ctx) || _ <- lists:seq(1, Count)]),
    Port = open_tool(Tool, ["print", "--packet", "4"]),
    {N, Fails} = lists:foldl(fun(T, {I, F}) -> {I + 1, print_one(Port, T, F)} end, {0, []}, Terms),
    catch port_close(Port),
    case Fails of
        [] -> {ok, lists:flatten(io_lib:format("seed ~p: ~p printed terms parsed back", [Seed, N]))};
        _ -> {fail, lists:flatten(io_lib:format("seed ~p: ~p of ~p printed terms did not parse back; first:~n~ts",
                                                [Seed, length(Fails), N, lists:join("\n", lists:sublist(lists:reverse(Fails), ?MAX_DETAILS))]))}
    end.

print_one(Port, T, Fails) ->
    port_command(Port, term_to_binary(T)),
    receive
        {Port, {data, Text}} ->
            case parse(Text) of
                {ok, T2} when T2 =:= T -> Fails;
                Other -> [lists:flatten(io_lib:format("  term ~tP~n  printed ~ts~n  parsed ~tP",
                                                      [T, 20, head(Text), Other, 20])) | Fails]
            end;
        {Port, {exit_status, S}} -> exit({print_tool_exited, S, T})
    after ?REPLY_TIMEOUT -> exit({print_timeout, T})
    end.

parse(Text) ->
    case catch erl_scan:string(unicode:characters_to_list(<<Text/binary, ".">>)) of
        {ok, Toks, _} -> catch erl_parse:parse_term(Toks);
        Other -> {scan_error, Other}
    end.

printable(T) -> printable_in([T]).

printable_in([]) -> true;
printable_in([T | _]) when is_pid(T); is_port(T); is_reference(T); is_function(T) -> false;
printable_in([T | R]) when is_map(T) -> printable_in(maps:keys(T) ++ maps:values(T) ++ R);
printable_in([T | R]) when is_tuple(T) -> printable_in(tuple_to_list(T) ++ R);
printable_in([[H | Tl] | R]) -> printable_in([H, Tl | R]);
printable_in([_ | R]) -> printable_in(R).
