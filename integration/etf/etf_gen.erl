%% Random Erlang terms for the differential test of cnode's ETF codec, and a catalogue of edge cases that covers
%% every tag of erl_ext_dist at least once per run.
%%
%% Everything is drawn from the process's rand state (seeded by the caller), so a seed reproduces a run. Atoms,
%% pids, ports, refs and funs come from pools made once per run: fresh random atoms for every term would fill the
%% atom tables on both sides long before 100 000 terms.
-module(etf_gen).
-export([new_ctx/1, term/1, catalogue/1, crafted/0, options/0, make_fun/1, make_fun2/2, remote_stuff/0]).

%% ---------------------------------------------------------------------------------------------------------------
%% Context: pools of things that cannot be made out of thin air.

%% Other: a connected node whose pids, ports, refs and funs we borrow, or undefined.
new_ctx(Other) ->
    Atoms = atom_pool(),
    Nodes = [random_node_name(I) || I <- lists:seq(1, 12)],
    Local = [self(), spawn(fun() -> ok end), whereis(init), whereis(erl_prim_loader)],
    Remote = case Other of
                 undefined -> #{pids => [], ports => [], refs => [], funs => []};
                 _ -> rpc:call(Other, ?MODULE, remote_stuff, [])
             end,
    Pids = Local ++ maps:get(pids, Remote) ++ [crafted_pid(N) || N <- Nodes, _ <- [1, 2, 3]],
    Ports = lists:sublist(erlang:ports(), 3) ++ maps:get(ports, Remote)
        ++ [crafted_port(N) || N <- Nodes, _ <- [1, 2, 3]],
    Refs = [make_ref(), make_ref(), erlang:alias(), erlang:monitor(process, self())] ++ maps:get(refs, Remote)
        ++ [crafted_ref(N, Len) || N <- Nodes, Len <- [2, 3, 4, 5]],
    #{atoms => list_to_tuple(Atoms), pids => list_to_tuple(Pids), ports => list_to_tuple(Ports),
      refs => list_to_tuple(Refs), remote_funs => maps:get(funs, Remote)}.

%% Run on the other node through rpc: things that belong to it.
remote_stuff() ->
    Pids = [self(), whereis(init), spawn(fun() -> ok end)],
    Ports = lists:sublist(erlang:ports(), 2),
    Refs = [make_ref(), erlang:alias(), make_ref()],
    Funs = [make_fun({remote, self()}), make_fun2(1, <<"two">>), fun erlang:node/0],
    #{pids => Pids, ports => Ports, refs => Refs, funs => Funs}.

%% Local funs with free variables, compiled in this module (erl_eval funs would all share one code index).
make_fun(Env) -> fun(X) -> {X, Env} end.
make_fun2(A, B) -> fun(X, Y) -> [X, Y, A | B] end.
make_fun0() -> fun() -> ok end.

