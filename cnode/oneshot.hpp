// A one-shot value handed from any thread to one waiting coroutine, with a deadline on the wait. Wraps Asio's
// experimental concurrent_channel (the design notes: experimental types behind our own names).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <variant>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace cnode {

template <typename T>
class oneshot {
 public:
  explicit oneshot(boost::asio::any_io_executor ex) : ch_(std::make_shared<channel>(ex, 1)) {}

  // From any thread; a second set is ignored.
  void set(T value) const { ch_->try_send(boost::system::error_code{}, std::move(value)); }

  // The value, or nullopt once the deadline has passed.
  boost::asio::awaitable<std::optional<T>> wait(std::chrono::steady_clock::time_point deadline) const {
    using namespace boost::asio::experimental::awaitable_operators;
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, deadline);
    auto ch = ch_;
    auto r = co_await (ch->async_receive(boost::asio::use_awaitable) || timer.async_wait(boost::asio::use_awaitable));
    if (r.index() == 0) co_return std::optional<T>(std::move(std::get<0>(r)));
    co_return std::nullopt;
  }

 private:
  using channel = boost::asio::experimental::concurrent_channel<void(boost::system::error_code, T)>;
  std::shared_ptr<channel> ch_;
};

}  // namespace cnode
