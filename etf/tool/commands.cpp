#include "etf/tool/commands.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "etf/codec.hpp"
#include "etf/tool/packet_io.hpp"
#include "etf/tool/text.hpp"

namespace cnode::etf::tool {
namespace {

void complain(const std::string& msg) { std::fprintf(stderr, "cnode-etf: %s\n", msg.c_str()); }

std::string describe(const decode_result& r) {
  std::string reason = r.ec.category() == etf_category() ? error_atom(static_cast<error>(r.ec.value())) : "error";
  return "not a valid external term: " + r.ec.message() + " (" + reason + ") at byte " + std::to_string(r.offset);
}

encode_options encoding(const options& opt) {
  encode_options e;
  e.utf8_atoms = opt.utf8_atoms;
  e.compression_level = opt.compression_level;
  return e;
}

// The BEAM-side view of a failure: {error, Reason, Offset}.
term error_term(const std::error_code& ec, std::size_t offset) {
  const char* reason = ec.category() == etf_category() ? error_atom(static_cast<error>(ec.value())) : "internal";
  return term::tuple({term(atom::error()), term(atom(reason)), term(static_cast<std::uint64_t>(offset))});
}

class input_file {
 public:
  explicit input_file(std::string_view name) : name_(name == "-" ? "standard input" : std::string(name)) {
    if (name == "-") return;
    fd_ = ::open(std::string(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw io_error{"cannot open " + name_ + ": " + std::strerror(errno)};
  }
  ~input_file() {
    if (fd_ > 0) ::close(fd_);
  }
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  int fd() const noexcept { return fd_; }
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  int fd_ = 0;
};

int print_frames(const options& opt) {
  fd_writer out(STDOUT_FILENO);
  frame_reader in(STDIN_FILENO, opt.packet, &out);
  std::span<const std::uint8_t> frame;
  while (in.next(frame)) {
    decode_result r = decode(frame);
    out.begin_frame(opt.packet);
    out.write(r ? print_text(r.value) : print_text(error_term(r.ec, r.offset)));
    out.end_frame();
  }
  out.flush();
  return exit_ok;
}

}  // namespace

int run_print(std::string_view file, const options& opt) {
  try {
    if (opt.packet) {
      if (file != "-") {
        complain("print --packet reads standard input only");
        return exit_usage;
      }
      return print_frames(opt);
    }
    input_file in(file);
    std::vector<std::uint8_t> bytes = read_all(in.fd());
    if (bytes.empty()) {
      complain(in.name() + " is empty: expected a term in the external format (e.g. term_to_binary/1 output)");
      return exit_bad_input;
    }
    decode_result r = decode(bytes);
    if (!r) {
      complain(in.name() + ": " + describe(r));
      return exit_bad_input;
    }
    fd_writer out(STDOUT_FILENO);
    out.write(print_text(r.value));
    out.write(std::string_view("\n"));
    out.flush();
    return exit_ok;
  } catch (const io_error& e) {
    complain(e.what);
    return e.bad_input ? exit_bad_input : exit_io;
  }
}

int run_encode(std::string_view term_text, const options& opt) {
  try {
    std::string text(term_text);
    if (term_text == "-") {
      std::vector<std::uint8_t> bytes = read_all(STDIN_FILENO);
      text.assign(bytes.begin(), bytes.end());
    }
    term t;
    std::string message;
    if (!parse_text(text, t, message)) {
      complain("cannot parse the term: " + message);
      return exit_bad_input;
    }
    fd_writer out(STDOUT_FILENO);
    try {
      encode(t, out.buffer(), encoding(opt));
    } catch (const std::system_error& e) {
      complain(std::string("cannot encode the term: ") + e.what());
      return exit_bad_input;
    }
    if (::isatty(STDOUT_FILENO)) {
      // Raw bytes would garble a terminal; show them the way Erlang's shell does.
      std::vector<std::uint8_t> bytes;
      bytes.swap(out.buffer());
      std::string shown = "<<";
      for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i) shown.push_back(',');
        shown.append(std::to_string(bytes[i]));
      }
      shown.append(">>\n");
      out.write(shown);
    }
    out.flush();
    return exit_ok;
  } catch (const io_error& e) {
    complain(e.what);
    return e.bad_input ? exit_bad_input : exit_io;
  }
}

int run_roundtrip(const options& opt) {
  const encode_options enc = encoding(opt);
  fd_writer out(STDOUT_FILENO);
  frame_reader in(STDIN_FILENO, opt.packet, &out);
  std::span<const std::uint8_t> frame;
  try {
    while (in.next(frame)) {
      decode_result r = decode(frame);
      out.begin_frame(opt.packet);
      if (r) {
        try {
          encode(r.value, out.buffer(), enc);
        } catch (const std::system_error& e) {
          // Decoded but not encodable (cannot happen for a term that came in as ETF, but never end the stream).
          out.restart_frame();
          encode(error_term(e.code(), 0), out.buffer());
        }
      } else {
        encode(error_term(r.ec, r.offset), out.buffer());
      }
      out.end_frame();
    }
    out.flush();
    return exit_ok;
  } catch (const io_error& e) {
    complain(e.what);
    return e.bad_input ? exit_bad_input : exit_io;
  }
}

}  // namespace cnode::etf::tool
