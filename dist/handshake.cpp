#include "dist/handshake.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "dist/digest.hpp"

namespace cnode::dist {
namespace {

// Handshake messages are 2-byte framed over TCP (4-byte over TLS, but no longer): more unread input than two of them
// is abuse.
constexpr std::size_t max_message = 0xffff;
constexpr std::size_t max_buffered = 2 * (4 + max_message);
constexpr std::size_t max_name_bytes = 255;  // an atom holds at most 255 characters; names arrive as latin1

std::uint16_t get16(std::span<const std::byte> b, std::size_t at) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(b[at]) << 8) | std::to_integer<unsigned>(b[at + 1]));
}
std::uint32_t get32(std::span<const std::byte> b, std::size_t at) {
  return (std::uint32_t{get16(b, at)} << 16) | get16(b, at + 2);
}
std::uint64_t get64(std::span<const std::byte> b, std::size_t at) {
  return (std::uint64_t{get32(b, at)} << 32) | get32(b, at + 4);
}
void put16(std::vector<std::byte>& v, std::uint16_t x) {
  v.push_back(std::byte(x >> 8));
  v.push_back(std::byte(x & 0xff));
}
void put32(std::vector<std::byte>& v, std::uint32_t x) {
  put16(v, static_cast<std::uint16_t>(x >> 16));
  put16(v, static_cast<std::uint16_t>(x & 0xffff));
}
void put64(std::vector<std::byte>& v, std::uint64_t x) {
  put32(v, static_cast<std::uint32_t>(x >> 32));
  put32(v, static_cast<std::uint32_t>(x & 0xffffffff));
}
void put(std::vector<std::byte>& v, std::string_view s) {
  for (char c : s) v.push_back(static_cast<std::byte>(c));
}
std::string_view as_text(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
char tag(std::span<const std::byte> msg) { return static_cast<char>(msg[0]); }

// A host alone (no '@'), for NAME_ME requests (dist_util.erl:761, dynamic).
bool is_host_name(std::string_view host) noexcept {
  return !host.empty() && host.size() <= max_name_bytes && host.find('@') == std::string_view::npos;
}

std::string_view host_of(std::string_view node) {
  const auto at = node.find('@');
  return at == std::string_view::npos ? node : node.substr(at + 1);
}

// Node names in log lines are printed like ~w prints atoms: quoted when not a plain lowercase atom.
std::string printable(std::string_view name) {
  std::string out;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f)
      out += fmt::format("\\x{:02x}", u);
    else
      out += c;
  }
  return out;
}

}  // namespace

void randomize(handshake_config& config) {
  unsigned char buf[16];
  random_bytes(buf, sizeof buf);
  std::memcpy(&config.challenge, buf, 4);
  std::memcpy(&config.name_seed, buf + 4, 8);
  std::memcpy(&config.named_creation, buf + 12, 4);
  if (config.named_creation < 4) config.named_creation += 4;  // net_kernel avoids creations 0..3 (wrap_creation)
}

accept_answer decide_accept(std::string_view this_node, std::string_view peer_node,
                            connection_state existing) noexcept {
  switch (existing) {
    case connection_state::none: return accept_answer::ok;
    case connection_state::pending: {
      // net_kernel.erl:1061: `MyNode > Node` keeps our own attempt. Atoms order by their text, byte by byte.
      const int c = std::memcmp(this_node.data(), peer_node.data(), std::min(this_node.size(), peer_node.size()));
      const bool mine_greater = c > 0 || (c == 0 && this_node.size() > peer_node.size());
      return mine_greater ? accept_answer::nok : accept_answer::ok_simultaneous;
    }
    case connection_state::up: return accept_answer::alive;
    case connection_state::up_pending: return accept_answer::already_pending;
  }
  return accept_answer::not_allowed;
}

bool is_node_name(std::string_view name) noexcept {
  if (name.size() > max_name_bytes) return false;
  const auto at = name.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == name.size()) return false;
  return name.find('@', at + 1) == std::string_view::npos;
}

namespace {

// dist_util.erl:773 split_node: {node, Name, Host}, {host, Host}, {name, Name}, or nothing usable.
enum class name_form { invalid, node, host, name };
struct split_name {
  name_form form = name_form::invalid;
  std::string_view name, host;
};

split_name split_node(std::string_view s) noexcept {
  const auto at = s.find('@');
  if (at == std::string_view::npos) return s.empty() ? split_name{} : split_name{name_form::host, {}, s};
  if (s.find('@', at + 1) != std::string_view::npos || at == 0) return {};
  if (at + 1 == s.size()) return {name_form::name, s.substr(0, at), {}};
  return {name_form::node, s.substr(0, at), s.substr(at + 1)};
}

}  // namespace

