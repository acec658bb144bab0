#include <doctest.h>

#include <condition_variable>
#include <algorithm>
#include <deque>
#include <future>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include "cnode/node.hpp"

using namespace cnode;
using namespace std::chrono_literals;

namespace {

// A node on a 2-thread io_context, and a collector the test thread can wait on.
struct fixture {
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  node n{ioc.get_executor(), "test@localhost", 7};
  std::vector<std::thread> threads;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<term> seen;
  term collector;

  fixture() {
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
    collector = n.spawn([this](process& self) -> asio::awaitable<void> {
      self.trap_exit(true);
      for (;;) {
        auto m = co_await self.receive();
        std::lock_guard lock(mu);
        seen.push_back(*m);
        cv.notify_all();
      }
    });
  }
  ~fixture() {
    work.reset();
    ioc.stop();
    for (auto& t : threads) t.join();
  }
  // The next message the collector got, within 5 s.
  term next() {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, 5s, [this] { return !seen.empty(); }));
    term t = seen.front();
    seen.pop_front();
    return t;
  }
  bool quiet_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu);
    return !cv.wait_for(lock, d, [this] { return !seen.empty(); });
  }
  template <typename F>
  bool eventually(F f) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (f()) return true;
      std::this_thread::yield();
    }
    return false;
  }
};

term at(const char* s) { return term(atom(s)); }

// A process that obeys commands from the test: {link, P}, {exit, Reason}, {trap, Bool}, {monitor, T}, ...
term spawn_puppet(fixture& f, bool trap = false) {
  term owner = f.collector;
  return f.n.spawn([owner, trap](process& self) -> asio::awaitable<void> {
    self.trap_exit(trap);
    for (;;) {
      auto m = co_await self.receive();
      const term& cmd = *m;
      if (cmd.is_tuple(2) && cmd.element(0).is_atom(atom("link"))) {
        self.link(cmd.element(1));
        self.send(owner, at("linked"));
      } else if (cmd.is_tuple(2) && cmd.element(0).is_atom(atom("die"))) {
        self.exit(cmd.element(1));
      } else if (cmd.is_tuple(2) && cmd.element(0).is_atom(atom("monitor"))) {
        self.send(owner, term::tuple({at("ref"), self.monitor(cmd.element(1))}));
      } else if (cmd.is_tuple(3) && cmd.element(0).is_atom(atom("exit"))) {
        self.exit(cmd.element(1), cmd.element(2));
      } else {
        self.send(owner, term::tuple({at("got"), cmd}));
      }
    }
  });
}

}  // namespace

TEST_CASE("send and receive through pids and names") {
  fixture f;
  term p = spawn_puppet(f);
  f.n.send({}, p, at("hello"));
  CHECK(f.next() == term::tuple({at("got"), at("hello")}));
  REQUIRE(f.n.register_name(atom("puppet"), p));
  CHECK_FALSE(f.n.register_name(atom("puppet"), f.collector));
  f.n.send({}, at("puppet"), term(1));
  CHECK(f.next() == term::tuple({at("got"), term(1)}));
  f.n.send({}, term::tuple({at("puppet"), term(f.n.name_atom())}), term(2));
  CHECK(f.next() == term::tuple({at("got"), term(2)}));
  CHECK(f.n.whereis(atom("puppet")) == p);
}

TEST_CASE("selective receive keeps other messages in order; timeouts return nothing") {
  fixture f;
  term owner = f.collector;
  term p = f.n.spawn([owner](process& self) -> asio::awaitable<void> {
    auto none = co_await self.receive(10ms);
    self.send(owner, term(none.has_value()));
    auto b = co_await self.receive([](const term& t) { return t.is_atom(atom("b")); });
    self.send(owner, *b);
    auto x = co_await self.receive();
    auto y = co_await self.receive();
    self.send(owner, term::tuple({*x, *y}));
  });
  CHECK(f.next() == term(false));
  f.n.send({}, p, at("a"));
  f.n.send({}, p, at("c"));
  f.n.send({}, p, at("b"));
  CHECK(f.next() == at("b"));
  CHECK(f.next() == term::tuple({at("a"), at("c")}));
}

