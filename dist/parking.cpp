#include "dist/parking.hpp"

#include <vector>

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

namespace cnode::dist {

parking::parking(const boost::asio::any_io_executor& ex)
    : service_(&boost::asio::use_service<parking_service>(
          boost::asio::query(ex, boost::asio::execution::context))) {
  service_->add(this);
}

parking::~parking() { service_->remove(this); }

void parking_service::shutdown() {
  // Like the timer service's: what is still parked is dropped (its coroutine frame is destroyed through the
  // scheduler's own shutdown, after this).
  std::vector<std::optional<parking::handler_type>> dropped;
  {
    std::lock_guard lk(mu_);
    for (parking* p = head_; p; p = p->next_) {
      if (p->handler_) {
        dropped.push_back(std::move(p->handler_));
        p->handler_.reset();
      }
    }
  }
  dropped.clear();
}

}  // namespace cnode::dist