bool is_allowed(std::string_view node, const std::vector<std::string>& allowed) noexcept {
  const split_name n = split_node(node);
  for (const auto& entry : allowed) {
    if (entry == node) return true;
    const split_name a = split_node(entry);
    switch (a.form) {
      case name_form::node:
        if (n.form == name_form::node && n.name == a.name && n.host == a.host) return true;
        break;
      case name_form::host:
        if ((n.form == name_form::node || n.form == name_form::host) && n.host == a.host) return true;
        break;
      case name_form::name:
        if ((n.form == name_form::node || n.form == name_form::name) && n.name == a.name) return true;
        break;
      case name_form::invalid: break;
    }
  }
  return false;
}

std::string dynamic_node_name(std::uint64_t seed, std::string_view host) {
  static constexpr char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::string name;
  do {
    name += digits[seed % 36];
    seed /= 36;
  } while (seed != 0);
  std::reverse(name.begin(), name.end());
  name += '@';
  name += host;
  return name;
}

std::array<std::byte, 16> gen_digest(std::uint32_t challenge, std::string_view cookie) {
  std::string text(cookie);
  text += std::to_string(challenge);
  return md5(text);
}

handshake::handshake(role r, handshake_config config)
    : role_(r),
      config_(std::move(config)),
      step_(r == role::acceptor ? step::recv_name : step::recv_status),
      this_node_(config_.this_node),
      this_creation_(config_.creation),
      this_flags_(config_.flags) {}

handshake handshake::initiator(handshake_config config, std::string peer_node) {
  handshake hs(role::initiator, std::move(config));
  hs.peer_.node = std::move(peer_node);
  if (!is_node_name(hs.peer_.node)) {
    hs.fail(error::bad_node_name, fmt::format("Invalid node name to connect to: {}", printable(hs.peer_.node)));
    return hs;
  }
  std::string name = hs.this_node_;
  std::uint32_t creation = hs.this_creation_;
  if (hs.config_.request_name) {
    // A NAME_ME node is never published (dist_util.erl:147): it sends its host and creation 0.
    hs.this_flags_ = (hs.this_flags_ & ~dflag::published) | dflag::name_me;
    name = std::string(host_of(name));
    hs.this_node_ = name;
    creation = 0;
    if (!is_host_name(name)) {
      hs.fail(error::bad_node_name, fmt::format("Invalid host name to be named on: {}", printable(name)));
      return hs;
    }
  } else if (!is_node_name(name)) {
    hs.fail(error::bad_node_name, fmt::format("Invalid own node name: {}", printable(name)));
    return hs;
  }
  std::vector<std::byte> msg;
  msg.push_back(std::byte{'N'});
  put64(msg, hs.this_flags_);
  put32(msg, creation);
  put16(msg, static_cast<std::uint16_t>(name.size()));
  put(msg, name);
  hs.send(msg);
  return hs;
}

handshake handshake::acceptor(handshake_config config) {
  handshake hs(role::acceptor, std::move(config));
  if (!is_node_name(hs.this_node_))
    hs.fail(error::bad_node_name, fmt::format("Invalid own node name: {}", printable(hs.this_node_)));
  return hs;
}

bool handshake::question_published() const noexcept {
  return is_published(expand_mandatory_25(this_flags_) & peer_.flags);
}

std::span<const std::byte> handshake::leftover() const noexcept {
  return std::span<const std::byte>(in_).subspan(consumed_);
}

std::vector<std::byte> handshake::take_output() {
  std::vector<std::byte> out;
  out.swap(out_);
  return out;
}

const char* handshake::step_name() const noexcept {
  switch (step_) {
    case step::recv_name: return "recv_name";
    case step::recv_status: return "recv_status";
    case step::recv_alive_reply: return "recv_alive_reply";
    case step::recv_challenge: return "recv_challenge";
    case step::recv_complement: return "recv_complement";
    case step::recv_reply: return "recv_challenge_reply";
    case step::recv_ack: return "recv_challenge_ack";
    case step::finished: return "finished";
  }
  return "?";
}

const std::string& handshake::cookie() const { return config_.cookies.for_node(peer_.node); }

void handshake::send(std::span<const std::byte> msg) {
  if (config_.header_bytes == 4)
    put32(out_, static_cast<std::uint32_t>(msg.size()));
  else
    put16(out_, static_cast<std::uint16_t>(msg.size()));
  out_.insert(out_.end(), msg.begin(), msg.end());
}

