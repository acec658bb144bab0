// gen_server in C++, both ways.
//
// Client: call any Erlang/Elixir GenServer (by pid, local name, {Name, Node}, and with :global running {global, Name}
// or {via, global, Name}) with a monitor and a timeout; the
// failures mirror gen:call's exit reasons: noproc, timeout, {nodedown, Node}, or the server's exit reason.
//
//   auto r = co_await gen::call(self, term::tuple({a("kv"), a("elixir@host")}), request, 5000ms);
//   if (r.ok) use(r.reply); else log(r.reason);
//
// Server: derive from gen_server and start it; '$gen_call' from any From shape OTP 25/26 sends is answered as
// gen:reply does.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "cnode/gen.hpp"
#include "cnode/node.hpp"

namespace cnode::gen {

struct call_result {
  bool ok = false;
  term reply;   // when ok
  term reason;  // otherwise: what gen:call would exit with (noproc, timeout, {nodedown, Node}, server's reason)
};

asio::awaitable<call_result> call(process& self, const term& dest, term request,
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
// {'$gen_cast', Request}, fire and forget.
void cast(process& self, const term& dest, term request);

}  // namespace cnode::gen

namespace cnode {

class gen_server {
 public:
  virtual ~gen_server() = default;
  virtual asio::awaitable<void> init(process&) { co_return; }
  // The reply, or std::nullopt to reply later with gen::reply(self, from, Reply). Stop with self.exit(Reason).
  virtual asio::awaitable<std::optional<term>> handle_call(process& self, const term& request, const term& from) = 0;
  virtual asio::awaitable<void> handle_cast(process&, const term&) { co_return; }
  virtual asio::awaitable<void> handle_info(process&, const term&) { co_return; }
  virtual void terminate(process&, const term&) {}
};

// The gen_server loop in the calling process: init, then every '$gen_call' to handle_call (replied as gen:reply
// does), '$gen_cast' to handle_cast and anything else to handle_info. Once init has returned, terminate runs
// however the process ends (exit, kill, a C++ exception); the exit goes on.
asio::awaitable<void> run_gen_server(process& self, std::shared_ptr<gen_server> server);

// Spawns the server process (registered under `name` when given: false from register → it exits {already_started}).
term start_gen_server(node& n, std::shared_ptr<gen_server> server, std::optional<atom> name = std::nullopt,
                      spawn_options opts = {});

}  // namespace cnode