TEST_CASE("a linked process dies with the reason; trapping gets {'EXIT', Pid, Reason}") {
  fixture f;
  term a = spawn_puppet(f);
  term b = spawn_puppet(f);
  f.n.send({}, a, term::tuple({at("link"), b}));
  CHECK(f.next() == at("linked"));
  f.n.send({}, f.collector, term(0));  // flush marker
  CHECK(f.next() == term(0));
  // The collector traps exits: link it to b to see b's reason.
  f.n.send({}, b, term::tuple({at("link"), f.collector}));
  CHECK(f.next() == at("linked"));
  f.n.send({}, b, term::tuple({at("die"), at("boom")}));
  CHECK(f.next() == term::tuple({at("EXIT"), b, at("boom")}));
  CHECK(f.eventually([&] { return !f.n.find(a); }));  // a died too
}

TEST_CASE("exit reason normal does not kill a non-trapping linked process") {
  fixture f;
  term a = spawn_puppet(f);
  term b = spawn_puppet(f);
  f.n.send({}, a, term::tuple({at("link"), b}));
  CHECK(f.next() == at("linked"));
  f.n.send({}, b, term::tuple({at("die"), at("normal")}));
  CHECK(f.eventually([&] { return !f.n.find(b); }));
  f.n.send({}, a, at("still_here"));
  CHECK(f.next() == term::tuple({at("got"), at("still_here")}));
}

TEST_CASE("exit(Pid, kill) is untrappable and links see killed; exit with reason kill can be trapped") {
  fixture f;
  term trapper = spawn_puppet(f, true);
  f.n.send({}, trapper, term::tuple({at("link"), f.collector}));
  CHECK(f.next() == at("linked"));
  f.n.send({}, f.collector, term(0));
  CHECK(f.next() == term(0));
  term killer = spawn_puppet(f);
  f.n.send({}, killer, term::tuple({at("exit"), trapper, at("kill")}));
  CHECK(f.next() == term::tuple({at("EXIT"), trapper, at("killed")}));

  // A process exiting with reason kill passes kill to its links, where it is trappable.
  term p = spawn_puppet(f);
  f.n.send({}, p, term::tuple({at("link"), f.collector}));
  CHECK(f.next() == at("linked"));
  f.n.send({}, p, term::tuple({at("die"), at("kill")}));
  CHECK(f.next() == term::tuple({at("EXIT"), p, at("kill")}));
}

TEST_CASE("a trapping process gets exit/2 signals as messages, normal included") {
  fixture f;
  term t = spawn_puppet(f, true);
  term s = spawn_puppet(f);
  f.n.send({}, s, term::tuple({at("exit"), t, at("normal")}));
  CHECK(f.next() == term::tuple({at("got"), term::tuple({at("EXIT"), s, at("normal")})}));
  f.n.send({}, s, term::tuple({at("exit"), t, at("shutdown")}));
  CHECK(f.next() == term::tuple({at("got"), term::tuple({at("EXIT"), s, at("shutdown")})}));
}

TEST_CASE("monitors: DOWN with the reason; noproc for the dead and the unregistered") {
  fixture f;
  term w = spawn_puppet(f);
  term target = spawn_puppet(f);
  f.n.send({}, w, term::tuple({at("monitor"), target}));
  term r = f.next();
  REQUIRE(r.is_tuple(2));
  term ref = r.element(1);
  f.n.send({}, target, term::tuple({at("die"), at("bye")}));
  CHECK(f.next() == term::tuple({at("got"), term::tuple({at("DOWN"), ref, at("process"), target, at("bye")})}));

  f.n.send({}, w, term::tuple({at("monitor"), target}));  // now dead
  ref = f.next().element(1);
  CHECK(f.next() == term::tuple({at("got"), term::tuple({at("DOWN"), ref, at("process"), target, at("noproc")})}));

  f.n.send({}, w, term::tuple({at("monitor"), at("nobody")}));
  ref = f.next().element(1);
  term object = term::tuple({at("nobody"), term(f.n.name_atom())});
  CHECK(f.next() == term::tuple({at("got"), term::tuple({at("DOWN"), ref, at("process"), object, at("noproc")})}));
}

