#include "dist/parking.hpp"

#include <vector>

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

namespace cnode::dist {

parking_base::parking_base(const boost::asio::any_io_executor& ex, drop_fn drop)
    : drop_(drop),
      service_(&boost::asio::use_service<parking_service>(
          boost::asio::query(ex, boost::asio::execution::context))) {
  service_->add(this);
}

parking_base::~parking_base() { service_->remove(this); }

void parking_service::shutdown() {
  // Like the timer service's: what is still parked is dropped (its coroutine frame is destroyed through the
  // scheduler's own shutdown, after this), outside the lock (destroying a frame may destroy a parking).
  std::vector<std::shared_ptr<void>> dropped;
  {
    std::lock_guard lk(mu_);
    for (parking_base* p = head_; p; p = p->next_) p->drop_(*p, dropped);
  }
  dropped.clear();
}

}  // namespace cnode::dist