atom_pool() ->
    Fixed = ['', true, false, undefined, ok, error, nonode@nohost, 'hello world', 'ÿ', 'é', 'x@y',
             list_to_atom(lists:duplicate(255, $a)),
             list_to_atom(lists:duplicate(255, 255)),            % 255 Latin-1 bytes: still ATOM_EXT
             list_to_atom(lists:duplicate(255, 16#3b1)),         % 255 two-byte code points
             list_to_atom(lists:duplicate(255, 16#20ac)),        % 255 three-byte code points
             list_to_atom(lists:duplicate(255, 16#1f600)),       % 255 four-byte code points: 1020 bytes
             list_to_atom([16#1f600]), list_to_atom([16#20ac]), list_to_atom([16#3b1]), list_to_atom([0])],
    Fixed ++ [list_to_atom(random_chars(rand:uniform(20) - 1)) || _ <- lists:seq(1, 400)].

random_node_name(I) ->
    Host = case I rem 3 of 0 -> "localhost"; 1 -> "host.example.org"; 2 -> "h" end,
    Name = case I rem 4 of
               0 -> "n" ++ integer_to_list(I);
               1 -> [16#e9, $l, $i | integer_to_list(I)];
               2 -> [16#4e2d, 16#6587 | integer_to_list(I)];
               3 -> lists:duplicate(40, $x) ++ integer_to_list(I)
           end,
    list_to_atom(Name ++ "@" ++ Host).

random_chars(N) -> [random_char() || _ <- lists:seq(1, N)].

random_char() ->
    case rand:uniform(10) of
        1 -> rand:uniform(256) - 1;                  % Latin-1 including NUL and control characters
        2 -> 16#80 + rand:uniform(16#780) - 1;       % two-byte UTF-8
        3 -> no_surrogate(16#800 + rand:uniform(16#F800) - 1);
        4 -> 16#10000 + rand:uniform(16#100000) - 1; % four-byte UTF-8
        _ -> $a + rand:uniform(26) - 1
    end.

no_surrogate(C) when C >= 16#D800, C =< 16#DFFF -> C - 16#1000;
no_surrogate(C) -> C.

atom_ext(A) -> <<131, B/binary>> = term_to_binary(A, [{minor_version, 2}]), B.

creation() ->
    case rand:uniform(4) of
        1 -> 0;
        2 -> 16#FFFFFFFF;
        _ -> rand:uniform(16#FFFFFFFF)
    end.

u32() ->
    case rand:uniform(4) of
        1 -> rand:uniform(16#FFFFFFFF + 1) - 1;
        2 -> 16#FFFFFFF + rand:uniform(3) - 2;       % around 2^28, where OTP switches port encodings
        _ -> rand:uniform(1000)
    end.

crafted_pid(Node) -> binary_to_term(<<131, 88, (atom_ext(Node))/binary, (u32()):32, (u32()):32, (creation()):32>>).

crafted_port(Node) ->
    case rand:uniform(2) of
        1 -> binary_to_term(<<131, 89, (atom_ext(Node))/binary, (u32()):32, (creation()):32>>);
        2 -> binary_to_term(<<131, 120, (atom_ext(Node))/binary, (rand:uniform(1 bsl 64) - 1):64, (creation()):32>>)
    end.

crafted_ref(Node, Len) ->
    Ids = << <<(u32()):32>> || _ <- lists:seq(1, Len) >>,
    binary_to_term(<<131, 90, Len:16, (atom_ext(Node))/binary, (creation()):32, Ids/binary>>).

pick(Tuple) -> element(rand:uniform(tuple_size(Tuple)), Tuple).

%% ---------------------------------------------------------------------------------------------------------------
%% Random terms.

%% A size budget (roughly the number of leaves) keeps the average term small while the shapes stay varied; a
%% container splits its budget among its children.
term(Ctx) ->
    Budget = case rand:uniform(50) of
                 1 -> 50 + rand:uniform(300);
                 _ -> rand:uniform(12)
             end,
    gen(Ctx, Budget).

gen(Ctx, B) when B =< 1 -> leaf(Ctx);
gen(Ctx, B) ->
    case rand:uniform(16) of
        N when N =< 4 -> leaf(Ctx);
        5 -> tuple(Ctx, B, rand:uniform(min(B, 8)) - 1);
        6 -> list(Ctx, B);
        7 -> improper(Ctx, B);
        8 -> map(Ctx, B, rand:uniform(min(B, 12)) - 1);
        9 -> case rand:uniform(10) of 1 -> map(Ctx, 1, 33 + rand:uniform(40)); _ -> map(Ctx, B, min(B, 32)) end;
        10 -> fn(Ctx, B);
        11 -> string();
        12 -> case rand:uniform(50) of 1 -> tuple(Ctx, 1, 256 + rand:uniform(100)); _ -> tuple(Ctx, B, 2) end;
        13 -> [gen(Ctx, B - 1)];
        14 -> {gen(Ctx, B - 1), gen(Ctx, B - 1)};
        15 -> [gen(Ctx, B div 2) | gen(Ctx, B div 2)];
        _ -> tuple(Ctx, B, 3)
    end.

leaf(Ctx) ->
    case rand:uniform(16) of
        1 -> small_int();
        2 -> int32();
        3 -> boundary_int();
        4 -> big_int();
        5 -> float();
        6 -> pick(maps:get(atoms, Ctx));
        7 -> pick(maps:get(atoms, Ctx));
        8 -> binary();
        9 -> bitstring();
        10 -> pick(maps:get(pids, Ctx));
        11 -> pick(maps:get(ports, Ctx));
        12 -> pick(maps:get(refs, Ctx));
        13 -> [];
        14 -> string();
        15 -> export_fun(Ctx);
        16 -> small_int()
    end.

small_int() -> rand:uniform(256) - 1.
int32() -> rand:uniform(1 bsl 32) - (1 bsl 31) - 1.

boundary_int() ->
    Bits = element(rand:uniform(8), {27, 28, 31, 32, 59, 60, 63, 64}),
    Sign = element(rand:uniform(2), {1, -1}),
    Sign * ((1 bsl Bits) + rand:uniform(5) - 3).

big_int() ->
    Digits = case rand:uniform(500) of
                 1 -> rand:uniform(10000);
                 N when N < 20 -> rand:uniform(1000);
                 _ -> rand:uniform(60)
             end,
    Sign = element(rand:uniform(2), {1, -1}),
    Sign * rand_digits(Digits).

%% A random integer of exactly N decimal digits, drawn 18 digits at a time.
rand_digits(N) -> rand_digits(N - 1, rand:uniform(9)).

rand_digits(0, Acc) -> Acc;
rand_digits(N, Acc) ->
    K = min(N, 18),
    P = pow10(K),
    rand_digits(N - K, Acc * P + rand:uniform(P) - 1).

pow10(K) -> pow10(K, 1).
pow10(0, Acc) -> Acc;
pow10(K, Acc) -> pow10(K - 1, Acc * 10).

float() ->
    case rand:uniform(6) of
        1 -> special_float();
        2 -> rand:uniform() * 1000;
        3 -> float(int32());
        _ -> random_bits_float()
    end.

random_bits_float() ->
    <<F:64/float>> = <<(rand:uniform(2) - 1):1, (rand:uniform(2047) - 1):11, (rand:uniform(1 bsl 52) - 1):52>>,
    F.

special_float() ->
    pick(list_to_tuple(special_floats())).

special_floats() ->
    <<NegZero:64/float>> = <<1:1, 0:63>>,
    <<MinSub:64/float>> = <<0:1, 0:11, 1:52>>,
    <<MaxSub:64/float>> = <<0:1, 0:11, -1:52>>,
    <<MinNorm:64/float>> = <<0:1, 1:11, 0:52>>,
    <<Max:64/float>> = <<0:1, 2046:11, -1:52>>,
    [0.0, NegZero, MinSub, -MinSub, MaxSub, MinNorm, -MinNorm, Max, -Max, 1.0, -1.0, 0.1, 1.0e15, 1.0e16, 1.0e-5,
     123456789012345680.0, 9007199254740993.0, 2.5, 1.0e300, 1.0e-300].

binary() ->
    N = case rand:uniform(30) of
            1 -> 64 + rand:uniform(2000);
            2 -> 60 + rand:uniform(8);                % around the decoder's share-instead-of-copy threshold
            _ -> rand:uniform(40) - 1
        end,
    rand:bytes(N).

bitstring() ->
    Bits = rand:uniform(7),
    <<(rand:bytes(rand:uniform(10) - 1))/binary, (rand:uniform(1 bsl Bits) - 1):Bits>>.

string() ->
    case rand:uniform(6) of
        1 -> [rand:uniform(16#10000) - 1 || _ <- lists:seq(1, rand:uniform(20))];
        2 -> random_chars(rand:uniform(20));
        _ -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(30))]    % STRING_EXT
    end.

tuple(Ctx, B, N) -> list_to_tuple([gen(Ctx, share(B, N)) || _ <- lists:seq(1, N)]).

share(B, N) -> (B - 1) div max(N, 1).

list(Ctx, B) ->
    N = rand:uniform(min(max(B, 1), 10)),
    [gen(Ctx, share(B, N)) || _ <- lists:seq(1, N)].

improper(Ctx, B) ->
    Tail = case gen(Ctx, B div 2) of
               L when is_list(L) -> {L};
               T -> T
           end,
    lists:foldl(fun(E, Acc) -> [E | Acc] end, Tail, list(Ctx, B div 2)).

map(Ctx, B, N) ->
    C = share(B, 2 * N),
    maps:from_list([{key(Ctx, C), gen(Ctx, C)} || _ <- lists:seq(1, N)]).

%% Keys mix simple and composite terms, and 1 next to 1.0 (distinct keys under =:=).
key(Ctx, B) ->
    case rand:uniform(8) of
        1 -> {gen(Ctx, B div 2), gen(Ctx, B div 2)};
        2 -> list(Ctx, B);
        3 -> map(Ctx, B, rand:uniform(3));
        4 -> element(rand:uniform(2), {1, 1.0});
        _ -> leaf(Ctx)
    end.

fn(Ctx, B) ->
    case rand:uniform(6) of
        1 -> make_fun(gen(Ctx, B - 1));
        2 -> make_fun2(gen(Ctx, B div 2), gen(Ctx, B div 2));
        3 -> make_fun0();
        4 -> case maps:get(remote_funs, Ctx) of [] -> make_fun0(); Fs -> pick(list_to_tuple(Fs)) end;
        _ -> export_fun(Ctx)
    end.

export_fun(Ctx) ->
    case rand:uniform(3) of
        1 -> fun lists:map/2;
        2 -> fun erlang:'+'/2;
        3 -> erlang:make_fun(pick(maps:get(atoms, Ctx)), pick(maps:get(atoms, Ctx)), rand:uniform(256) - 1)
    end.

%% term_to_binary options: mostly the default, sometimes compressed (level too), and the minor versions that
%% write FLOAT_EXT (0) and UTF-8 atoms everywhere (2).
options() ->
    case rand:uniform(40) of
        1 -> [compressed];
        2 -> [{compressed, rand:uniform(10) - 1}];
        3 -> [{minor_version, 0}];
        4 -> [{minor_version, 2}];
        5 -> [{compressed, 9}, {minor_version, 2}];
        _ -> []
    end.

%% ---------------------------------------------------------------------------------------------------------------
%% The catalogue: every edge the brief names, each as {Name, Term, Options}.

catalogue(Ctx) ->
    Ints = [S * ((1 bsl B) + Dl) || B <- [7, 8, 15, 16, 27, 28, 31, 32, 59, 60, 63, 64, 2040, 2048],
                                    Dl <- [-2, -1, 0, 1, 2], S <- [1, -1]]
        ++ [0, 255, 256, -256, -255, -(1 bsl 31), (1 bsl 31) - 1, (1 bsl 2040) - 1, -((1 bsl 2040) - 1),
            rand_digits(10000), -rand_digits(10000), rand_digits(1000), -rand_digits(1000)],
    Bits = [<<(rand:bytes(N))/binary, (rand:uniform(1 bsl B) - 1):B>> || N <- [0, 1, 5], B <- lists:seq(1, 8)],
    Atoms = tuple_to_list(maps:get(atoms, Ctx)),
    Nodes = [random_node_name(I) || I <- lists:seq(1, 4)],
    Funs = [make_fun(x), make_fun({a, [1, 2], #{k => v}}), make_fun2(1.5, []), make_fun0(), fun lists:map/2,
            fun erlang:node/0, erlang:make_fun('', '', 0), erlang:make_fun(list_to_atom([16#1f600]), 'f', 255)]
        ++ maps:get(remote_funs, Ctx),
    Big = maps:from_list([{I, I * I} || I <- lists:seq(1, 33)]),
    Maps = [#{}, #{1 => a, 1.0 => b}, #{{a, b} => [1], [x] => #{y => z}, #{k => 1} => 2, <<"b">> => 1.5},
            maps:from_list([{K, K} || K <- lists:seq(1, 32)]), Big,
            #{nested => Big, list => [Big, {Big}]},
            maps:from_list([{{I, [I]}, #{I => I}} || I <- lists:seq(1, 100)]),
            maps:from_list([{I, I} || I <- lists:seq(1, 5000)])],
    Lists = [[], [1, 2, 3], [1000], lists:seq(0, 255), lists:duplicate(65535, $a), lists:duplicate(65536, $a),
             [a | b], [1, 2 | 3], [[] | []], [a | <<1:3>>], [x | #{}], "héllo", [16#1f600, $a],
             lists:seq(1, 100000), lists:duplicate(70000, 256)],
    Tuples = [{}, {a}, list_to_tuple(lists:seq(1, 255)), list_to_tuple(lists:seq(1, 256)),
              list_to_tuple(lists:seq(1, 70000))],
    Bins = [<<>>, <<0>>, rand:bytes(63), rand:bytes(64), rand:bytes(65), rand:bytes(70000), rand:bytes(1 bsl 20)],
    Deep = [{deep_list, nest(1000000, fun(T) -> [T] end, [])},
            {deep_tuple, nest(1000000, fun(T) -> {T} end, {})},
            {deep_mixed, nest_i(1000000, fun deep_step/2, x)},
            {deep_map, nest(100000, fun(T) -> #{k => T} end, #{})}],
    Simple = [{int, I, []} || I <- Ints]
        ++ [{float, F, []} || F <- special_floats()] ++ [{float_ext, F, [{minor_version, 0}]} || F <- special_floats()]
        ++ [{atom, A, []} || A <- Atoms] ++ [{atom_utf8, A, [{minor_version, 2}]} || A <- lists:sublist(Atoms, 30)]
        ++ [{bits, B, []} || B <- Bits]
        ++ [{pid, P, []} || P <- tuple_to_list(maps:get(pids, Ctx))]
        ++ [{port, P, []} || P <- tuple_to_list(maps:get(ports, Ctx))]
        ++ [{ref, R, []} || R <- tuple_to_list(maps:get(refs, Ctx))]
        % One-word external refs stand alone here: as keys of a big map OTP 25 cannot round-trip them itself.
        ++ [{ref_one_word, crafted_ref(N, 1), []} || N <- lists:sublist(Nodes, 4)]
        ++ [{'fun', F, []} || F <- Funs]
        ++ [{map, M, []} || M <- Maps]
        ++ [{list, L, []} || L <- Lists]
        ++ [{tuple, T, []} || T <- Tuples]
        ++ [{binary, B, []} || B <- Bins]
        ++ [{Name, T, []} || {Name, T} <- Deep],
    Compressed = [{compressed, T, [{compressed, L}]} || L <- [0, 1, 6, 9],
                                                        T <- [lists:seq(1, 1000), Big, rand:bytes(100),
                                                              {a, lists:duplicate(100, "abc")}, hello]]
        ++ [{compressed_deep, element(2, lists:keyfind(deep_list, 1, Deep)), [compressed]},
            {compressed_1mib, binary:copy(<<"abcdefgh">>, 1 bsl 17), [compressed]}],
    Simple ++ Compressed.

deep_step(I, T) ->
    case I rem 4 of
        0 -> [T | a];
        1 -> {T, 1};
        2 -> [T];
        3 -> #{T => I}
    end.

nest_i(0, _, Acc) -> Acc;
nest_i(N, F, Acc) -> nest_i(N - 1, F, F(N, Acc)).

nest(0, _, Acc) -> Acc;
nest(N, F, Acc) -> nest(N - 1, F, F(Acc)).

%% Encodings term_to_binary never writes but binary_to_term accepts: old tags (SMALL_ATOM_EXT, PID_EXT, PORT_EXT,
%% REFERENCE_EXT, NEW_REFERENCE_EXT), non-canonical integers, lists and tuples, unsorted small maps, unused bits set.
%% Each must decode to what binary_to_term gives and re-encode to term_to_binary of that.
crafted() ->
    A = fun(S) -> <<100, (length(S)):16, (list_to_binary(S))/binary>> end,
    [{small_atom, <<131, 115, 3, "abc">>},
     {small_atom_latin1, <<131, 115, 1, 255>>},
     {pid_ext, <<131, 103, (A("a@b"))/binary, 5:32, 6:32, 2>>},
     {port_ext, <<131, 102, (A("a@b"))/binary, 5:32, 2>>},
     {reference_ext, <<131, 101, (A("a@b"))/binary, 5:32, 2>>},
     {new_reference_ext, <<131, 114, 0, 3, (A("a@b"))/binary, 2, 1:32, 2:32, 3:32>>},
     {empty_list_ext, <<131, 108, 0, 0, 0, 0, 106>>},
     {empty_string_ext, <<131, 107, 0, 0>>},
     {big_leading_zeros, <<131, 110, 2, 0, 5, 0>>},
     {large_big_small, <<131, 111, 0, 0, 0, 1, 0, 7>>},
     {negative_zero_big, <<131, 110, 1, 1, 0>>},
     {large_tuple_small, <<131, 105, 0, 0, 0, 1, 97, 1>>},
     {integer_ext_small, <<131, 98, 0, 0, 0, 5>>},
     {utf8_tag_latin1_atom, <<131, 118, 0, 4, "true">>},
     {unsorted_small_map, <<131, 116, 0, 0, 0, 2, 100, 0, 1, 98, 97, 1, 100, 0, 1, 97, 97, 2>>},
     {bits_unused_set, <<131, 77, 0, 0, 0, 1, 3, 255>>},
     {list_ext_of_bytes, <<131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 106>>},
     {float_ext_short_text, <<131, 99, "1.5", 0:(28 * 8)>>}].
