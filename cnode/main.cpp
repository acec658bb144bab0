// The cnode executable: a C++ node that joins an Erlang/Elixir cluster. Options follow erl's where erl has one.
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "dist/wake_hold.hpp"
#include "cnode/host.hpp"
#include "cnode/log.hpp"
#include "dist/tls.hpp"
#include "epmd/client.hpp"

namespace {

using namespace cnode;

constexpr const char* usage = R"(usage: cnode [options]

  --sname NAME[@HOST]     short node name (host: this machine's short host name)      [default: cnode]
  --name NAME@HOST        long node name
  --cookie COOKIE         magic cookie (default: ~/.erlang.cookie, created if missing); ps shows it: prefer
                          --cookie-file
  --cookie-file FILE      read the cookie from FILE (owner-only permissions, as erl requires of its cookie file)
  --node-cookie NODE=COOKIE  a different cookie for one peer (repeatable)
  --hidden                connect as a hidden node (not in nodes(), no global/pg traffic)
  --epmd-port PORT        EPMD port (default: $ERL_EPMD_PORT, else 4369)
  --embedded-epmd         start cnode's own EPMD on that port when none answers
  --no-epmd               do not register with EPMD (use with --listen-port)
  --listen-port PORT      distribution port (default: any free port)
  --listen-address ADDR   distribution listen address (default: 0.0.0.0)
  --peer NODE=HOST:PORT   reach NODE at HOST:PORT without asking EPMD (repeatable)
  --connect NODE          connect to NODE at start, retrying with backoff (repeatable)
  --net-ticktime SECONDS  as erl -kernel net_ticktime (default: 60)
  --net-setuptime SECONDS as erl -kernel net_setuptime: bound on each handshake step, TLS's too (default: 7)
  --allow NODE            only NODE may connect, and only NODE is dialled (repeatable; net_kernel:allow/1's
                          forms: name@host, host, name@)
  --allow-file FILE       the same, one node a line ('#' starts a comment)
  --tls-optfile FILE      TLS distribution (inet_tls_dist) with the options of FILE, erl -ssl_dist_optfile's
                          [{server, [...]}, {client, [...]}]; the --tls-* options below win over it
  --tls-cert FILE         TLS distribution: this node's certificate (PEM, chain after it)
  --tls-key FILE          its private key (PEM; default: in the --tls-cert file)
  --tls-cacerts FILE      the CAs that vouch for peers (PEM)
  --tls-verify peer|none  check the peer's certificate, both ways (default: peer)
  --tls-fail-if-no-peer-cert true|false  with verify peer: refuse a peer that sends no certificate (default: true)
  --tls-server-name-indication NAME|disable  the name a server's certificate must carry (default: the host part
                          of the node dialled)
  --tls-versions LIST     1.2,1.3 (default: both)
  --dist-buf-busy-limit KB  outbound bytes per connection before senders wait (default: 1024, as erl +zdbbl)
  --max-message-bytes N   a longer message from a peer (reassembled fragments too) closes its connection
                          (default: 134217728, 128 MiB)
  --max-partial-bytes N   bytes held for fragmented messages still incomplete, all peers together; the
                          connection whose fragment would cross it is closed (default: 536870912, 512 MiB)
  --dist-atom-cache       offer DIST_HDR_ATOM_CACHE: atoms sent before go as cache references, both ways
                          (default: off; docs/dist.md has the measurements)
  --dist-batch-sends      what a process sends in one run wakes its connection's writer once, at the run's end
  --no-dist-batch-sends   (default: on with 2 threads or more, off with one; docs/dist.md has the measurements)
  --max-mailbox N         a process with more than N messages waiting is killed (reason killed) (default: off)
  --max-mailbox-action A  kill | log: kill the process, or log once that it crossed N (default: kill)
  --threads N             I/O threads (default: 1 on 2 cores or fewer, else the number of cores)
  --busy-wait-us N        an I/O thread out of work polls for N microseconds before it sleeps (the BEAM's
                          scheduler busy wait, +sbwt): lower latency for CPU spent (default: 0, sleep at once)
  --log-level LEVEL       error | warning | info | debug, for every layer (default: info)
  --log-format FORMAT     text | json (one JSON object a line, for log shippers; default: text)
  --stop-timeout MS       how long each service may take to stop on SIGTERM (default: 5000)
  --data-dir DIR          where services keep what survives a restart (DIR/crdt/, ...; created if missing)
  --help
)";

