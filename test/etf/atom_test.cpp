// Atoms learned from the wire are reference-counted and go when their last holder does (etf/atom.hpp); atoms made
// by C++ code are permanent.
#include <doctest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "etf/codec.hpp"
#include "etf/term.hpp"

using namespace cnode::etf;

namespace {

std::string unique_name(const char* prefix) {
  static std::atomic<unsigned> n{0};
  return std::string(prefix) + "_" + std::to_string(n.fetch_add(1));
}

atom wire(const std::string& s) {
  auto a = atom::from_wire_utf8(s);
  REQUIRE(a);
  return *a;
}

bool exists(const std::string& s) { return atom::existing(s).has_value(); }

// Before counting: the atoms a test makes on the way ('' and the literals interned on first use) exist, and no
// unreferenced one lingers.
void settle() {
  (void)atom();
  (void)atom::ok();
  atom::collect();
}

// term_to_binary([A1, ..., An]) of SMALL_ATOM_UTF8_EXT atoms.
std::vector<std::uint8_t> atom_list_bytes(const std::vector<std::string>& names) {
  std::vector<std::uint8_t> b = {131, 108};
  const auto n = static_cast<std::uint32_t>(names.size());
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(n >> s));
  for (const auto& x : names) {
    b.push_back(119);
    b.push_back(static_cast<std::uint8_t>(x.size()));
    b.insert(b.end(), x.begin(), x.end());
  }
  b.push_back(106);
  return b;
}

}  // namespace

TEST_CASE("an atom from the wire is dynamic and goes with its last handle") {
  settle();
  const std::size_t count0 = atom::count(), dynamic0 = atom::dynamic_count();
  const std::string name = unique_name("atom_test_create");
  {
    atom a = wire(name);
    CHECK_FALSE(a.permanent());
    CHECK(a.text() == name);
    CHECK(atom::count() == count0 + 1);
    CHECK(atom::dynamic_count() == dynamic0 + 1);
    CHECK(exists(name));
    atom b = a;  // copy
    atom c;
    c = b;  // assignment
    CHECK(c == a);
    CHECK(c.entry() == a.entry());  // identity stays a pointer compare
    auto again = atom::from_wire_utf8(name);  // looked up, not created again
    REQUIRE(again);
    CHECK(*again == a);
    CHECK(atom::count() == count0 + 1);
  }
  // unreferenced, it lingers (an atom each message brings anew is found again) until collected or pushed out
  CHECK(exists(name));
  atom::collect();
  CHECK_FALSE(exists(name));
  CHECK(atom::count() == count0);
  CHECK(atom::dynamic_count() == dynamic0);
}

TEST_CASE("terms hold dynamic atoms: copies, moves, nested terms, pids and exports") {
  settle();
  const std::size_t count0 = atom::count();
  const std::string n1 = unique_name("atom_test_term"), n2 = unique_name("atom_test_node"),
                    n3 = unique_name("atom_test_mod");
  term kept;
  {
    atom a = wire(n1);
    term t(a);
    term copy = t;
    term moved = std::move(copy);
    term tuple = term::tuple({t, term(1), term::list({t, moved})});
    term m = term::map({{t, term(atom::ok())}});
    term pid = term::pid({wire(n2), 1, 2, 3});
    term exp = term::export_({wire(n3), atom::ok(), 1});
    CHECK(tuple.element(0).atom_value() == a);
    CHECK(pid.node_of().text() == n2);
    kept = term::list({tuple, m, pid, exp});
  }
  CHECK(exists(n1));
  CHECK(exists(n2));
  CHECK(exists(n3));
  CHECK(atom::count() == count0 + 3);
  term copy_of_kept = kept;
  kept = term();
  atom::collect();
  CHECK(exists(n1));
  copy_of_kept = term();
  atom::collect();
  CHECK_FALSE(exists(n1));
  CHECK_FALSE(exists(n2));
  CHECK_FALSE(exists(n3));
  CHECK(atom::count() == count0);
}

TEST_CASE("decoded atoms are dynamic and freed with the term; known atoms stay as they are") {
  REQUIRE(atom::ok().permanent());
  settle();
  const std::size_t count0 = atom::count(), dynamic0 = atom::dynamic_count();
  std::vector<std::string> names;
  for (int i = 0; i < 10000; ++i) names.push_back(unique_name("atom_test_decoded"));
  names.push_back("ok");  // a permanent one in the middle of them
  const auto bytes = atom_list_bytes(names);
  {
    decode_result r = decode(bytes);
    REQUIRE(r);
    CHECK(atom::count() == count0 + 10000);
    CHECK(atom::dynamic_count() == dynamic0 + 10000);
    std::vector<term> elems;
    REQUIRE(r.value.list_to_vector(elems));
    CHECK_FALSE(elems[0].atom_value().permanent());
    CHECK(elems[10000].atom_value() == atom::ok());
    CHECK(elems[10000].atom_value().permanent());
    // encoding reads them like any atom
    std::vector<std::uint8_t> out;
    encode(r.value, out);
    CHECK(decode(out).value == r.value);
  }
  // all but the 2 048 that may linger are gone at once; those when collected
  CHECK(atom::count() <= count0 + 2048);
  atom::collect();
  CHECK(atom::count() == count0);
  CHECK(atom::dynamic_count() == dynamic0);
  CHECK(atom::ok().permanent());
  // decoding the same bytes again makes them again (nothing cached points at a freed atom)
  decode_result r = decode(bytes);
  REQUIRE(r);
  CHECK(atom::count() == count0 + 10000);
  r = {};
  atom::collect();
  CHECK(atom::count() == count0);
}

