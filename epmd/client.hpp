// EPMD client: register a node, look one up, list names, as C++20 coroutines on Asio.
//
//   using namespace cnode::epmd;
//   epmd_endpoint epmd{"localhost", epmd_port_from_env()};
//   registration reg = co_await register_node(epmd, node_registration("cnode", 9100));  // throws epmd_exception
//   reg.creation();                       // use in every pid/ref/port of this node
//   node_info peer = co_await port_please(epmd, "a");
//   node_address a = co_await lookup_node("a@localhost");  // NAME@HOST -> {host, distribution port}
//   std::vector<name_entry> all = co_await names(epmd);
//
// Every function has a non-throwing twin named try_*, returning result<T>: a value or a failure (error_code plus
// a sentence that says what happened, e.g. "name cnode already registered at 127.0.0.1:4369" or
// "no EPMD answering at localhost:4369 (Connection refused)"). Every network wait is bounded by a timeout
// (client_options::timeout), including the host name resolution. Host names go through the system resolver
// (asynchronously) and every address it returns is tried in order, IPv4 and IPv6 alike.
//
// A registration owns the connection it registered on: EPMD unregisters the name when that connection closes, so
// destroying or close()-ing the registration unregisters the node. wait_lost() completes if EPMD goes away.
//
// EPMD-less operation: a node_address {host, port} can be given directly (parse_node_address("host:port")); the
// distribution layer connects to it without asking any EPMD.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "epmd/error.hpp"
#include "epmd/protocol.hpp"

namespace cnode::epmd {

namespace asio = boost::asio;

// A value or a failure. Deliberately small: std::expected is C++23.
template <class T>
class result {
 public:
  result(T value) : v_(std::move(value)) {}
  result(failure f) : v_(std::move(f)) {}
  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return check(), std::get<0>(v_); }
  const T& value() const& { return check(), std::get<0>(v_); }
  T&& value() && { return check(), std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const failure& error() const { return std::get<1>(v_); }

 private:
  void check() const {
    if (!has_value()) throw epmd_exception(std::get<1>(v_));
  }
  std::variant<T, failure> v_;
};

// GCC 12 destroys a brace-initialised *aggregate* temporary inside a co_await expression twice (seen as a double
// free; `co_await f(agg{...})` or `co_await f(g(agg{...}))`). The argument types below therefore have constructors
// (they are not aggregates), and code that awaits should build aggregates in named variables first.

// Where an EPMD listens.
struct epmd_endpoint {
  epmd_endpoint() = default;
  epmd_endpoint(std::string h, std::uint16_t p) : host(std::move(h)), port(p) {}
  std::string host = "localhost";
  std::uint16_t port = default_port;
};

// A node's distribution listener, found through EPMD or given directly (EPMD-less).
struct node_address {
  std::string host;
  std::uint16_t port = 0;
  friend bool operator==(const node_address&, const node_address&) = default;
};

struct client_options {
  std::chrono::milliseconds timeout{5000};
};

// ERL_EPMD_PORT when it holds a port number, else 4369.
std::uint16_t epmd_port_from_env();
// Parses a port number (1..65535); nullopt otherwise.
std::optional<std::uint16_t> parse_port(std::string_view s);

// "alive@host" split at the '@'; both parts non-empty.
struct node_name {
  std::string alive;
  std::string host;
};
result<node_name> parse_node_name(std::string_view full);
// "host:port" or "[v6addr]:port" for EPMD-less peers.
result<node_address> parse_node_address(std::string_view s);

// What a node registers.
struct node_registration {
  node_registration() = default;
  node_registration(std::string n, std::uint16_t p, node_type t = node_type::normal)
      : name(std::move(n)), port(p), type(t) {}
  std::string name;             // the alive part
  std::uint16_t port = 0;       // distribution port
  node_type type = node_type::normal;
  std::uint8_t protocol = 0;
  std::uint16_t highest_version = 6;  // >= 6 gets ALIVE2_X_RESP (32-bit creation), else ALIVE2_RESP
  std::uint16_t lowest_version = 5;
  std::string extra;
};

class registration {
 public:
  registration(asio::ip::tcp::socket socket, std::string name, std::uint32_t creation, bool extended,
               std::string epmd_description);
  registration(registration&&) noexcept = default;
  registration& operator=(registration&&) noexcept = default;
  ~registration();

  const std::string& name() const noexcept { return name_; }
  std::uint32_t creation() const noexcept { return creation_; }
  // False when the creation came in the 16-bit ALIVE2_RESP.
  bool extended_creation() const noexcept { return extended_; }
  // "host:port" of the EPMD that holds the registration.
  const std::string& epmd() const noexcept { return epmd_; }
  bool active() const noexcept { return socket_.is_open(); }
  // Unregisters (closes the connection). Idempotent.
  void close() noexcept;
  // Completes when the EPMD side closes the connection (EPMD stopped or the name was forcibly unregistered), or
  // with operation_aborted after close().
  asio::awaitable<boost::system::error_code> wait_lost();

 private:
  asio::ip::tcp::socket socket_;
  std::string name_;
  std::uint32_t creation_ = 0;
  bool extended_ = true;
  std::string epmd_;
};

// Resolves host with the system resolver; numeric addresses are taken as they are.
asio::awaitable<result<std::vector<asio::ip::tcp::endpoint>>> try_resolve(std::string host, std::uint16_t port,
                                                                           client_options opts = {});

asio::awaitable<result<registration>> try_register_node(epmd_endpoint epmd, node_registration node,
                                                        client_options opts = {});
asio::awaitable<registration> register_node(epmd_endpoint epmd, node_registration node, client_options opts = {});

asio::awaitable<result<node_info>> try_port_please(epmd_endpoint epmd, std::string name, client_options opts = {});
asio::awaitable<node_info> port_please(epmd_endpoint epmd, std::string name, client_options opts = {});

asio::awaitable<result<std::vector<name_entry>>> try_names(epmd_endpoint epmd, client_options opts = {});
asio::awaitable<std::vector<name_entry>> names(epmd_endpoint epmd, client_options opts = {});

// NAME@HOST -> the node's distribution address, asking the EPMD on HOST at epmd_port.
asio::awaitable<result<node_address>> try_lookup_node(std::string full_name,
                                                      std::uint16_t epmd_port = epmd_port_from_env(),
                                                      client_options opts = {});
asio::awaitable<node_address> lookup_node(std::string full_name, std::uint16_t epmd_port = epmd_port_from_env(),
                                          client_options opts = {});

// Is an EPMD answering at host:port? (A NAMES_REQ that gets its 4-byte header back.) Used by --embedded-epmd.
asio::awaitable<bool> epmd_answering(epmd_endpoint epmd, client_options opts = {});
// The same, blocking, on a private io_context: for a program's start-up before its own io_context runs.
bool epmd_answering_sync(const epmd_endpoint& epmd, std::chrono::milliseconds timeout = std::chrono::seconds(2));

// Sends one raw request and returns every byte until EPMD closes (e.g. DUMP_REQ, KILL_REQ, STOP_REQ).
asio::awaitable<result<bytes>> try_raw_request(epmd_endpoint epmd, request r, client_options opts = {});

}  // namespace cnode::epmd
