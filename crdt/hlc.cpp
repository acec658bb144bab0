#include "crdt/hlc.hpp"

#include <algorithm>

namespace cnode::crdt {

hlc_timestamp hlc::now(std::int64_t pt) {
  const std::int64_t old = l_;
  l_ = std::max(old, pt);
  c_ = l_ == old ? c_ + 1 : 0;
  return last();
}

hlc::update_result hlc::update(const hlc_timestamp& m, std::int64_t pt) {
  if (m.physical_ms > pt && m.physical_ms - pt > max_offset_ms_) {
    update_result r{now(pt), true, m.physical_ms - pt};
    return r;
  }
  const std::int64_t old = l_;
  l_ = std::max({old, m.physical_ms, pt});
  if (l_ == old && l_ == m.physical_ms) c_ = std::max(c_, m.logical) + 1;
  else if (l_ == old) c_ = c_ + 1;
  else if (l_ == m.physical_ms) c_ = m.logical + 1;
  else c_ = 0;
  return {last(), false, 0};
}

}  // namespace cnode::crdt
