#include "cnode/service.hpp"

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include <fmt/core.h>

#include "cnode/oneshot.hpp"

namespace cnode {

void option_list::add(std::string flag, std::string metavar, std::string help, setter set) {
  options_.push_back(option{std::move(flag), std::move(metavar), std::move(help), owner, std::move(set)});
}

const option_list::option* option_list::find(std::string_view flag) const {
  for (const auto& o : options_)
    if (o.flag == flag) return &o;
  return nullptr;
}

std::string option_list::usage() const {
  std::string out;
  std::string last_owner = "\x01";
  for (const auto& o : options_) {
    if (o.owner != last_owner) {
      out += fmt::format("\n {}:\n", o.owner.empty() ? "other" : o.owner);
      last_owner = o.owner;
    }
    std::string left = o.metavar.empty() ? o.flag : o.flag + " " + o.metavar;
    if (left.size() < 24) out += fmt::format("  {:<24}{}\n", left, o.help);
    else out += fmt::format("  {}\n  {:<24}{}\n", left, "", o.help);
  }
  return out;
}

void option_list::apply(const std::vector<std::string>& args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const option* o = find(args[i]);
    if (!o) throw std::invalid_argument("unknown option " + args[i]);
    std::string value;
    if (!o->metavar.empty()) {
      if (i + 1 >= args.size()) throw std::invalid_argument(args[i] + " needs a value");
      value = args[++i];
    }
    std::string err = o->set(value);
    if (!err.empty()) throw std::invalid_argument(o->flag + ": " + err);
  }
}

void service_directory::add(service& s) {
  std::unique_lock lk(mu_);
  services_.push_back(&s);
}

void service_directory::remove(std::string_view name) {
  std::unique_lock lk(mu_);
  services_.erase(std::remove_if(services_.begin(), services_.end(), [&](service* s) { return s->name() == name; }),
                  services_.end());
}

service* service_directory::find(std::string_view name) const {
  std::shared_lock lk(mu_);
  for (service* s : services_)
    if (s->name() == name) return s;
  return nullptr;
}

std::vector<service*> service_directory::all() const {
  std::shared_lock lk(mu_);
  return services_;
}

asio::awaitable<std::optional<term>> run_in_process(node& n, std::function<asio::awaitable<term>(process&)> fn,
                                                    service::clock::time_point deadline) {
  oneshot<term> done(co_await asio::this_coro::executor);
  term pid = n.spawn([fn = std::move(fn), done](process& self) -> asio::awaitable<void> {
    try {
      done.set(co_await fn(self));
    } catch (...) {
      done.set(term(atom("error")));  // the waiter goes on at once; the process still ends as it would
      throw;
    }
  });
  auto r = co_await done.wait(deadline);
  if (!r) n.route(pid, signal{signal_kind::exit, term::nil(), term(atom("kill")), {}, {}, 0});
  co_return r;
}

}  // namespace cnode