TEST_CASE("linking to a dead process gives noproc") {
  fixture f;
  term dead = spawn_puppet(f);
  f.n.send({}, dead, term::tuple({at("die"), at("x")}));
  CHECK(f.eventually([&] { return !f.n.find(dead); }));
  term t = spawn_puppet(f, true);
  f.n.send({}, t, term::tuple({at("link"), dead}));
  CHECK(f.next() == at("linked"));
  CHECK(f.next() == term::tuple({at("got"), term::tuple({at("EXIT"), dead, at("noproc")})}));
}

TEST_CASE("aliases deliver until unalias; demonitor with flush removes a DOWN") {
  fixture f;
  term owner = f.collector;
  term p = f.n.spawn([owner](process& self) -> asio::awaitable<void> {
    term al = self.alias();
    self.send(owner, al);
    auto m = co_await self.receive();
    self.send(owner, *m);
    self.unalias(al);
    self.send(owner, at("unaliased"));
    auto m2 = co_await self.receive(200ms);
    self.send(owner, term(m2.has_value()));
    // monitor something that dies, then demonitor with flush: no DOWN stays behind
    term victim = self.node().spawn([](process&) -> asio::awaitable<void> { co_return; });
    term ref = self.monitor(victim);
    co_await self.receive(50ms);
    self.demonitor(ref, true);
    self.send(owner, term(self.message_queue_len()));
  });
  term al = f.next();
  CHECK(al.is_reference());
  f.n.send({}, al, at("via_alias"));
  CHECK(f.next() == at("via_alias"));
  CHECK(f.next() == at("unaliased"));
  f.n.send({}, al, at("lost"));
  CHECK(f.next() == term(false));
  CHECK(f.next() == term(0));
  (void)p;
}

TEST_CASE("many processes exchange many messages in order") {
  fixture f;
  constexpr int n = 100000;
  term owner = f.collector;
  term sink = f.n.spawn([owner](process& self) -> asio::awaitable<void> {
    std::int64_t expect = 0;
    bool ok = true;
    for (int i = 0; i < n; ++i) {
      auto m = co_await self.receive();
      ok = ok && m->small() == expect++;
    }
    self.send(owner, term(ok));
  });
  f.n.spawn([sink](process& self) -> asio::awaitable<void> {
    for (int i = 0; i < n; ++i) self.send(sink, term(i));
    co_return;
  });
  CHECK(f.next() == term(true));
}

TEST_CASE("spawn_registered that loses the name spawns nothing and applies none of the caller's options") {
  fixture f;
  auto idle = [](process& self) -> asio::awaitable<void> {
    for (;;) {
      auto m = co_await self.receive();
      if (m->is_atom(atom("stop"))) co_return;
    }
  };
  auto options = [&] {
    spawn_options o;
    o.link = f.collector;  // the collector traps exits: a link to a process that ends would show as an EXIT
    o.monitored_by = std::make_pair(f.collector, f.n.make_ref());
    return o;
  };
  auto winner = f.n.spawn_registered(atom("contested"), idle, options());
  REQUIRE(winner);
  const auto count = f.n.process_count();
  const auto spawned = f.n.counters().processes_spawned.load();

  // Taken before the call, and taken by a racer: rounds of 4 threads let go at once on one name each, so that some
  // lose between a check and the registration; exactly one wins each round.
  CHECK_FALSE(f.n.spawn_registered(atom("contested"), idle, options()));
  constexpr int rounds = 200, threads = 4;
  std::vector<term> raced;
  for (int r = 0; r < rounds; ++r) {
    const atom name("raced" + std::to_string(r));
    std::atomic<int> ready{0};
    std::vector<term> winners(threads);
    std::vector<std::thread> racers;
    for (int i = 0; i < threads; ++i)
      racers.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();
        if (auto p = f.n.spawn_registered(name, idle, options())) winners[i] = *p;
      });
    for (auto& t : racers) t.join();
    int won = 0;
    for (auto& w : winners)
      if (!w.is_nil()) {
        ++won;
        raced.push_back(w);
        CHECK(f.n.whereis(name) == w);
      }
    CHECK(won == 1);
  }
  // The losers never existed: one process and one counted spawn per round.
  CHECK(f.n.process_count() == count + rounds);
  CHECK(f.n.counters().processes_spawned.load() == spawned + rounds);
  // Only the winners' links and monitors exist (the collector links with exactly those), and stopping
  // them gives exactly their EXITs, nothing from a loser.
  auto snapshot = [&](const term& pid) {
    std::promise<process_snapshot> got;
    f.n.find(pid)->inspect([&](process_snapshot s) { got.set_value(std::move(s)); });
    return got.get_future().get();
  };
  raced.push_back(*winner);
  for (const term& p : raced) {
    auto s = snapshot(p);
    CHECK(s.links == std::vector<term>{f.collector});
    CHECK(s.monitored_by == std::vector<term>{f.collector});
  }
  auto links = snapshot(f.collector).links;
  std::sort(links.begin(), links.end());
  std::sort(raced.begin(), raced.end());
  CHECK(links == raced);
  for (const term& p : raced) {
    f.n.send({}, p, at("stop"));
    CHECK(f.next() == term::tuple({at("EXIT"), p, at("normal")}));
  }
  CHECK(f.quiet_for(100ms));
}

