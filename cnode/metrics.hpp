// The runtime's own figures, for the exporter (ops) and for what observer-style tools ask over rpc
// (erlang:memory/0,1, system_info/1, statistics/1): processes, messages, mailboxes, atoms, memory, and per
// connection bytes, packets, ticks and queue.
#pragma once

#include <cstdint>

#include "cnode/distribution.hpp"
#include "cnode/node.hpp"
#include "cnode/service.hpp"

namespace cnode {

// The OTP release cnode speaks (what :erlang.system_info(:otp_release) answers).
inline constexpr const char* otp_release = "25";

void runtime_metrics(node& n, const distribution& d, metrics_sink& out);
// #{node, creation, uptime_ms, version, otp_release, hidden, distribution_port, processes, connections => [...]}
term runtime_status(node& n, const distribution& d);

struct memory_figures {
  std::uint64_t total = 0;      // resident set size
  std::uint64_t processes = 0;  // process objects and their mailboxes (estimated from counts)
  std::uint64_t atom = 0;       // the atom table (estimated)
  std::uint64_t binary = 0;     // 0: binaries are not counted apart
  std::uint64_t system = 0;     // total - processes
};
memory_figures memory(node& n);

struct mailbox_figures {
  std::uint64_t processes = 0, messages = 0, longest = 0, non_empty = 0;
};
mailbox_figures mailboxes(const node& n);

}  // namespace cnode
