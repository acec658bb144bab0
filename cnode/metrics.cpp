#include "cnode/metrics.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "dist/flags.hpp"

#ifndef CNODE_VERSION
#define CNODE_VERSION "0.0.0"
#endif

namespace cnode {

namespace {

std::uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

mailbox_figures mailboxes(const node& n) {
  mailbox_figures m;
  n.for_each_process([&](process& p) {
    const std::uint64_t len = p.message_queue_len();
    ++m.processes;
    m.messages += len;
    if (len) ++m.non_empty;
    if (len > m.longest) m.longest = len;
  });
  return m;
}

memory_figures memory(node& n) {
  memory_figures f;
  f.total = rss_bytes();
  auto mb = mailboxes(n);
  // A process object with its strand, timer and tables is about 1 KiB; a queued message is a 16-byte term plus
  // what it points to (not counted).
  f.processes = mb.processes * 1024 + mb.messages * 16;
  f.atom = atom::count() * 64;
  f.system = f.total > f.processes ? f.total - f.processes : 0;
  return f;
}

void runtime_metrics(node& n, const distribution& d, metrics_sink& out) {
  auto& k = n.counters();
  out.gauge("cnode_uptime_seconds", "Seconds since the node started.", seconds_since(n.started()));
  out.gauge("cnode_processes", "Live processes.", static_cast<double>(n.process_count()));
  out.counter("cnode_processes_spawned_total", "Processes spawned since start.",
              static_cast<double>(k.processes_spawned.load()));
  out.counter("cnode_messages_in_total", "Messages that came in from other nodes.",
              static_cast<double>(k.messages_in.load()));
  out.counter("cnode_messages_out_total", "Messages sent to other nodes.", static_cast<double>(k.messages_out.load()));
  out.counter("cnode_local_messages_total", "Messages between processes of this node.",
              static_cast<double>(k.local_messages.load()));
  auto mb = mailboxes(n);
  out.gauge("cnode_mailbox_messages", "Messages waiting in all mailboxes.", static_cast<double>(mb.messages));
  out.gauge("cnode_mailbox_longest", "Messages in the longest mailbox.", static_cast<double>(mb.longest));
  out.gauge("cnode_mailbox_nonempty_processes", "Processes with at least one message waiting.",
            static_cast<double>(mb.non_empty));
  out.gauge("cnode_atoms", "Atoms in the atom table.", static_cast<double>(atom::count()));
  out.gauge("cnode_atoms_dynamic", "Atoms learned from peers and reclaimed when nothing holds them any more.",
            static_cast<double>(atom::dynamic_count()));
  out.gauge("cnode_atom_limit", "Size of the atom table.", static_cast<double>(atom::limit()));
  out.gauge("cnode_memory_resident_bytes", "Resident set size of the node.", static_cast<double>(rss_bytes()));

  const auto& st = d.stats();
  out.counter("cnode_dist_handshakes_total", "Handshakes that ended in a connection, by who dialled.",
              static_cast<double>(st.accepted.load()), {{"direction", "in"}});
  out.counter("cnode_dist_handshakes_total", "Handshakes that ended in a connection, by who dialled.",
              static_cast<double>(st.connected.load()), {{"direction", "out"}});
  out.counter("cnode_dist_connect_failures_total", "Connects of ours that failed.",
              static_cast<double>(st.connect_failed.load()));
  for (const auto& [why, count] : st.refused())
    out.counter("cnode_dist_handshakes_refused_total", "Handshakes from other nodes refused, by reason.",
                static_cast<double>(count), {{"reason", why}});
  out.counter("cnode_dist_busy_waits_total",
              "Sends that found their connection over --dist-buf-busy-limit (the sender waited).",
              static_cast<double>(st.busy_waits.load()));
  out.counter("cnode_dist_connections_lost_total", "Connections that went down.",
              static_cast<double>(st.connections_lost.load()));
  auto conns = d.connections();
  out.gauge("cnode_dist_connections", "Connections up.", static_cast<double>(conns.size()));
  for (const auto& c : conns) {
    const metrics_sink::labels l{{"peer", std::string(c.node.text())}};
    out.counter("cnode_dist_bytes_in_total", "Bytes read from the connection.", static_cast<double>(c.stats.bytes_in), l);
    out.counter("cnode_dist_bytes_out_total", "Bytes written to the connection.", static_cast<double>(c.stats.bytes_out),
                l);
    out.counter("cnode_dist_packets_in_total", "Packets (control messages) read, ticks not counted.",
                static_cast<double>(c.stats.packets_in), l);
    out.counter("cnode_dist_packets_out_total", "Packets (control messages) written, ticks not counted.",
                static_cast<double>(c.stats.packets_out), l);
    out.gauge("cnode_dist_queue_bytes", "Bytes waiting to be written to the connection.",
              static_cast<double>(c.stats.queued_bytes), l);
    out.gauge("cnode_dist_waiting_senders", "Senders waiting for room on the connection.",
              static_cast<double>(c.stats.waiting_senders), l);
  }
}

term runtime_status(node& n, const distribution& d) {
  std::vector<term> conns;
  for (const auto& c : d.connections()) {
    conns.push_back(term::map({
        {term(atom("peer")), term(c.node)},
        {term(atom("visible")), term(c.visible)},
        {term(atom("creation")), term(c.creation)},
        {term(atom("flags")), term(static_cast<std::uint64_t>(c.flags))},
        {term(atom("bytes_in")), term(c.stats.bytes_in)},
        {term(atom("bytes_out")), term(c.stats.bytes_out)},
        {term(atom("packets_in")), term(c.stats.packets_in)},
        {term(atom("packets_out")), term(c.stats.packets_out)},
        {term(atom("queue_bytes")), term(static_cast<std::uint64_t>(c.stats.queued_bytes))},
        {term(atom("waiting_senders")), term(static_cast<std::uint64_t>(c.stats.waiting_senders))},
    }));
  }
  auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - n.started());
  return term::map({
      {term(atom("node")), term(n.name_atom())},
      {term(atom("creation")), term(n.creation())},
      {term(atom("uptime_ms")), term(static_cast<std::int64_t>(uptime.count()))},
      {term(atom("version")), term::binary(std::string_view(CNODE_VERSION))},
      {term(atom("otp_release")), term::binary(std::string_view(otp_release))},
      {term(atom("hidden")), term(d.config().hidden)},
      {term(atom("distribution_port")), term(static_cast<std::uint64_t>(d.port()))},
      {term(atom("processes")), term(n.process_count())},
      {term(atom("connections")), term::list(std::move(conns))},
  });
}

}  // namespace cnode
