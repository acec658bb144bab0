"""The BEAM as the oracle for etf::print and etf::parse.

An erl node (started with +pc unicode, so that ~tp treats all printable Unicode as text) generates random terms
that have a literal syntax (integers, floats, atoms, strings, binaries, bitstrings, lists proper and improper,
tuples, maps, exports), seeded, and writes term_to_binary of each as frames (4-byte length + ETF) plus
io_lib:format("~0tp") of each as one line of text. Then:

  1. erl term -> term_to_binary -> our decode -> our print -> erl_scan + erl_parse:parse_term must be =:= the
     original, and our text must equal io_lib:format("~0tp") character for character;
  2. erl's ~0tp text -> our parse must be =:= our decode of the same term.

Seeded: CNODE_PRINT_SEED=<n> repeats a run, CNODE_PRINT_COUNT=<n> changes the number of terms (default 20 000).
"""
import os
import random
import subprocess

import harness

GEN = r"""
-module(print_gen).
-export([generate/3, check/2]).

generate(Seed, N, Dir) ->
    rand:seed(exsss, Seed),
    Terms = [term(4) || _ <- lists:seq(1, N)],
    ok = file:write_file(filename:join(Dir, "terms.etf"),
                         [[<<(byte_size(B)):32>>, B] || T <- Terms, B <- [term_to_binary(T)]]),
    ok = file:write_file(filename:join(Dir, "erl.txt"), [[erl_text(T), $\n] || T <- Terms]),
    N.

%% A line `%` (a comment, which etf-print-check --parse skips) stands for terms whose erl text is not Erlang.
erl_text(T) ->
    case has_fun(T) of
        true -> <<"%">>;
        false -> unicode:characters_to_binary(io_lib:format("~0tp", [T]))
    end.

%% Our printed lines against the terms: {ok, Count, TextDifferences} or {fail, Report}.
check(Dir, N) ->
    Terms = frames(read(Dir, "terms.etf")),
    Ours = lists:droplast(lines(read(Dir, "ours.txt"))),  % without @@END
    Erl = lines(read(Dir, "erl.txt")),
    N = length(Terms), N = length(Ours), N = length(Erl),
    Bad = [{I, Why, T, Text}
           || {I, {T, Text, ErlText}} <- lists:zip(lists:seq(1, N), lists:zip3(Terms, Ours, Erl)),
              Why <- [verdict(T, Text, ErlText)], Why =/= ok],
    case Bad of
        [] -> {ok, N};
        _ -> {fail, length(Bad), lists:sublist(Bad, 5)}
    end.

verdict(T, Text, ErlText) ->
    Chars = unicode:characters_to_list(Text),
    case erl_scan:string(Chars ++ ". ") of
        {ok, Toks, _} ->
            case catch erl_parse:parse_term(Toks) of
                {ok, T2} when T2 =:= T ->
                    case Text =:= ErlText orelse ErlText =:= <<"%">> of
                        true -> ok;
                        false -> {text_differs, unicode:characters_to_list(ErlText)}
                    end;
                {ok, T2} -> {reads_back_as, T2};
                Other -> {parse_term, Other}
            end;
        Other -> {scan, Other}
    end.

%% io_lib prints funs with erlang:fun_to_list/1, whose text is not io_lib's: reserved words go unquoted
%% (`fun and:f/1`, which erl_parse refuses), atoms beyond ASCII come out escaped or as their UTF-8 bytes. Only
%% erl_parse =:= is checked for terms holding one.
has_fun(T) when is_function(T) -> true;
has_fun(T) when is_tuple(T) -> has_fun(tuple_to_list(T));
has_fun(T) when is_map(T) -> has_fun(maps:to_list(T));
has_fun([H | T]) -> has_fun(H) orelse has_fun(T);
has_fun(_) -> false.

read(Dir, Name) -> {ok, B} = file:read_file(filename:join(Dir, Name)), B.
frames(<<>>) -> [];
frames(<<Len:32, B:Len/binary, Rest/binary>>) -> [binary_to_term(B) | frames(Rest)].
lines(B) -> [L || L <- binary:split(B, <<"\n">>, [global]), L =/= <<>>].

%% ---- random terms with a literal syntax ----
term(0) -> leaf();
term(D) ->
    case rand:uniform(12) of
        1 -> list_to_tuple(some(D - 1));
        2 -> some(D - 1);
        3 -> some(D - 1) ++ [term(D - 1)];  % maybe improper, maybe a list of lists
        4 -> lists:foldr(fun(E, Acc) -> [E | Acc] end, leaf(), [term(D - 1) | some(D - 1)]);
        5 -> maps:from_list([{term(D - 1), term(D - 1)} || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        _ -> leaf()
    end.

some(D) -> [term(D) || _ <- lists:seq(1, rand:uniform(5) - 1)].

leaf() ->
    case rand:uniform(14) of
        1 -> rand:uniform(2001) - 1001;
        2 -> (rand:uniform(1 bsl 64) - (1 bsl 63)) bsl rand:uniform(8);
        3 -> (rand:uniform(1 bsl 300) - (1 bsl 299)) bsr rand:uniform(290);
        4 -> float();
        5 -> float();
        6 -> atom();
        7 -> atom();
        8 -> [char() || _ <- lists:seq(1, rand:uniform(8) - 1)];
        9 -> [rand:uniform(300) - 20 || _ <- lists:seq(1, rand:uniform(5))];
        10 -> list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(10) - 1)]);
        11 -> unicode:characters_to_binary([text_char() || _ <- lists:seq(1, rand:uniform(10) - 1)]);
        12 -> list_to_binary([rand:uniform(224) + 31 || _ <- lists:seq(1, rand:uniform(10) - 1)]);
        13 -> Bits = rand:uniform(20), <<(rand:uniform(1 bsl 24)):Bits>>;
        14 -> case rand:uniform(5) of
                  1 -> erlang:make_fun(atom(), atom(), rand:uniform(256) - 1);
                  _ -> atom()
              end
    end.

float() ->
    case rand:uniform(4) of
        1 -> <<F:64/float>> = finite_bits(), F;
        2 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(40) - 20);
        3 -> float(rand:uniform(1 bsl 60)) * math:pow(10, rand:uniform(8) - 1);
        4 -> Fs = [0.0, 0.1, 1.0e-300, 1.7976931348623157e308, 5.0e-324, 1.0e10, 1.0e15, 1.0e16, 100.0, 1000.0,
                   9007199254740992.0, 9007199254740990.0, 0.0001, 1.0e-5, 123456789012345678.0],
             <<N:64/float>> = <<1:1, 0:63>>,
             lists:nth(rand:uniform(length(Fs) + 1), [N | Fs])
    end.

finite_bits() ->
    B = <<(rand:uniform(1 bsl 64) - 1):64>>,
    case B of
        <<_:1, 2047:11, _:52>> -> finite_bits();  % inf, NaN
        _ -> B
    end.

atom() ->
    Fixed = [ok, 'end', 'and', maybe, else, 'Node', '', 'a@b', 'a.b', 'ß', 'Ω', '_x', 'x_', '\'', '\\'],
    case rand:uniform(3) of
        1 -> lists:nth(rand:uniform(length(Fixed)), Fixed);
        _ -> list_to_atom([atom_char() || _ <- lists:seq(1, rand:uniform(10) - 1)])
    end.

atom_char() ->
    case rand:uniform(4) of
        1 -> $a + rand:uniform(26) - 1;
        _ -> char()
    end.

%% Any code point erl_scan can read back inside quotes (no surrogates, no U+FFFE/U+FFFF).
char() ->
    case rand:uniform(6) of
        1 -> rand:uniform(32) - 1;
        2 -> rand:uniform(95) + 31;
        3 -> rand:uniform(128) + 127;
        4 -> lists:nth(rand:uniform(8), [$', $", $\\, $\n, 127, 160, 16#263A, 16#1F600]);
        _ -> unicode_char()
    end.

text_char() ->
    case rand:uniform(3) of
        1 -> rand:uniform(95) + 31;
        _ -> unicode_char()
    end.

unicode_char() ->
    C = rand:uniform(16#110000) - 1,
    if C >= 16#D800, C =< 16#DFFF -> unicode_char();
       C =:= 16#FFFE; C =:= 16#FFFF -> unicode_char();
       true -> C
    end.
"""


