// The fixed benchmark corpus (the items named in the ETF issue).
#include <string>

#include "bench.hpp"
#include "etf/codec.hpp"

namespace cnode::etf::bench {
namespace {

term binary_of(const std::string& s) { return term::binary(std::string_view(s)); }

// One "record" of the mixed term: tuples, lists, maps, binaries, atoms, floats, strings and a pid, six deep.
term record(int i) {
  term nested = term::tuple({term(atom("ok")), term::tuple({term(atom("deeper")), term::list({term(1), term(2), term(3)}),
                                                            binary_of("bin")})});
  term meta = term::map({{term(atom("id")), term(i)},
                         {term(atom("tags")), term::list({term(atom("x")), term(atom("y"))})},
                         {term(atom("score")), term(0.5 + i)},
                         {term(atom("nested")), nested}});
  return term::tuple({term(atom("user")), term(i), binary_of("name-" + std::to_string(i)), term(1.5 * i),
                      term::list({term::tuple({term(atom("tag")), term(i * 7919), term::list({term(atom("a")),
                                  term(atom("b")), term(atom("c"))})}), meta}),
                      term::string("some string text"), term::pid({atom("a@localhost"), 85, 0, 3})});
}

}  // namespace

std::vector<item> make_corpus() {
  std::vector<item> out;
  auto add = [&](std::string name, term t) { out.push_back({std::move(name), t, encode(t)}); };

  add("small_tuple", term::tuple({term(atom("get")), binary_of("key"), term(42)}));

  std::vector<std::pair<term, term>> kvs;
  for (int i = 0; i < 100; ++i)
    kvs.emplace_back(binary_of("key-" + std::to_string(i)),
                     term::tuple({term(i), binary_of("value"), term(atom("ok"))}));
  add("map_100", term::map(std::move(kvs)));

  std::vector<term> oks;
  for (int i = 0; i < 100; ++i) oks.push_back(term::tuple({term(atom("ok")), term(i), term(atom("some_atom"))}));
  add("list_100_tuples", term::list(std::move(oks)));

  std::string mib(std::size_t{1} << 20, '\0');
  for (std::size_t i = 0; i < mib.size(); ++i) mib[i] = static_cast<char>(i * 2654435761u >> 24);
  add("binary_1mib", binary_of(mib));

  std::vector<term> ints;
  for (int i = 0; i < 10000; ++i) ints.push_back(term(i * 37 - 100000));
  add("list_10k_ints", term::list(std::move(ints)));

  add("integer_1000_digits", term::from_big(big_int(std::string(1000, '7'))));

  std::vector<term> records;
  std::size_t size = 0;
  for (int i = 0; size < (std::size_t{64} << 10); ++i) {
    records.push_back(record(i));
    size = encode(term::list(std::vector<term>(records))).size();
  }
  add("mixed_64kib", term::list(std::move(records)));
  return out;
}

}  // namespace cnode::etf::bench
