// The atom cache's sending side against our own receiving side (issue 14): messages built from the input (atoms of a
// vocabulary of 4 096, more than the 2 039 slots, so slots are contended; one of 400 bytes for LongAtoms) are encoded
// with ATOM_CACHE_REF (etf::atom_ref_table), given a header by one output cache (write_header), sent whole or in
// fragments of an input-chosen size, or re-encoded without references (drop_atom_refs), and read by one
// inbound_reader, as the two ends of one connection.
// Invariants, for every message: it reads back as the term sent; at most 255 references; after it the reader's
// cache holds, for every slot, what the output cache holds; a message re-encoded without references is the plain
// encoding of the same message.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dist/control.hpp"
#include "dist/fragment.hpp"
#include "etf/codec.hpp"
#include "etf/term.hpp"

using namespace cnode;
using namespace cnode::dist;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const std::vector<etf::atom>& vocabulary() {
  static const std::vector<etf::atom> v = [] {
    std::vector<etf::atom> out;
    std::string long_text;
    for (int i = 0; i < 200; ++i) long_text += "\xc3\xa9";
    out.emplace_back(long_text);
    for (int i = 1; i < 4096; ++i) out.emplace_back("v" + std::to_string(i));
    return out;
  }();
  return v;
}

etf::term to_pid() {
  static const etf::term p = etf::term::pid(etf::pid_value{etf::atom("peer@h"), 5, 0, 1});
  return p;
}

std::optional<control_message> read_one(inbound_reader& r, std::span<const std::byte> packet, bool& done) {
  auto res = r.feed(packet);
  check(res.st != inbound_reader::status::failed);
  done = res.st == inbound_reader::status::message;
  if (!done) return std::nullopt;
  check(res.msg.headered);
  auto buf = etf::shared_bytes::copy({reinterpret_cast<const std::uint8_t*>(res.msg.bytes.data()), res.msg.bytes.size()});
  auto d = decode_control_body(buf, 0, buf.size(), res.msg.refs);
  check(static_cast<bool>(d));
  return d.msg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& vocab = vocabulary();
  atom_out_cache out;
  inbound_reader reader(true, {});
  etf::atom_ref_table table;
  std::size_t pos = 0;
  std::uint64_t seq = 0;
  while (pos + 2 <= size) {
    // A message: mode (whole, fragments, or re-encoded without references), its chunk size, then its atoms.
    const std::uint8_t mode = data[pos] % 3, chunk = data[pos + 1];
    pos += 2;
    std::vector<etf::term> items;
    while (pos + 2 <= size && items.size() < 600) {
      const std::size_t v = (std::size_t{data[pos]} << 8 | data[pos + 1]);
      pos += 2;
      if (v == 0xffff) break;  // the message ends
      items.emplace_back(vocab[v % vocab.size()]);
    }
    const etf::term payload = etf::term::tuple({etf::term::list(items), etf::term(static_cast<int>(items.size()))});
    const control_message m{send_msg{to_pid()}, {}, payload};
    std::vector<std::uint8_t> raw;
    table.clear();
    encode_control(m, raw, packet_form::header, nullptr, 0, &table);
    out_packet p;
    p.refs = table.take();
    check(p.refs.size() <= etf::atom_ref_table::max_refs);
    p.deferred_header = true;
    p.bytes.resize(raw.size());
    if (!raw.empty()) std::memcpy(p.bytes.data(), raw.data(), raw.size());
    if (mode == 2) {
      const bool header = chunk & 1;
      check(drop_atom_refs(p, header));
      const auto plain = encode_control(m, header ? packet_form::header : packet_form::pass_through);
      check(p.bytes.size() == plain.size() && std::memcmp(p.bytes.data(), plain.data(), plain.size()) == 0);
      continue;
    }
    write_header(p.refs, out, p.head);
    p.deferred_header = false;
    std::vector<std::span<const std::byte>> segs;
    p.segments(segs);
    std::optional<control_message> got;
    if (mode == 0) {
      std::vector<std::byte> whole;
      for (auto s : segs) whole.insert(whole.end(), s.begin(), s.end());
      bool done = false;
      got = read_one(reader, whole, done);
      check(done);
    } else {
      fragment_stream fs(std::move(segs), p.head.size(), ++seq, std::size_t{chunk} * 16 + 1);
      while (!fs.done()) {
        std::vector<std::byte> head;
        std::vector<std::span<const std::byte>> parts;
        fs.next(head, parts);
        for (auto s : parts) head.insert(head.end(), s.begin(), s.end());
        bool done = false;
        auto r = read_one(reader, head, done);
        check(done == fs.done());
        if (done) got = std::move(r);
      }
    }
    check(got.has_value() && got->payload && *got->payload == payload);
    for (std::size_t s = 0; s < atom_cache::size; ++s) {
      const etf::atom* a = out.find(s);
      const etf::atom* b = reader.cache().find(s);
      check((a == nullptr) == (b == nullptr) && (!a || *a == *b));
    }
  }
  return 0;
}
