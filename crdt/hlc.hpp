// The hybrid logical clock (Kulkarni, Demirbas, Madappa, Avva, Leone, "Logical Physical Clocks and Consistent
// Snapshots in Globally Distributed Databases", 2014, figure 5): l follows the largest physical time seen, c counts
// events within one l. A timestamp is (l, c, node); ties between nodes go by node name, so timestamps are totally
// ordered and LWW registers converge. Time is an argument (milliseconds); the clock never reads one.
#pragma once

#include <compare>
#include <cstdint>

#include "etf/atom.hpp"

namespace cnode::crdt {

struct hlc_timestamp {
  std::int64_t physical_ms = 0;  // l
  std::uint64_t logical = 0;     // c
  etf::atom node;                // the tie-break
  friend bool operator==(const hlc_timestamp&, const hlc_timestamp&) = default;
  friend std::strong_ordering operator<=>(const hlc_timestamp&, const hlc_timestamp&) = default;
};

class hlc {
 public:
  // max_offset_ms: how far a received timestamp may be ahead of our physical clock before update() refuses it.
  explicit hlc(etf::atom node, std::int64_t max_offset_ms = 60'000) : node_(node), max_offset_ms_(max_offset_ms) {}

  // A local or send event at physical time pt.
  hlc_timestamp now(std::int64_t physical_ms);

  struct update_result {
    hlc_timestamp ts;        // the receive event's timestamp
    bool far_ahead = false;  // the received timestamp was more than max_offset ahead: it was not taken into the clock
    std::int64_t ahead_ms = 0;  // how far ahead it was
  };
  // A receive event of `received` at physical time pt. A timestamp too far ahead is reported and ignored (as
  // CockroachDB rejects one beyond its max offset) so that one bad clock cannot drag every clock forward.
  update_result update(const hlc_timestamp& received, std::int64_t physical_ms);

  hlc_timestamp last() const noexcept { return {l_, c_, node_}; }
  etf::atom node() const noexcept { return node_; }
  std::int64_t max_offset_ms() const noexcept { return max_offset_ms_; }

 private:
  etf::atom node_;
  std::int64_t max_offset_ms_;
  std::int64_t l_ = 0;
  std::uint64_t c_ = 0;
};

}  // namespace cnode::crdt
