// control-dump: decodes recorded distribution packets with cnode::dist's control-message codec and prints one line
// per packet, for test_control_wire.py.
//
// Input (a file or stdin): one packet per line, "<dir> <hex>", where dir names the sending side (any word without
// spaces); each direction has its own atom cache, as on a real connection. Output, one line per packet:
//   #<n> <dir> <form> <OP> <field>=<term> ... [token=<term>] [payload=<term>] rt=ok reenc=<same|diff|n/a>
// where form is p (pass-through) or h (distribution header), rt=ok says encode → decode gave the same message, and
// reenc compares our pass-through encoding with the recorded bytes (only meaningful for pass-through packets).
// A packet that does not decode prints "#<n> <dir> ERROR <message> at <offset>". Exit status 1 if any packet failed.
// --hex adds the packet's hex on the next line (for picking unit-test vectors).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dist/control.hpp"
#include "etf/format.hpp"

using namespace cnode;
using namespace cnode::dist;

namespace {

std::vector<std::pair<const char*, etf::term>> named_fields(const control_body& body) {
  using etf::term;
  return std::visit(
      [](const auto& m) -> std::vector<std::pair<const char*, term>> {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, link_msg> || std::is_same_v<T, unlink_msg> ||
                      std::is_same_v<T, group_leader_msg> || std::is_same_v<T, send_sender_msg> ||
                      std::is_same_v<T, payload_exit_msg> || std::is_same_v<T, payload_exit2_msg> ||
                      std::is_same_v<T, alias_send_msg>) {
          if constexpr (std::is_same_v<T, alias_send_msg>)
            return {{"from", m.from}, {"alias", m.alias}};
          else
            return {{"from", m.from}, {"to", m.to}};
        } else if constexpr (std::is_same_v<T, send_msg>) {
          return {{"to", m.to}};
        } else if constexpr (std::is_same_v<T, exit_msg> || std::is_same_v<T, exit2_msg>) {
          return {{"from", m.from}, {"to", m.to}, {"reason", m.reason}};
        } else if constexpr (std::is_same_v<T, node_link_msg>) {
          return {};
        } else if constexpr (std::is_same_v<T, reg_send_msg>) {
          return {{"from", m.from}, {"to_name", term(m.to_name)}};
        } else if constexpr (std::is_same_v<T, monitor_p_msg> || std::is_same_v<T, demonitor_p_msg>) {
          return {{"from", m.from}, {"to_proc", m.to_proc}, {"ref", m.ref}};
        } else if constexpr (std::is_same_v<T, monitor_p_exit_msg>) {
          return {{"from_proc", m.from_proc}, {"to_pid", m.to_pid}, {"ref", m.ref}, {"reason", m.reason}};
        } else if constexpr (std::is_same_v<T, payload_monitor_p_exit_msg>) {
          return {{"from_proc", m.from_proc}, {"to_pid", m.to_pid}, {"ref", m.ref}};
        } else if constexpr (std::is_same_v<T, spawn_request_msg>) {
          return {{"req_id", m.req_id}, {"from", m.from}, {"group_leader", m.group_leader}, {"mfa", m.mfa},
                  {"opt_list", m.opt_list}};
        } else if constexpr (std::is_same_v<T, spawn_reply_msg>) {
          return {{"req_id", m.req_id}, {"to", m.to}, {"flags", term(m.flags)}, {"result", m.result}};
        } else {
          return {{"id", term(m.id)}, {"from", m.from}, {"to", m.to}};
        }
      },
      body);
}

bool parse_hex(const std::string& h, std::vector<std::uint8_t>& out) {
  if (h.size() % 2) return false;
  out.clear();
  for (std::size_t i = 0; i < h.size(); i += 2) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int a = nib(h[i]), b = nib(h[i + 1]);
    if (a < 0 || b < 0) return false;
    out.push_back(static_cast<std::uint8_t>(a * 16 + b));
  }
  return true;
}

std::string to_hex(const std::vector<std::uint8_t>& v) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (auto b : v) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  bool show_hex = false;
  const char* path = nullptr;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--hex")
      show_hex = true;
    else
      path = argv[i];
  }
  std::ifstream file;
  if (path) {
    file.open(path);
    if (!file) {
      std::fprintf(stderr, "control-dump: cannot open %s\n", path);
      return 2;
    }
  }
  std::istream& in = path ? static_cast<std::istream&>(file) : std::cin;

  std::map<std::string, atom_cache> caches;  // one per sending direction
  std::string line;
  int n = 0, failed = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++n;
    auto sp = line.find(' ');
    std::string dir = line.substr(0, sp);
    std::vector<std::uint8_t> bytes;
    if (sp == std::string::npos || !parse_hex(line.substr(sp + 1), bytes)) {
      std::printf("#%d %s ERROR unreadable line\n", n, dir.c_str());
      ++failed;
      continue;
    }
    etf::shared_bytes packet(bytes);
    decode_outcome d = decode_control(packet, 0, packet.size(), &caches[dir]);
    if (!d) {
      std::printf("#%d %s ERROR %s at %zu\n", n, dir.c_str(), d.ec.message().c_str(), d.offset);
      ++failed;
    } else {
      std::string out = "#" + std::to_string(n) + " " + dir + " " + (bytes[0] == 112 ? "p" : "h") + " " +
                        std::string(to_string(d.msg.wire_op()));
      for (const auto& [name, value] : named_fields(d.msg.body)) out += std::string(" ") + name + "=" + etf::to_string(value);
      if (d.msg.trace_token) out += " token=" + etf::to_string(*d.msg.trace_token);
      if (d.msg.payload) out += " payload=" + etf::to_string(*d.msg.payload);
      std::vector<std::uint8_t> ours = encode_control(d.msg);
      etf::shared_bytes again(ours);
      decode_outcome back = decode_control(again, 0, again.size());
      bool rt = back && back.msg == d.msg;
      if (!rt) ++failed;
      out += rt ? " rt=ok" : " rt=FAILED";
      out += bytes[0] != 112 ? " reenc=n/a" : (ours == bytes ? " reenc=same" : " reenc=diff");
      std::printf("%s\n", out.c_str());
      if (show_hex && bytes[0] == 112 && ours != bytes) std::printf("   ours %s\n", to_hex(ours).c_str());
    }
    if (show_hex) std::printf("   hex %s\n", to_hex(bytes).c_str());
  }
  std::printf("packets=%d failed=%d\n", n, failed);
  return failed ? 1 : 0;
}
