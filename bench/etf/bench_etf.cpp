// bench_etf: nanoseconds per term to decode and to encode the fixed corpus (bench/etf/corpus.cpp), for us, the BEAM
// (binary_to_term/term_to_binary) and libei, all on the same bytes in the same run, with the ratios.
//
// "ours" decodes with decode_prefix on a shared buffer, which is how the distribution layer decodes a packet: large
// binaries refer into the packet instead of being copied (binary_to_term does the same with refc binaries); the
// copying decode(span) is shown as well. Targets: decode at least 2x faster than the BEAM and not slower than
// libei; encode not slower than either.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <stdexcept>

#include "bench.hpp"
#include "etf/codec.hpp"

using namespace cnode::etf;
using namespace cnode::etf::bench;

namespace {

template <typename T>
void keep(T&& v) {
  asm volatile("" : : "g"(&v) : "memory");  // the compiler must assume the result is used
}

// The loop `--count` runs: its own function, so that `valgrind --tool=callgrind --toggle-collect=*counted_loop*`
// counts the instructions of the iterations and nothing of the set-up.
[[gnu::noinline]] void counted_loop(const std::function<void()>& fn, long n) {
  for (long i = 0; i < n; ++i) fn();
}

// bench_etf --count ITEM dec|dec-copy|enc|ei-dec|ei-enc N: runs one operation N times on one corpus item, untimed
// and without the BEAM. Under callgrind that gives instruction counts, which a loaded machine does not disturb.
int count(const std::vector<item>& corpus, const std::string& name, const std::string& what, long n) {
  for (const item& it : corpus) {
    if (it.name != name) continue;
    shared_bytes shared = shared_bytes::copy(it.bytes);
    std::vector<std::uint8_t> buf;
    buf.reserve(it.bytes.size());
    ei_peer ei(it);
    std::function<void()> fn;
    if (what == "dec") fn = [&] { keep(decode_prefix(shared, 0)); };
    else if (what == "dec-copy") fn = [&] { keep(decode(it.bytes)); };
    else if (what == "enc") fn = [&] {
      buf.clear();
      encode(it.value, buf);
      keep(buf);
    };
    else if (what == "ei-dec") fn = [&] { ei.decode(); };
    else if (what == "ei-enc") fn = [&] { ei.encode(); };
    else {
      std::fprintf(stderr, "bench_etf: --count: no operation %s\n", what.c_str());
      return 2;
    }
    fn();  // warm: thread-local caches and scratch stacks as in a steady stream
    counted_loop(fn, n);
    return 0;
  }
  std::fprintf(stderr, "bench_etf: --count: no item %s\n", name.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<item> corpus = make_corpus();
  if (argc == 5 && std::string(argv[1]) == "--count") return count(corpus, argv[2], argv[3], std::atol(argv[4]));
  std::map<std::string, beam_figures> beam;
  try {
    beam = run_beam(corpus);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_etf: the BEAM side failed, its columns stay empty: %s\n", e.what());
  }

  std::printf("%-20s %8s | %9s %9s %9s %9s %6s %6s | %9s %9s %9s %6s %6s\n", "item", "bytes", "dec ours", "dec copy",
              "dec beam", "dec ei", "beam/", "ei/", "enc ours", "enc beam", "enc ei", "beam/", "ei/");
  std::printf("%-20s %8s | %9s %9s %9s %9s %6s %6s | %9s %9s %9s %6s %6s\n", "", "", "ns", "ns", "ns", "ns", "ours",
              "ours", "ns", "ns", "ns", "ours", "ours");
  bool ok = true;
  for (const item& it : corpus) {
    shared_bytes shared = shared_bytes::copy(it.bytes);
    decode_result check = decode_prefix(shared, 0);
    if (!check || !(check.value == it.value)) {
      std::fprintf(stderr, "bench_etf: %s does not round-trip\n", it.name.c_str());
      return 1;
    }
    double dec = best_ns([&] { keep(decode_prefix(shared, 0)); });
    double dec_copy = best_ns([&] { keep(decode(it.bytes)); });
    std::vector<std::uint8_t> buf;
    buf.reserve(it.bytes.size());
    double enc = best_ns([&] {
      buf.clear();
      encode(it.value, buf);
      keep(buf);
    });

    ei_peer ei(it);
    double ei_dec = 0, ei_enc = 0;
    try {
      ei_dec = best_ns([&] { ei.decode(); });
      ei_enc = best_ns([&] { ei.encode(); });
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_etf: %s: %s\n", it.name.c_str(), e.what());
    }
    beam_figures b = beam.count(it.name) ? beam[it.name] : beam_figures{};
    auto ratio = [](double peer, double ours) { return peer > 0 && ours > 0 ? peer / ours : 0.0; };
    std::printf("%-20s %8zu | %9.0f %9.0f %9.0f %9.0f %6.2f %6.2f | %9.0f %9.0f %9.0f %6.2f %6.2f\n", it.name.c_str(),
                it.bytes.size(), dec, dec_copy, b.decode_ns, ei_dec, ratio(b.decode_ns, dec), ratio(ei_dec, dec), enc,
                b.encode_ns, ei_enc, ratio(b.encode_ns, enc), ratio(ei_enc, enc));
    std::fflush(stdout);
    ok = ok && ratio(b.decode_ns, dec) >= 2 && ratio(ei_dec, dec) >= 1 && ratio(b.encode_ns, enc) >= 1 &&
         ratio(ei_enc, enc) >= 1;
  }
  std::printf("targets (decode >= 2x BEAM and >= libei, encode >= BEAM and >= libei): %s\n",
              ok ? "all met" : "NOT all met");
  return 0;
}
