// Signals between processes, as the BEAM defines them: a message is one kind of signal among links, exits and
// monitors. Every signal for a process goes through one queue, drained on the process's strand in arrival order,
// so two signals from the same sender are seen in the order they were sent.
#pragma once

#include <cstdint>

#include "etf/term.hpp"

namespace cnode {

using etf::atom;
using etf::term;

enum class signal_kind : std::uint8_t {
  message,       // data: the message
  link,          // from: the linking process
  unlink,        // from, id: UNLINK_ID (id 0: old-style UNLINK)
  unlink_ack,    // from, id
  link_exit,     // from, data: reason — an exit signal because a linked process died
  exit,          // from, data: reason — exit/2
  monitor,       // from: the monitoring process; ref; extra: what it monitored (our pid, or the name atom)
  demonitor,     // from, ref
  down,          // ref; extra: the monitored object; data: reason — a monitor this process holds fired
  node_down,     // extra: the node atom, data: reason — a connection this process depends on went down
  run,           // a task to run on the process's strand (node-internal)
};

struct signal {
  signal_kind kind = signal_kind::message;
  term from;
  term data;
  term ref;
  term extra;
  std::uint64_t id = 0;
  // erlang:send/3's noconnect: for another node, the signal is dropped unless a connection to it is up or being
  // set up; it never starts one.
  bool noconnect = false;
};

}  // namespace cnode