struct options {
  std::vector<std::string> service_args;
  unsigned stop_timeout_ms = 5000;
  std::string name;
  bool long_name = false;
  std::optional<std::string> cookie;
  std::optional<std::string> cookie_file;
  std::vector<std::pair<std::string, std::string>> node_cookies;
  bool hidden = false;
  std::optional<std::uint16_t> epmd_port;
  bool embedded_epmd = false;
  bool use_epmd = true;
  std::uint16_t listen_port = 0;
  std::string listen_address = "0.0.0.0";
  std::vector<std::pair<std::string, epmd::node_address>> peers;
  std::vector<std::string> connect;
  unsigned net_ticktime = 60;
  unsigned net_setuptime = 7;
  std::vector<std::string> allow;
  std::vector<std::string> allow_files;
  std::optional<std::string> tls_optfile;
  dist::tls_role_options tls;  // from --tls-*: both roles
  bool tls_given = false;      // some --tls-* option was given
  std::size_t busy_limit_kb = 1024;
  std::size_t max_message = 128 * 1024 * 1024;
  std::size_t max_partial = 512 * 1024 * 1024;
  bool atom_cache = false;
  std::optional<bool> batch_sends;  // unset: on with 2 threads or more
  node::mailbox_limit mailbox;
  unsigned threads = 0;
  unsigned busy_wait_us = 0;
  std::optional<std::string> data_dir;
};

[[noreturn]] void fail(const std::string& msg) {
  std::cerr << "cnode: " << msg << "\n(see cnode --help)\n";
  std::exit(2);
}

unsigned long number(const std::string& opt, const std::string& v, unsigned long max) {
  char* end = nullptr;
  unsigned long n = std::strtoul(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n > max) fail(opt + " wants a number up to " + std::to_string(max) + ", not '" + v + "'");
  return n;
}

