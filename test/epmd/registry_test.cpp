#include <doctest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "epmd/registry.hpp"

using namespace cnode::epmd;

namespace {
node_info node(std::string name, std::uint16_t port = 5000, std::uint16_t high = 6) {
  node_info n;
  n.name = std::move(name);
  n.port = port;
  n.highest_version = high;
  return n;
}
std::string text(const bytes& b) { return std::string(b.begin() + 4, b.end()); }
constexpr std::uint64_t t0 = 1795338296;  // a time(NULL) value; creations observed from epmd were t + 1
}  // namespace

TEST_CASE("a new name gets time + 1, as observed from OTP 25 epmd") {
  registry r;
  auto a = r.register_node(1, 5, node("a"), t0);
  CHECK(a.ok);
  CHECK(a.creation == t0 + 1);
  auto b = r.register_node(2, 6, node("b"), t0);
  CHECK(b.creation == t0 + 1);  // per-name counters: two names in one second share a creation
}

TEST_CASE("a taken name is refused with creation 99") {
  registry r;
  r.register_node(1, 5, node("a"), t0);
  auto again = r.register_node(2, 6, node("a", 5001), t0);
  CHECK_FALSE(again.ok);
  CHECK(again.creation == 99);
  CHECK(again.refusal == error::name_in_use);
  CHECK(r.find("a")->info.port == 5000);
  CHECK_FALSE(r.unregister_connection(2));  // the refused connection held nothing
  CHECK(r.find("a"));
}

TEST_CASE("re-registration bumps the name's counter, even much later") {
  registry r;
  r.register_node(1, 5, node("a"), t0);
  CHECK(r.unregister_connection(1) == "a");
  CHECK_FALSE(r.find("a"));
  CHECK(r.unused_count() == 1);
  auto again = r.register_node(2, 5, node("a"), t0 + 1000);
  CHECK(again.creation == t0 + 2);
  CHECK(r.unused_count() == 0);
  r.unregister_connection(2);
  CHECK(r.register_node(3, 5, node("a"), t0).creation == t0 + 3);
}

TEST_CASE("16-bit creations are counter % 3 + 1") {
  registry r;
  auto h = r.register_node(1, 5, node("h", 5000, 5), t0);  // t0 + 1 = 1795338297, % 3 == 0
  CHECK(h.creation == 1);
  r.unregister_connection(1);
  CHECK(r.register_node(2, 5, node("h", 5000, 5), t0).creation == 2);
  auto refused = r.register_node(3, 5, node("h", 5000, 5), t0);
  CHECK(refused.creation == 99);
}

TEST_CASE("small counters jump to 4") {
  registry r;
  CHECK(r.register_node(1, 5, node("a"), 0).creation == 4);
  CHECK(r.register_node(2, 5, node("b"), 0xffffffffu).creation == 4);  // wraps to 0 then 4
}

TEST_CASE("invalid registrations are refused") {
  registry r;
  CHECK(r.register_node(1, 5, node(std::string(256, 'x')), t0).refusal == error::name_too_long);
  CHECK(r.register_node(1, 5, node("\xff"), t0).refusal == error::invalid_name_encoding);
  auto n = node("e");
  n.extra = std::string(1021, 'e');
  CHECK(r.register_node(1, 5, n, t0).refusal == error::extra_too_long);
  CHECK(r.active_count() == 0);
}

TEST_CASE("NAMES lists newest first; DUMP adds the unused names oldest first") {
  registry r;
  r.register_node(1, 5, node("foo", 5000), t0);
  r.register_node(2, 7, node("bar", 5002), t0);
  CHECK(text(r.names_response(41529)) == "name bar at port 5002\nname foo at port 5000\n");
  bytes names = r.names_response(41529);
  bytes header(names.begin(), names.begin() + 4);
  CHECK(header == bytes{0, 0, 0xa2, 0x39});
  r.unregister_connection(1);
  std::string want = std::string("active name     <bar> at port 5002, fd = 7\n") + '\0' +
                     "old/unused name <foo>, port = 5000, fd = 5 \n" + '\0';
  CHECK(text(r.dump_response(41529)) == want);
}

TEST_CASE("STOP unregisters by name and names the connection to close") {
  registry r;
  r.register_node(7, 5, node("a"), t0);
  CHECK(r.unregister_name("a") == connection_id{7});
  CHECK_FALSE(r.unregister_name("a"));
  CHECK_FALSE(r.unregister_connection(7));
}

TEST_CASE("the unused list is bounded; past it the oldest entry is taken over with its counter") {
  registry r(2);
  std::vector<std::uint32_t> creations;
  for (connection_id i = 0; i < 4; ++i) {
    creations.push_back(r.register_node(i, 5, node(fmt::format("n{}", i)), t0 + 10 * i).creation);
    r.unregister_connection(i);
  }
  // n3 arrived when 3 (> 2) names were unused: it took over n0's entry and counter, not bumped (node_reg2).
  CHECK(creations == std::vector<std::uint32_t>{t0 + 1, t0 + 11, t0 + 21, t0 + 1});
  CHECK(r.unused_count() == 3);
  auto fresh = r.register_node(10, 5, node("fresh"), t0 + 999);
  CHECK(fresh.creation == t0 + 11);  // n1's counter
  std::vector<std::string> unused;
  r.for_each_unused([&](const registered_node& n) { unused.push_back(n.info.name); });
  CHECK(unused == std::vector<std::string>{"n2", "n3"});
}

TEST_CASE("a thousand nodes register, are found and leave") {
  registry r;
  for (connection_id i = 0; i < 1000; ++i)
    REQUIRE(r.register_node(i, static_cast<int>(i), node(fmt::format("node{}", i), static_cast<std::uint16_t>(10000 + i)), t0).ok);
  CHECK(r.active_count() == 1000);
  CHECK(r.find("node500")->info.port == 10500);
  for (connection_id i = 0; i < 1000; ++i) REQUIRE(r.unregister_connection(i));
  CHECK(r.active_count() == 0);
  CHECK(r.unused_count() == 1000);
}
