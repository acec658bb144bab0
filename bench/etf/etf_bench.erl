%% The BEAM side of bench_etf: for each corpus file (ETF bytes), the best time per binary_to_term and per
%% term_to_binary over a few timed loops, measured with erlang:monotonic_time inside the BEAM.
%% Prints one line per file: Name DecodeNs EncodeNs.
-module(etf_bench).
-export([main/1]).

-define(ROUNDS, 5).
-define(MIN_ROUND_NS, 50000000).

main([Dir | Names]) ->
    [begin
         {ok, B} = file:read_file(filename:join(Dir, Name)),
         T = binary_to_term(B),
         Dec = best_ns(fun(N) -> decode_loop(B, N) end),
         Enc = best_ns(fun(N) -> encode_loop(T, N) end),
         io:format("~s ~.1f ~.1f~n", [Name, Dec, Enc])
     end || Name <- Names],
    halt().

%% The result is passed on to the next iteration and finally returned: the compiler drops calls of pure BIFs whose
%% result is unused (a bare `_ = term_to_binary(T)` measures nothing).
decode_loop(B, N) -> decode_loop(B, N, none).

decode_loop(_, 0, Last) -> Last;
decode_loop(B, N, _) -> decode_loop(B, N - 1, binary_to_term(B)).

encode_loop(T, N) -> encode_loop(T, N, none).

encode_loop(_, 0, Last) -> Last;
encode_loop(T, N, _) -> encode_loop(T, N - 1, term_to_binary(T)).

%% Doubles the iteration count until a loop takes MIN_ROUND_NS, then keeps the best of ROUNDS loops.
best_ns(Loop) ->
    N = calibrate(Loop, 1),
    lists:min([time_ns(Loop, N) / N || _ <- lists:seq(1, ?ROUNDS)]).

calibrate(Loop, N) ->
    case time_ns(Loop, N) >= ?MIN_ROUND_NS of
        true -> N;
        false -> calibrate(Loop, N * 2)
    end.

time_ns(Loop, N) ->
    erlang:garbage_collect(),
    T0 = erlang:monotonic_time(nanosecond),
    Loop(N),
    erlang:monotonic_time(nanosecond) - T0.
