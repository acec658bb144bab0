// libFuzzer target: global's sans-I/O core (registry/core.hpp) driven by what other nodes may send it. The input
// is a program: each step picks a message shape global's server understands (or a raw ETF term) and fills it from
// small pools (four nodes, one of them us; a few tags, pids, refs, lock ids, name lists), so that the fuzzer reaches
// deep connection states instead of stopping at the first pattern match. Invariants: no crash, no undefined
// behaviour, no exception other than std::exception (which the process shell logs and drops), our own node never
// in the known list, and every name lookup answers a pid.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <vector>

#include "etf/codec.hpp"
#include "registry/core.hpp"

using namespace cnode::global;
using cnode::etf::pid_value;

namespace {

[[noreturn]] void fail() { std::abort(); }

const atom self_node{"cn@h"};

struct null_io final : server_io {
  std::int64_t refs = 0, tags = 0;
  atom self_node() const override { return ::self_node; }
  void send_server(atom, term) override {}
  void cast_server(atom, term) override {}
  void to_locker(term) override {}
  term locker_pid() const override { return term::pid(pid_value{::self_node, 2, 0, 1}); }
  term monitor(const term&) override { return term(++refs); }
  void demonitor(const term&) override {}
  void disconnect(atom) override {}
  void start_resolver(atom, const term&, const term&, std::vector<name_entry>) override {}
  void stop_resolver(atom) override {}
  void sync_others(const std::vector<atom>&) override {}
  std::int64_t unique_integer() override { return ++tags; }
  void send_local(const term&, term) override {}
};

struct reader {
  const std::uint8_t* p;
  std::size_t n;
  bool done() const { return n == 0; }
  std::uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
};

struct program {
  reader in;
  null_io& io;

  term A(const char* s) { return term(atom(s)); }
  atom node() {
    static const atom nodes[] = {atom("a@h"), atom("b@h"), atom("z@h"), self_node};
    return nodes[in.byte() % 4];
  }
  term small() { return term(static_cast<std::int64_t>(in.byte() % 8)); }
  term tag() { return in.byte() % 4 == 0 ? A("undefined") : term(static_cast<std::int64_t>(in.byte() % 6)); }
  term pid() { return term::pid(pid_value{node(), static_cast<std::uint32_t>(in.byte() % 5), 0, 1}); }
  term ref() { return term(static_cast<std::int64_t>(in.byte() % 8)); }
  term name() { return in.byte() % 2 ? A("n1") : term(static_cast<std::int64_t>(in.byte() % 4)); }
  term lock_id() {
    term res = in.byte() % 2 ? A("global") : A("res");
    return term::tuple({res, in.byte() % 2 ? pid() : term::list({pid(), pid()})});
  }
  term node_list() {
    std::vector<term> v;
    for (int i = in.byte() % 4; i > 0; --i) v.push_back(in.byte() % 2 ? term(node()) : term::tuple({term(node()), small()}));
    return term::list(std::move(v));
  }
  term ops() {
    std::vector<term> v;
    for (int i = in.byte() % 4; i > 0; --i) {
      if (in.byte() % 3) v.push_back(term::tuple({A("insert"), term::tuple({name(), pid(), A("m")})}));
      else v.push_back(term::tuple({A("delete"), name()}));
    }
    return term::list(std::move(v));
  }
  term names() {
    std::vector<term> v;
    for (int i = in.byte() % 3; i > 0; --i) v.push_back(term::tuple({name(), pid(), A("m")}));
    return term::list(std::move(v));
  }
  term names_ext() {
    std::vector<term> v;
    for (int i = in.byte() % 2; i > 0; --i) v.push_back(term::tuple({name(), pid(), term(node())}));
    return term::list(std::move(v));
  }
  term extra() {
    return term::list({term::tuple({A("vsn"), term(8)}), term::tuple({A("lock"), lock_id()})});
  }
  term raw() {
    std::size_t len = in.byte();
    if (len > in.n) len = in.n;
    auto r = cnode::etf::decode_prefix(std::span<const std::uint8_t>(in.p, len));
    in.p += len;
    in.n -= len;
    return r ? r.value : term();
  }

  void step(server_core& core) {
    const term N = term(node());
    switch (in.byte() % 24) {
      case 0: core.nodeup(node()); break;
      case 1: core.nodedown(node()); break;
      case 2:
        core.handle_cast(term::tuple({A("init_connect"), term::tuple({small(), tag()}), N,
                                      term::tuple({A("locker"), A("no_longer_a_pid"), term::nil(), pid()})}));
        break;
      case 3: core.handle_cast(term::tuple({A("lock_is_set"), N, tag(), lock_id()})); break;
      case 4: core.handle_cast(term::tuple({A("exchange"), N, names(), term::nil(), tag()})); break;
      case 5: core.handle_cast(term::tuple({A("exchange_ops"), N, tag(), ops(), ops()})); break;
      case 6:
        core.handle_cast(term::tuple({A("resolved"), N, ops(), node_list(), A("unused"), names_ext(), tag()}));
        break;
      case 7: core.handle_cast(term::tuple({A("new_nodes"), N, ops(), names_ext(), node_list(), extra()})); break;
      case 8: core.handle_cast(term::tuple({A("in_sync"), N, term(true)})); break;
      case 9: core.handle_cast(term::tuple({A("lock_set"), pid(), term(true), node_list(), tag()})); break;
      case 10: core.handle_info(term::tuple({A("init_connect_ack"), N, tag(), tag()})); break;
      case 11: core.handle_info(term::tuple({A("cancel_connect"), N, tag()})); break;
      case 12: core.handle_info(term::tuple({A("lost_connection"), N, small(), small(), term(node())})); break;
      case 13: core.handle_info(term::tuple({A("remove_connection"), N})); break;
      case 14: core.handle_info(term::tuple({A("extra_nodedown"), N})); break;
      case 15: core.handle_info(term::tuple({A("DOWN"), ref(), A("process"), pid(), A("noconnection")})); break;
      case 16: core.handle_call(term::tuple({A("register"), name(), pid(), A("m")}), pid()); break;
      case 17: core.handle_call(term::tuple({A("register_ext"), name(), pid(), A("m"), N}), pid()); break;
      case 18: core.handle_call(term::tuple({A("unregister"), name()}), pid()); break;
      case 19: core.handle_call(term::tuple({A("set_lock"), lock_id()}), pid()); break;
      case 20: core.handle_call(term::tuple({A("del_lock"), lock_id()}), pid()); break;
      case 21: {
        term t = raw();
        core.handle_cast(t);
        core.handle_info(t);
        core.handle_call(t, pid());
        break;
      }
      case 22: core.add_syncer(pid(), {node(), node()}); break;
      default:
        core.handle_call(A("get_known"), term());
        core.handle_call(A("get_names_ext"), term());
        break;
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  null_io io;
  server_core core(io);
  program prog{reader{data, size}, io};
  try {
    while (!prog.in.done()) {
      try {
        prog.step(core);
      } catch (const std::exception&) {
        // The shell drops the message and goes on; so does this.
      }
      for (atom k : core.known())
        if (k == self_node) fail();
      for (const term& n : core.registered_names()) {
        auto w = core.where(n, [](const term&) { return true; });
        if (w && !w->is_pid()) fail();
      }
    }
  } catch (...) {
    fail();
  }
  return 0;
}