TEST_CASE("C++ code naming an atom makes it permanent") {
  const std::string name = unique_name("atom_test_pinned");
  {
    atom w = wire(name);
    CHECK_FALSE(w.permanent());
    atom p(name);  // the program's own use
    CHECK(p == w);
    CHECK(p.permanent());
    CHECK(w.permanent());
  }
  CHECK(exists(name));
  const std::string name2 = unique_name("atom_test_made_permanent");
  {
    atom w = wire(name2);
    w.make_permanent();
  }
  CHECK(exists(name2));
  // an atom C++ made first stays permanent when it comes from the wire
  atom p("atom_test_literal");
  CHECK(wire("atom_test_literal").permanent());
}

TEST_CASE("a dynamic atom looked up again and again becomes permanent") {
  const std::string name = unique_name("atom_test_promoted");
  atom first = wire(name);
  for (unsigned i = 1; i < atom::promote_after_uses; ++i) CHECK_FALSE(wire(name).permanent());
  CHECK(wire(name).permanent());
  CHECK(first.permanent());
  // also when each use is the only one: dropped in between, the atom lingers and is found again
  const std::string name2 = unique_name("atom_test_promoted_lingering");
  for (unsigned i = 0; i < atom::promote_after_uses; ++i) CHECK_FALSE(wire(name2).permanent());
  CHECK(wire(name2).permanent());
  atom::collect();
  CHECK(exists(name2));
}

TEST_CASE("a full table takes atoms again once the dynamic ones are gone") {
  settle();
  const std::size_t limit0 = atom::limit(), count0 = atom::count();
  atom::set_limit(count0 + 100);
  std::vector<atom> held;
  for (int i = 0; i < 100; ++i) held.push_back(wire(unique_name("atom_test_fill")));
  atom_status st = atom_status::ok;
  CHECK_FALSE(atom::from_wire_utf8(unique_name("atom_test_fill"), &st));
  CHECK(st == atom_status::table_full);
  // the decoder says so too
  decode_result r = decode(atom_list_bytes({unique_name("atom_test_fill")}));
  CHECK(r.ec == make_error_code(error::atom_table_full));
  held.erase(held.begin(), held.begin() + 10);
  CHECK(atom::count() == count0 + 100);  // unreferenced, they linger...
  // ...and make room when the table is full
  for (int i = 0; i < 10; ++i) CHECK(atom::from_wire_utf8(unique_name("atom_test_reuse")));
  held.push_back(wire(unique_name("atom_test_reuse")));
  held.clear();
  atom::collect();
  CHECK(atom::count() == count0);
  atom::set_limit(limit0);
}

TEST_CASE("threads creating, sharing and dropping the same dynamic atoms") {
  settle();
  const std::size_t count0 = atom::count(), dynamic0 = atom::dynamic_count();
  constexpr int threads = 4, rounds = 300, names = 64;
  // Every thread looks each name of a round up once (fewer lookups than promote_after_uses, so none becomes
  // permanent) while the others create, copy and free the same names: the count of a name goes to 0 and back.
  std::mutex m;
  std::vector<term> shared;  // terms passed between threads
  std::atomic<int> failures{0};
  auto work = [&](int k) {
    for (int r = 0; r < rounds; ++r) {
      std::vector<term> mine;
      for (int i = 0; i < names; ++i) {
        const std::string s = "atom_test_conc_" + std::to_string(r) + "_" + std::to_string(i);
        auto a = atom::from_wire_utf8(s);
        if (!a || a->text() != s) {
          ++failures;
          continue;
        }
        mine.push_back(term::tuple({term(*a), term(k)}));
      }
      {
        std::lock_guard lock(m);
        for (std::size_t i = 0; i < mine.size(); i += 8) shared.push_back(mine[i]);
        if (shared.size() > 256) shared.erase(shared.begin(), shared.begin() + 128);
      }
      for (const term& t : mine)
        if (t.element(0).atom_value().permanent()) ++failures;
    }
  };
  std::vector<std::thread> ts;
  for (int k = 0; k < threads; ++k) ts.emplace_back(work, k);
  for (auto& t : ts) t.join();
  CHECK(failures.load() == 0);
  shared.clear();
  atom::collect();
  CHECK(atom::count() == count0);
  CHECK(atom::dynamic_count() == dynamic0);
  CHECK_FALSE(exists("atom_test_conc_0_0"));
}
