#include "cnode/functions.hpp"

namespace cnode {

namespace {
struct atoms {
  atom undef{"undef"}, erpc{"erpc"}, badarg{"badarg"}, cpp_exception{"cpp_exception"};
};
const atoms& at() {
  static const atoms a;
  return a;
}
}  // namespace

void function_table::add(atom module, atom function, unsigned arity, function_body body) {
  std::unique_lock lock(mu_);
  table_[{module, function, arity}] = std::move(body);
}

const function_body* function_table::find(atom module, atom function, unsigned arity) const {
  std::shared_lock lock(mu_);
  auto it = table_.find({module, function, arity});
  return it == table_.end() ? nullptr : &it->second;
}

asio::awaitable<call_outcome> function_table::apply(process& self, const term& m, const term& f,
                                                    const term& args) const {
  std::vector<term> argv;
  term tail;
  // A module or function that is not an atom, or arguments that are not a proper list, is the caller's error
  // (erpc:is_arg_error): reported without a stack, as badarg, which erpc wraps as {erpc, badarg}.
  if (!m.is_atom() || !f.is_atom() || !args.list_to_vector(argv, &tail)) {
    co_return call_outcome{call_outcome::kind::error, term(at().badarg), term()};
  }
  const function_body* body = find(m.atom_value(), f.atom_value(), static_cast<unsigned>(argv.size()));
  if (!body) {
    co_return call_outcome{call_outcome::kind::error, term(at().undef),
                           term::list({term::tuple({m, f, args, term()})})};
  }
  const unsigned arity = static_cast<unsigned>(argv.size());
  try {
    term v = co_await (*body)(self, std::move(argv));
    co_return call_outcome{call_outcome::kind::value, std::move(v), term()};
  } catch (const erl_exception& e) {
    switch (e.cls) {
      case erl_exception::kind::throw_: co_return call_outcome{call_outcome::kind::throw_, e.reason, term()};
      case erl_exception::kind::exit: co_return call_outcome{call_outcome::kind::exit, e.reason, term()};
      case erl_exception::kind::error:
        co_return call_outcome{call_outcome::kind::error, e.reason,
                               term::list({term::tuple({m, f, term(arity), term()})})};
    }
  } catch (const process_exit&) {
    throw;  // the calling process was killed: that is not the function's outcome
  } catch (const std::exception& e) {
    co_return call_outcome{call_outcome::kind::error,
                           term::tuple({term(at().cpp_exception), term::binary(std::string_view(e.what()))}),
                           term::list({term::tuple({m, f, term(arity), term()})})};
  }
  co_return call_outcome{};
}

}  // namespace cnode