def test_print_and_parse_against_erl(c):
    tool = harness.bin_path("etf-print-check")
    assert os.access(tool, os.X_OK), f"{tool} is not built (cmake --build <dir> --target etf-print-check)"
    seed = int(os.environ.get("CNODE_PRINT_SEED") or random.randrange(1, 2**31))
    count = int(os.environ.get("CNODE_PRINT_COUNT", "20000"))
    print(f"seed {seed} (repeat with CNODE_PRINT_SEED={seed})", flush=True)
    src = os.path.join(c.tmp, "print_gen.erl")
    with open(src, "w") as f:
        f.write(GEN)
    c.epmd()
    a = c.erl("a", args=["+pc", "unicode", "-pa", c.tmp])
    assert a.eval(f'compile:file("{src}", [{{outdir, "{c.tmp}"}}, return_errors])') == "{ok,print_gen}"
    assert a.eval(f'print_gen:generate({seed}, {count}, "{c.tmp}")', timeout=300) == str(count)

    # 1. decode + print here, erl_parse there.
    ours = os.path.join(c.tmp, "ours.txt")
    with open(os.path.join(c.tmp, "terms.etf"), "rb") as frames, open(ours, "wb") as out:
        subprocess.run([tool], stdin=frames, stdout=out, check=True, timeout=300)
    with open(ours, encoding="utf-8") as f:
        lines = f.read().splitlines()
    bad = [l for l in lines if l.startswith("@@") and not l.startswith("@@END")]
    assert not bad and lines[-1] == f"@@END {count}", f"seed {seed}: {bad[:5]} {lines[-1]}"
    verdict = a.eval(f'print_gen:check("{c.tmp}", {count})', timeout=300)
    assert verdict == f"{{ok,{count}}}", f"seed {seed}: {verdict}"

    # 2. erl's text, parsed here.
    with open(os.path.join(c.tmp, "terms.etf"), "rb") as frames:
        r = subprocess.run([tool, "--parse", os.path.join(c.tmp, "erl.txt")], stdin=frames, capture_output=True,
                           timeout=300)
    out = r.stdout.decode("utf-8", "replace").splitlines()
    assert r.returncode == 0 and out and out[-1].startswith(f"@@END {count} 0 "), f"seed {seed}: {out[-6:]}"
    print(out[-1], flush=True)


harness.main(globals())
