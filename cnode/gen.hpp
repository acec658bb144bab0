// The gen protocol on the receiving side: recognising '$gen_call' / '$gen_cast' and replying as gen:reply/2 does
// for every From that OTP 25 and 26 send: {Pid, Ref}, {Pid, [alias | Ref]}, multi_call's {Pid, {Ref, Node}} and
// OTP 26's {Pid, [[alias | Alias] | MonRef]} (gen.erl:532).
#pragma once

#include "cnode/process.hpp"

namespace cnode::gen {

struct incoming_call {
  term from;     // {Pid, Tag}
  term request;
};

// {'$gen_call', From, Request} → true and fills c.
bool is_call(const term& msg, incoming_call& c);
// {'$gen_cast', Request} → true and fills request.
bool is_cast(const term& msg, term& request);
// Sends {Tag, Reply} where gen:reply would: to the alias for alias tags, else to the pid.
void reply(process& self, const term& from, term reply);
void reply(node& n, const term& from, term reply);
// As reply/3, sent as erlang:send(_, _, [noconnect]) does: never suspends the replier on a busy connection (a
// service that must keep serving while one caller's node is frozen), dropped when the caller's node is not connected.
void reply_noconnect(process& self, const term& from, term reply);

}  // namespace cnode::gen
