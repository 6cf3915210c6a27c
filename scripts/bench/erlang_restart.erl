%% Restart latency of an Erlang/OTP supervisor, measured as Troupe's
%% `troupe bench restart` measures its own: a one_for_one child crashes, the
%% supervisor restarts it, the replacement answers the next message; the time
%% from the crash request to that answer, N times.
%% Run: erlc erlang_restart.erl && erl -noshell -run erlang_restart main 10000
-module(erlang_restart).
-behaviour(supervisor).
-export([main/1, init/1, start_child/1]).

main([NStr]) ->
    N = list_to_integer(NStr),
    %% Crash reports would dominate the measurement (Troupe keeps its crash
    %% history in memory, it does not print it).
    logger:set_primary_config(level, none),
    Driver = self(),
    {ok, Sup} = supervisor:start_link(?MODULE, Driver),
    unlink(Sup),
    Child = receive {started, Pid} -> Pid end,
    Lat = lists:sort(loop(N, Child, [])),
    Med = lists:nth(length(Lat) div 2 + 1, Lat),
    P99 = lists:nth(max(1, (length(Lat) * 99) div 100), Lat),
    io:format("erlang_restart_us_median ~.2f~nerlang_restart_us_p99 ~.2f~n", [Med, P99]),
    halt(0).

init(Driver) ->
    {ok, {#{strategy => one_for_one, intensity => 100000000, period => 3600},
          [#{id => child, start => {?MODULE, start_child, [Driver]}}]}}.

start_child(Driver) ->
    Pid = spawn_link(fun loop/0),
    Driver ! {started, Pid},
    {ok, Pid}.

loop() ->
    receive
        crash -> exit(crash);
        {ping, From} -> From ! pong, loop()
    end.

loop(0, _Child, Acc) -> Acc;
loop(N, Child, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Child ! crash,
    New = receive {started, P} -> P end,
    New ! {ping, self()},
    receive pong -> ok end,
    T1 = erlang:monotonic_time(nanosecond),
    loop(N - 1, New, [(T1 - T0) / 1000 | Acc]).