TEST_CASE("a receive that finds its message at once does not grow the stack: a mailbox of 300 000 on one thread") {
  // receive() completes on the stack that started it when a message is there: without a bound, each of these would
  // run the body one level deeper (hundreds of bytes a level: past the 8 MiB of the thread's stack).
  asio::io_context ioc;
  node n{ioc.get_executor(), "deep@localhost", 1};
  constexpr int count = 300000;
  std::int64_t got = 0;
  bool in_order = true, done = false;
  const term pid = n.spawn([&](process& self) -> asio::awaitable<void> {
    for (int i = 0; i < count; ++i) {
      auto m = co_await self.receive();
      in_order = in_order && m->small() == got++;
    }
    done = true;
  });
  const term from = n.make_pid(999999);
  for (int i = 0; i < count; ++i) n.send(from, pid, term(i));  // all queued before the body first runs
  ioc.run();
  CHECK(done);
  CHECK(got == count);
  CHECK(in_order);
}

TEST_CASE("a process woken once takes every message already in its mailbox in that one run") {
  // Taken in a loop on the strand, not a few per run with the rest deferred behind other handlers (which let a
  // connection's reader deliver faster than the process took, and its mailbox grow).
  asio::io_context ioc;
  node n{ioc.get_executor(), "batch@localhost", 1};
  int got = 0;
  const term pid = n.spawn([&](process& self) -> asio::awaitable<void> {
    for (;;) {
      co_await self.receive();
      ++got;
    }
  });
  ioc.poll();  // the body runs and parks in its receive
  REQUIRE(got == 0);
  const term from = n.make_pid(999999);
  for (int i = 0; i < 1000; ++i) n.send(from, pid, term(i));
  ioc.restart();
  CHECK(ioc.poll_one() == 1);
  CHECK(got == 1000);
  n.route(pid, signal{signal_kind::exit, from, term(atom("kill")), {}, {}, 0});
  ioc.restart();
  ioc.run();
  CHECK(n.process_count() == 0);
}

TEST_CASE("a kill reaches a process whose mailbox is full, at its next receive") {
  asio::io_context ioc;
  node n{ioc.get_executor(), "kill@localhost", 1};
  int taken = 0;
  bool unwound = false;
  const term pid = n.spawn([&](process& self) -> asio::awaitable<void> {
    try {
      for (;;) {
        co_await self.receive();
        ++taken;
      }
    } catch (const process_exit&) {
      unwound = true;
      throw;
    }
  });
  const term from = n.make_pid(999999);
  for (int i = 0; i < 10; ++i) n.send(from, pid, term(i));
  n.route(pid, signal{signal_kind::exit, from, term(atom("kill")), {}, {}, 0});
  ioc.run();
  CHECK(unwound);
  CHECK(taken == 0);  // the kill came with the batch: no message is handed out after it
  CHECK(n.process_count() == 0);
}