void handshake::send(std::string_view msg) {
  send(std::span<const std::byte>(reinterpret_cast<const std::byte*>(msg.data()), msg.size()));
}

bool handshake::fail(std::error_code ec, std::string detail) {
  state_ = state::failed;
  question_ = question::none;
  error_ = ec;
  detail_ = std::move(detail);
  return false;
}

void handshake::feed(std::span<const std::byte> bytes) {
  if (state_ == state::failed) return;
  in_.insert(in_.end(), bytes.begin(), bytes.end());
  if (state_ == state::done) return;  // all of it is leftover now
  if (in_.size() - consumed_ > max_buffered) {
    fail(error::bad_message, fmt::format("Handshake with {}: more than {} unread bytes", printable(peer_.node),
                                         max_buffered));
    return;
  }
  process();
}

void handshake::process() {
  while (state_ == state::running) {
    const std::size_t avail = in_.size() - consumed_;
    const std::size_t hb = config_.header_bytes == 4 ? 4 : 2;
    if (avail < hb) break;
    const std::size_t len = hb == 4 ? get32(in_, consumed_) : get16(in_, consumed_);
    if (len == 0) {
      fail(error::bad_message, "Empty handshake message");
      break;
    }
    if (len > max_message) {
      fail(error::bad_message, fmt::format("Handshake message of {} bytes (at most {})", len, max_message));
      break;
    }
    if (avail < hb + len) break;
    const auto msg = std::span<const std::byte>(in_).subspan(consumed_ + hb, len);
    consumed_ += hb + len;
    handle(msg);
  }
  if (state_ != state::done && consumed_ != 0) {
    in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
}

bool handshake::handle(std::span<const std::byte> msg) {
  switch (step_) {
    case step::recv_name: return on_name(msg);
    case step::recv_status: return on_status(msg);
    case step::recv_alive_reply: return on_alive_reply(msg);
    case step::recv_challenge: return on_challenge(msg);
    case step::recv_complement: return on_complement(msg);
    case step::recv_reply: return on_reply(msg);
    case step::recv_ack: return on_ack(msg);
    case step::finished: break;
  }
  return fail(error::bad_message, "Handshake message after the handshake");
}

bool handshake::check_flags(dflags flags) {
  const auto missing = missing_flags(flags, mandatory_25 | config_.required);
  if (missing.empty()) return true;
  if (role_ == role::acceptor) {
    send("snot_allowed");  // dist_util.erl:276
    return fail(error::missing_flags,
                fmt::format("Connection attempt from node {} rejected since it cannot handle {}.",
                            printable(peer_.node), format_flag_list(missing)));
  }
  return fail(error::missing_flags, fmt::format("Connection attempt to node {} aborted since it cannot handle {}.",
                                                printable(peer_.node), format_flag_list(missing)));
}

// ---- acceptor ----

bool handshake::on_name(std::span<const std::byte> msg) {
  std::string_view name;
  dflags flags = 0;
  if (tag(msg) == 'N') {  // dist_util.erl:735
    if (msg.size() < 15) return fail(error::bad_message, "Truncated send_name");
    flags = get64(msg, 1);
    peer_.creation = get32(msg, 9);
    const std::size_t len = get16(msg, 13);
    if (msg.size() < 15 + len) return fail(error::bad_message, "Truncated node name in send_name");
    name = as_text(msg.subspan(15, len));  // bytes after the name are ignored
    peer_.version = 6;
  } else if (tag(msg) == 'n') {  // OTP 22 and older, or 23/24 not knowing our version (OTP 25.3 recv_name_old)
    if (msg.size() < 7) return fail(error::bad_message, "Truncated old send_name");
    flags = get32(msg, 3);
    name = as_text(msg.subspan(7));
    peer_.version = 5;
  } else {
    return fail(error::bad_message, fmt::format("Unexpected handshake message (tag {}) instead of send_name",
                                                std::to_integer<unsigned>(msg[0])));
  }
  const bool dynamic = peer_.version == 6 && (flags & dflag::name_me) != 0;
  if (dynamic ? !is_host_name(name) : !is_node_name(name))
    return fail(error::bad_node_name, fmt::format("Connection attempt with an invalid node name: {}", printable(name)));
  peer_.flags = expand_mandatory_25(flags);
  peer_.node = std::string(name);
  // A NAME_ME peer gets NAME_ME back and never PUBLISHED (dist_util.erl:147).
  if (dynamic) this_flags_ = (this_flags_ & ~dflag::published) | dflag::name_me;
  if (!check_flags(peer_.flags)) return false;
  if (dynamic) {
    peer_.node = dynamic_node_name(config_.name_seed, name);
    peer_.creation = config_.named_creation;
    peer_.named_by_us = true;
  }
  state_ = state::asking;
  question_ = question::accept_pending;
  return true;
}

void handshake::answer_accept(accept_answer a) {
  if (state_ != state::asking || question_ != question::accept_pending)
    throw std::logic_error("handshake::answer_accept without an accept_pending question");
  question_ = question::none;
  state_ = state::running;
  switch (a) {
    case accept_answer::ok:
      if (peer_.named_by_us) {  // dist_util.erl:1046
        std::vector<std::byte> msg;
        put(msg, "snamed:");
        put16(msg, static_cast<std::uint16_t>(peer_.node.size()));
        put(msg, peer_.node);
        put32(msg, peer_.creation);
        send(msg);
      } else {
        send("sok");
      }
      send_challenge();
      break;
    case accept_answer::ok_simultaneous:
      send("sok_simultaneous");
      send_challenge();
      break;
    case accept_answer::nok:
      send("snok");
      fail(error::nok, fmt::format("Connection attempt from node {} dropped: simultaneous connect, ours is kept",
                                   printable(peer_.node)));
      break;
    case accept_answer::alive:
      send("salive");
      step_ = step::recv_alive_reply;
      break;
    case accept_answer::already_pending:
      fail(error::already_pending,
           fmt::format("Connection attempt from node {} dropped: already being replaced", printable(peer_.node)));
      break;
    case accept_answer::not_allowed:
      send("snot_allowed");
      fail(error::not_allowed, fmt::format("Connection attempt from disallowed node {}", printable(peer_.node)));
      break;
  }
  process();
}

bool handshake::on_alive_reply(std::span<const std::byte> msg) {
  const auto text = as_text(msg);
  if (text == "strue") {
    replacing_ = true;
    send_challenge();
    return true;
  }
  if (text == "sfalse")
    return fail(error::alive_refused,
                fmt::format("Connection attempt from node {} withdrawn: it answered false to alive",
                            printable(peer_.node)));
  return fail(error::unexpected_status,
              fmt::format("Unexpected reply to alive from node {}: {}", printable(peer_.node), printable(text)));
}

void handshake::send_challenge() {
  std::vector<std::byte> msg;
  msg.push_back(std::byte{'N'});
  put64(msg, this_flags_);
  put32(msg, config_.challenge);
  put32(msg, this_creation_);
  put16(msg, static_cast<std::uint16_t>(this_node_.size()));
  put(msg, this_node_);
  send(msg);
  step_ = peer_.version == 5 ? step::recv_complement : step::recv_reply;
}

bool handshake::on_complement(std::span<const std::byte> msg) {
  if (tag(msg) != 'c' || msg.size() != 9)  // OTP 25.3 recv_complement
    return fail(error::bad_message, fmt::format("Bad send_complement from node {}", printable(peer_.node)));
  peer_.flags = expand_mandatory_25(peer_.flags | (dflags{get32(msg, 1)} << 32));
  peer_.creation = get32(msg, 5);
  if (!check_flags(peer_.flags)) return false;
  step_ = step::recv_reply;
  return true;
}

bool handshake::on_reply(std::span<const std::byte> msg) {
  if (tag(msg) != 'r' || msg.size() != 21)
    return fail(error::bad_message, fmt::format("Bad challenge reply from node {}", printable(peer_.node)));
  const auto expected = gen_digest(config_.challenge, cookie());
  if (!equal_constant_time(expected.data(), msg.data() + 5, expected.size()))
    return fail(error::bad_cookie, fmt::format("Connection attempt from node {} rejected. Invalid challenge reply.",
                                               printable(peer_.node)));
  peer_challenge_ = get32(msg, 1);
  peer_.effective = expand_mandatory_25(this_flags_) & peer_.flags;
  if (replacing_) {  // dist_util.erl:237: the old connection must die before we answer
    state_ = state::asking;
    question_ = question::wait_pending;
    return true;
  }
  send_ack();
  return true;
}

void handshake::answer_wait_pending() {
  if (state_ != state::asking || question_ != question::wait_pending)
    throw std::logic_error("handshake::answer_wait_pending without a wait_pending question");
  question_ = question::none;
  state_ = state::running;
  send_ack();
}

void handshake::send_ack() {
  std::vector<std::byte> msg;
  msg.push_back(std::byte{'a'});
  const auto d = gen_digest(peer_challenge_, cookie());
  msg.insert(msg.end(), d.begin(), d.end());
  send(msg);
  step_ = step::finished;
  state_ = state::done;
}

// ---- initiator ----

bool handshake::on_status(std::span<const std::byte> msg) {
  const auto text = as_text(msg);
  if (text.starts_with("snamed:")) {  // dist_util.erl:977
    if (!config_.request_name)
      return fail(error::unexpected_status,
                  fmt::format("Node {} named us though we did not ask", printable(peer_.node)));
    if (msg.size() < 9) return fail(error::bad_message, "Truncated named: status");
    const std::size_t len = get16(msg, 7);
    if (msg.size() < 9 + len + 4) return fail(error::bad_message, "Truncated named: status");
    const auto name = as_text(msg.subspan(9, len));
    if (!is_node_name(name) || host_of(name) != this_node_)
      return fail(error::bad_node_name,
                  fmt::format("Node {} named us {} on another host", printable(peer_.node), printable(name)));
    this_node_ = std::string(name);
    this_creation_ = get32(msg, 9 + len);
    step_ = step::recv_challenge;
    return true;
  }
  if (!text.starts_with("s")) return fail(error::bad_message, "Expected a status message");
  const auto stat = text.substr(1);
  if (stat == "not_allowed")
    return fail(error::not_allowed, fmt::format("Connection attempt to node {} not allowed", printable(peer_.node)));
  if (config_.request_name)
    return fail(error::unexpected_status, fmt::format("Node {} answered {} to a request for a name",
                                                      printable(peer_.node), printable(stat)));
  if (stat == "ok" || stat == "ok_simultaneous") {
    step_ = step::recv_challenge;
    return true;
  }
  if (stat == "nok")
    return fail(error::nok, fmt::format("Connection attempt to node {} dropped: simultaneous connect, theirs is kept",
                                        printable(peer_.node)));
  if (stat == "alive") {
    state_ = state::asking;
    question_ = question::is_pending;
    return true;
  }
  return fail(error::unexpected_status,
              fmt::format("Unknown status from node {}: {}", printable(peer_.node), printable(stat)));
}

void handshake::answer_is_pending(bool still_pending) {
  if (state_ != state::asking || question_ != question::is_pending)
    throw std::logic_error("handshake::answer_is_pending without an is_pending question");
  question_ = question::none;
  state_ = state::running;
  if (!still_pending) {
    send("sfalse");
    fail(error::alive_refused,
         fmt::format("Connection attempt to node {} withdrawn: the old connection stays", printable(peer_.node)));
    return;
  }
  send("strue");
  step_ = step::recv_challenge;
  process();
}

bool handshake::on_challenge(std::span<const std::byte> msg) {
  if (tag(msg) != 'N' || msg.size() < 19)  // dist_util.erl:894
    return fail(error::bad_message, fmt::format("Bad challenge from node {}", printable(peer_.node)));
  const std::size_t len = get16(msg, 17);
  if (msg.size() < 19 + len) return fail(error::bad_message, "Truncated node name in challenge");
  const auto name = as_text(msg.subspan(19, len));
  if (name != peer_.node)
    return fail(error::name_mismatch, fmt::format("Connection attempt to node {}: the challenge came from {}",
                                                  printable(peer_.node), printable(name)));
  peer_.flags = expand_mandatory_25(get64(msg, 1));
  const std::uint32_t challenge = get32(msg, 9);
  peer_.creation = get32(msg, 13);
  peer_.effective = expand_mandatory_25(this_flags_) & peer_.flags;
  if (!check_flags(peer_.effective)) return false;
  std::vector<std::byte> reply;
  reply.push_back(std::byte{'r'});
  put32(reply, config_.challenge);
  const auto d = gen_digest(challenge, cookie());
  reply.insert(reply.end(), d.begin(), d.end());
  send(reply);
  step_ = step::recv_ack;
  return true;
}

bool handshake::on_ack(std::span<const std::byte> msg) {
  if (tag(msg) != 'a' || msg.size() != 17)
    return fail(error::bad_message, fmt::format("Bad challenge ack from node {}", printable(peer_.node)));
  const auto expected = gen_digest(config_.challenge, cookie());
  if (!equal_constant_time(expected.data(), msg.data() + 1, expected.size()))
    return fail(error::bad_cookie, fmt::format("Connection attempt to node {} cancelled. Invalid challenge ack.",
                                               printable(peer_.node)));
  step_ = step::finished;
  state_ = state::done;
  return true;
}

}  // namespace cnode::dist