options parse(int argc, char** argv, const option_list& service_options) {
  options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) fail(a + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << usage << "\nservices built into this cnode:" << service_options.usage();
      std::exit(0);
    } else if (a == "--sname") {
      o.name = value();
      o.long_name = false;
    } else if (a == "--name") {
      o.name = value();
      o.long_name = true;
    } else if (a == "--cookie") {
      o.cookie = value();
    } else if (a == "--cookie-file") {
      o.cookie_file = value();
    } else if (a == "--node-cookie") {
      std::string v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) fail("--node-cookie wants NODE=COOKIE");
      o.node_cookies.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--hidden") {
      o.hidden = true;
    } else if (a == "--epmd-port") {
      o.epmd_port = static_cast<std::uint16_t>(number(a, value(), 65535));
    } else if (a == "--embedded-epmd") {
      o.embedded_epmd = true;
    } else if (a == "--no-epmd") {
      o.use_epmd = false;
    } else if (a == "--listen-port") {
      o.listen_port = static_cast<std::uint16_t>(number(a, value(), 65535));
    } else if (a == "--listen-address") {
      o.listen_address = value();
    } else if (a == "--peer") {
      std::string v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) fail("--peer wants NODE=HOST:PORT");
      auto addr = epmd::parse_node_address(v.substr(eq + 1));
      if (!addr) fail("--peer: " + addr.error().message);
      o.peers.emplace_back(v.substr(0, eq), addr.value());
    } else if (a == "--connect") {
      o.connect.push_back(value());
    } else if (a == "--net-ticktime") {
      o.net_ticktime = static_cast<unsigned>(number(a, value(), 3600 * 24));
      if (o.net_ticktime == 0) fail("--net-ticktime must be at least 1");
    } else if (a == "--net-setuptime") {
      o.net_setuptime = static_cast<unsigned>(number(a, value(), 3600));
      if (o.net_setuptime == 0) fail("--net-setuptime must be at least 1");
    } else if (a == "--allow") {
      o.allow.push_back(value());
    } else if (a == "--allow-file") {
      o.allow_files.push_back(value());
    } else if (a == "--tls-optfile") {
      o.tls_optfile = value();
    } else if (a.starts_with("--tls-")) {
      o.tls_given = true;
      if (a == "--tls-cert") {
        o.tls.certfile = value();
      } else if (a == "--tls-key") {
        o.tls.keyfile = value();
      } else if (a == "--tls-cacerts") {
        o.tls.cacertfile = value();
      } else if (a == "--tls-verify") {
        std::string v = value();
        if (v != "peer" && v != "none") fail("--tls-verify: peer or none");
        o.tls.verify_peer = v == "peer";
      } else if (a == "--tls-fail-if-no-peer-cert") {
        std::string v = value();
        if (v != "true" && v != "false") fail("--tls-fail-if-no-peer-cert: true or false");
        o.tls.fail_if_no_peer_cert = v == "true";
      } else if (a == "--tls-server-name-indication") {
        std::string v = value();
        if (v.empty()) fail("--tls-server-name-indication: a host name, or disable");
        if (v == "disable") o.tls.sni_disabled = true;
        else o.tls.server_name_indication = v;
      } else if (a == "--tls-versions") {
        std::string error;
        auto v = dist::parse_tls_versions(value(), error);
        if (!v) fail("--tls-versions: " + error);
        o.tls.versions = *v;
      } else {
        fail("unknown option " + a);
      }
    } else if (a == "--dist-buf-busy-limit") {
      o.busy_limit_kb = number(a, value(), 2 * 1024 * 1024);
    } else if (a == "--max-message-bytes") {
      o.max_message = number(a, value(), 0xffffffffUL);
      if (o.max_message < 1024) fail("--max-message-bytes must be at least 1024");
    } else if (a == "--max-partial-bytes") {
      o.max_partial = number(a, value(), 0xffffffffffffUL);
    } else if (a == "--dist-atom-cache") {
      o.atom_cache = true;
    } else if (a == "--dist-batch-sends") {
      o.batch_sends = true;
    } else if (a == "--no-dist-batch-sends") {
      o.batch_sends = false;
    } else if (a == "--max-mailbox") {
      o.mailbox.max = number(a, value(), 0xffffffffUL);
    } else if (a == "--max-mailbox-action") {
      std::string v = value();
      if (v != "kill" && v != "log") fail("--max-mailbox-action: kill or log");
      o.mailbox.kill = v == "kill";
    } else if (a == "--threads") {
      o.threads = static_cast<unsigned>(number(a, value(), 1024));
    } else if (a == "--busy-wait-us") {
      o.busy_wait_us = static_cast<unsigned>(number(a, value(), 1000000));
    } else if (a == "--log-level") {
      log::level l;
      if (!log::parse_level(value(), l)) fail("--log-level: error, warning, info or debug");
      log::threshold() = l;
    } else if (a == "--log-format") {
      log::format f;
      if (!log::parse_format(value(), f)) fail("--log-format: text or json");
      log::output_format() = f;
    } else if (a == "--data-dir") {
      o.data_dir = value();
      if (o.data_dir->empty()) fail("--data-dir needs a directory");
    } else if (a == "--stop-timeout") {
      o.stop_timeout_ms = static_cast<unsigned>(number(a, value(), 3'600'000));
    } else if (const auto* so = service_options.find(a)) {
      o.service_args.push_back(a);
      if (!so->metavar.empty()) o.service_args.push_back(value());
    } else {
      fail("unknown option " + a);
    }
  }
  if (o.name.empty()) o.name = "cnode";
  if (!o.use_epmd && o.listen_port == 0) fail("--no-epmd needs --listen-port");
  if (o.tls_given && !o.tls.certfile && !o.tls_optfile)
    fail("the --tls-* options need --tls-cert FILE or --tls-optfile FILE (which turn TLS distribution on)");
  return o;
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return !in.bad();
}

// --allow-file: one node a line; blank lines and '#' comments skipped. False with `error` set when unreadable.
bool read_allow_file(const std::string& path, std::vector<std::string>& allow, std::string& error) {
  std::string text;
  if (!read_file(path, text)) {
    error = fmt::format("--allow-file {}: {}", path, std::strerror(errno));
    return false;
  }
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) continue;
    const auto e = line.find_last_not_of(" \t\r");
    allow.push_back(line.substr(b, e - b + 1));
  }
  return true;
}

// The TLS options: the optfile's (if any), then the command line's for both roles. False with `error` set.
bool load_tls(const options& o, std::optional<dist::tls_options>& out, std::string& error) {
  if (!o.tls_optfile && !o.tls.certfile) return true;
  dist::tls_options t;
  if (o.tls_optfile) {
    std::string text;
    if (!read_file(*o.tls_optfile, text)) {
      error = fmt::format("--tls-optfile {}: {}", *o.tls_optfile, std::strerror(errno));
      return false;
    }
    auto r = dist::parse_tls_optfile(text, *o.tls_optfile);
    if (!r.error.empty()) {
      error = "--tls-optfile " + r.error;
      return false;
    }
    for (const auto& line : r.ignored) log::info("--tls-optfile {}: {}", *o.tls_optfile, line);
    t = std::move(r.options);
  }
  t.override_both(o.tls);
  out = std::move(t);
  return true;
}

// A pasteable line for the user: iex with this node's cookie, read from its file (the cookie itself is never
// written to the log).
std::string iex_hint(const options& o, const std::string& node, std::uint16_t epmd_port, const std::string& path) {
  const bool given = o.cookie || path.empty();
  std::string cookie = given ? std::string("\"$COOKIE\"") : "\"$(cat " + path + ")\"";
  std::string you = o.long_name ? "--name you@" + node.substr(node.find('@') + 1) : std::string("--sname you");
  std::string env = epmd_port == 4369 ? std::string() : fmt::format("ERL_EPMD_PORT={} ", epmd_port);
  return fmt::format("{}iex {} --cookie {} -e 'IO.inspect Node.ping(:\"{}\")'{}", env, you, cookie, node,
                     given ? "   (with COOKIE set to the cookie given with --cookie)" : "");
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  auto services = built_services();
  option_list service_options;
  for (auto& s : services) {
    service_options.owner = std::string(s->name());
    s->add_options(service_options);
  }
  options o = parse(argc, argv, service_options);

  host_config cfg;
  cfg.name = o.name;
  cfg.long_name = o.long_name;
  cfg.cookie = o.cookie;
  cfg.cookie_file = o.cookie_file;
  cfg.mailbox = o.mailbox;
  if (o.cookie) log::warning("--cookie puts the cookie on the command line, where ps shows it: prefer --cookie-file");
  cfg.embedded_epmd = o.embedded_epmd;
  cfg.threads = o.threads;
  // Before any thread but this one runs. With one thread the process and the writer share it anyway: the hold
  // would only move the write to the run's end (docs/dist.md).
  cnode::dist::writer_wake_hold::enable(o.batch_sends.value_or((o.threads ? o.threads : default_threads()) >= 2));
  cfg.busy_wait = std::chrono::microseconds(o.busy_wait_us);
  cfg.connect = o.connect;
  cfg.stop_timeout = std::chrono::milliseconds(o.stop_timeout_ms);
  cfg.service_args = o.service_args;
  if (o.data_dir) cfg.data_dir = std::filesystem::path(*o.data_dir);
  distribution_config& dc = cfg.dist;
  dc.hidden = o.hidden;
  for (auto& [n, c] : o.node_cookies) dc.cookies.per_node[n] = c;
  dc.listen_address = o.listen_address;
  dc.listen_port = o.listen_port;
  dc.use_epmd = o.use_epmd;
  dc.epmd_port = o.epmd_port.value_or(epmd::epmd_port_from_env());
  dc.net_ticktime = std::chrono::seconds(o.net_ticktime);
  dc.setup_time = std::chrono::seconds(o.net_setuptime);
  dc.allow = o.allow;
  std::string error;
  for (const auto& f : o.allow_files) {
    if (!read_allow_file(f, dc.allow, error)) {
      log::error("{}", error);
      return 1;
    }
  }
  if (!o.allow_files.empty() && dc.allow.empty()) {
    log::error("--allow-file: no node in {}: nobody could connect", fmt::join(o.allow_files, ", "));
    return 1;
  }
  if (!load_tls(o, dc.tls, error)) {
    log::error("{}", error);
    return 1;
  }
  dc.outbound_limit = o.busy_limit_kb * 1024;
  dc.max_message = o.max_message;
  dc.max_partial = o.max_partial;
  dc.atom_cache = o.atom_cache;
  for (auto& [n, a] : o.peers) dc.static_peers[n] = a;

  std::unique_ptr<host> h;
  try {
    h = std::make_unique<host>(std::move(cfg), std::move(services));
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return 1;
  }
  return h->run([&o](host& h) { log::info("from another shell: {}", iex_hint(o, h.n().name(), h.config().dist.epmd_port, h.cookie_path())); });
}
