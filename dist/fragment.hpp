#pragma once
// Distribution headers on the wire after the handshake, once DIST_HDR_ATOM_CACHE or FRAGMENTS is in effect
// (erl_ext_dist "Distribution Header", "Distribution Header for Fragmented Messages"). Sans-I/O:
//  - inbound_reader: one packet in, zero or one whole message out. It reads the normal header (131,68) and the
//    fragment headers (131,69 starting, 131,70 continuing), fills the connection's atom cache from each header
//    when that header arrives (as erts_prepare_dist_ext does for a first fragment: the sender's later headers
//    already count on those entries), and reassembles fragments of several interleaved sequences, bounded per
//    message (max_message) and per node (a partial_budget shared by every connection).
//  - fragment_stream: splits one whole message in the 131,68 form into 64 KiB fragments, one at a time, so that
//    the connection writer can interleave them with other traffic.
//  - the conversions between the pass-through form and the header form with no atom cache references.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "dist/control.hpp"
#include "etf/atom.hpp"
#include "etf/codec.hpp"
#include "etf/term.hpp"

namespace cnode::dist {

// Data bytes per fragment. erts uses 64 KiB (observed on OTP 25: a 150 KB message came as packets of 65 555 bytes
// = 19 header bytes + 65 536 of data).
inline constexpr std::size_t fragment_size = 64 * 1024;

// What all the connections of a node hold for messages still missing fragments. Thread-safe.
class partial_budget {
 public:
  explicit partial_budget(std::size_t limit) noexcept : limit_(limit) {}
  // Takes n bytes; false (and nothing taken) when that would cross the limit.
  bool take(std::size_t n) noexcept;
  void give(std::size_t n) noexcept { held_.fetch_sub(n, std::memory_order_relaxed); }
  std::size_t held() const noexcept { return held_.load(std::memory_order_relaxed); }
  std::size_t limit() const noexcept { return limit_; }
  // Room reserved for partial messages at the size their first fragment announces (not yet charged: the bytes
  // are charged with take() as they arrive), bounded by the same limit so that what peers announce costs the
  // node at most that much address space. False (nothing reserved) when it would cross the limit.
  bool reserve(std::size_t n) noexcept;
  void unreserve(std::size_t n) noexcept { reserved_.fetch_sub(n, std::memory_order_relaxed); }
  std::size_t reserved() const noexcept { return reserved_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> held_{0};
  std::atomic<std::size_t> reserved_{0};
  const std::size_t limit_;
};

enum class fragment_error {
  bad_header = 1,      // 131 followed by something other than 68/69/70, or a 'p' packet on a headered connection
  truncated,           // the packet ends inside a header
  unknown_sequence,    // a continuing fragment for a sequence never started (or already finished)
  duplicate_sequence,  // a starting fragment for a sequence already in progress
  bad_fragment_id,     // fragment id 0, or not one less than the previous fragment's
  message_too_large,   // the reassembled message would exceed max_message
  budget_exceeded,     // the node's bound on bytes held for partial messages would be crossed
  too_many_sequences,  // more sequences in progress at once than allowed
};
const std::error_category& fragment_category() noexcept;
inline std::error_code make_error_code(fragment_error e) noexcept { return {static_cast<int>(e), fragment_category()}; }

// Reads a normal distribution header's body (N, Flags, AtomCacheRefs) at p[pos..end): resolves every reference,
// appends the atoms to refs (in reference order, for ATOM_CACHE_REF indices), and stores new entries in cache
// (which may be null: then only new entries resolve). On failure returns the error (a control_error, or
// etf::error::atom_table_full) and sets err_at to the offending byte's offset.
std::error_code read_header_refs(const std::byte* p, std::size_t& pos, std::size_t end, atom_cache* cache,
                                 std::vector<etf::atom>& refs, std::size_t& err_at);

// One whole inbound message.
struct inbound_message {
  // Pass-through: the packet as it came ('p', 131, Control, [131, Payload]). Headered: the control term and the
  // payload after the header, without 131 prefixes.
  std::span<const std::byte> bytes;
  bool headered = false;
  std::span<const etf::atom> refs;  // headered: the atoms of the header's references, by index
  // Set when the bytes are a reassembled message: its buffer, which bytes spans whole. The receiver may keep it
  // (decoded binaries refer into it) instead of copying.
  etf::shared_bytes shared;
  std::uint64_t fragments = 1;  // how many packets it came in
};

class inbound_reader {
 public:
  struct limits {
    std::size_t max_message = 128 * 1024 * 1024;  // a reassembled message longer than this is refused
    std::size_t max_sequences = 4096;             // partial messages in progress at once
  };
  enum class status { message, pending, failed };
  struct result {
    status st = status::pending;
    inbound_message msg;   // status::message: valid until the next feed
    std::error_code ec;    // status::failed
    std::size_t offset = 0;  // status::failed: the offending byte's offset in the packet
  };

  // headered: whether DIST_HDR_ATOM_CACHE or FRAGMENTS is in effect (then a header is required on every packet).
  inbound_reader(bool headered, limits l, std::shared_ptr<partial_budget> budget = nullptr);
  ~inbound_reader();
  inbound_reader(const inbound_reader&) = delete;
  inbound_reader& operator=(const inbound_reader&) = delete;

  // One non-tick packet, without its 4-byte length. After a failure the connection must be closed.
  result feed(std::span<const std::byte> packet);
  // Drops every partial message and gives its bytes back (the connection went down).
  void clear() noexcept;
  // The last message fed has been handled: a reassembled one's buffer is given back (it would otherwise stay, at the
  // size of the largest message, until the next fragmented one).
  void message_done() noexcept;

  std::size_t held_bytes() const noexcept { return held_; }
  std::size_t reserved_bytes() const noexcept { return reserved_; }
  std::size_t sequences() const noexcept { return partial_.size(); }
  const atom_cache& cache() const noexcept { return cache_; }

  // Direct reads (inbound_path): a continuation fragment (131,70) whose data the socket reads straight into its
  // message's buffer, instead of into the framing's buffer and then copied. begin_direct is given the fragment's
  // 18-byte prefix and the length of its data; it checks what feed would check (the sequence, the fragment id, the
  // message's bound, the budget, which it charges) and that the buffer already has the room, and returns where the
  // data goes. An empty span: the fragment must go through feed as usual (which refuses what is wrong with it, with
  // the error feed gives). Once the data is all there, end_direct takes the fragment as feed would: pending, or
  // the whole message.
  static constexpr std::size_t prefix_size = 18;
  std::span<std::byte> begin_direct(std::span<const std::byte> prefix, std::size_t data);
  result end_direct();

 private:
  struct partial {
    // The announced size when the reservation bounds allowed it, then sized so at once (zero-filled only where a
    // pooled buffer never had bytes; bytes past `filled` are not the message's); else grown as fragments come.
    std::vector<std::uint8_t> data;
    std::size_t filled = 0;     // the message's bytes so far, at the front of data
    std::vector<etf::atom> refs;
    std::uint64_t next_id = 0;  // the fragment id expected next
    std::uint64_t count = 0;    // fragments so far
    std::size_t charged = 0;    // bytes taken from the budget
    std::size_t reserved = 0;   // bytes of room reserved (reserved_ and the budget's reserve())
  };
  result fail(std::error_code ec, std::size_t at);
  bool charge(partial& p, std::size_t n, std::error_code& ec);
  static void append(partial& p, const std::byte* from, std::size_t n);
  result complete(std::unordered_map<std::uint64_t, partial>::iterator it);
  struct direct {
    bool active = false;
    std::uint64_t seq = 0, id = 0;
    std::size_t data = 0;
  } direct_;
  void release(partial& p) noexcept;

  bool headered_;
  limits limits_;
  std::shared_ptr<partial_budget> budget_;
  atom_cache cache_;
  std::vector<etf::atom> refs_;
  std::unordered_map<std::uint64_t, partial> partial_;
  std::size_t reserve_for(std::size_t data, std::uint64_t fragments) noexcept;
  etf::shared_bytes done_;             // the last reassembled message
  std::vector<etf::atom> done_refs_;
  std::size_t held_ = 0;
  std::size_t reserved_ = 0;  // room reserved by this reader's partials, at most limits_.max_message
};

// 131,68,0 + Control + Payload from 'p',131,Control,131,Payload (and back). Returns false, leaving out alone, if
// the packet is not in the source form (or, for to_pass_through, its header has atom cache references).
bool to_header_form(std::span<const std::byte> pass_through, std::vector<std::byte>& out);
bool to_pass_through(std::span<const std::byte> headered, std::vector<std::byte>& out);
// A headered message as one self-contained 131,68 packet: every reference a new cache entry (long atoms), then
// the body. Replaces out. What connection_handler::on_message hands to on_packet by default.
void self_contained_packet(const inbound_message& m, std::vector<std::byte>& out);
// The length of the normal distribution header at the packet's start (131,68,N,...), 0 if it is not one.
std::size_t header_length(std::span<const std::byte> packet) noexcept;

// A packet to send whose big binaries may have been left out of its bytes (etf::encode_options::externals): on the
// wire it is `bytes` with each external's bytes inserted at its position (positions in bytes, in order). The
// binaries' terms keep their bytes alive until the packet is written, so a payload is never copied into a packet.
//
// With deferred_header (encode_control with an etf::atom_ref_table): bytes hold the control term and payload only,
// whose atoms refer by ATOM_CACHE_REF index into refs, and the connection writes the distribution header into head
// when it orders the packet on the wire (write_header): the connection's output cache decides there which
// references are new cache entries and which cached, in the order the peer reads them.
struct out_packet {
  std::vector<std::byte> bytes;
  std::vector<etf::external_binary> externals;
  std::vector<etf::atom> refs;   // deferred_header: the atoms by reference index
  std::vector<std::byte> head;   // the header written at ordering time, sent before bytes
  bool deferred_header = false;
  out_packet() = default;
  out_packet(std::vector<std::byte> b) noexcept : bytes(std::move(b)) {}  // NOLINT: a plain packet converts
  bool empty() const noexcept { return bytes.empty() && externals.empty() && !deferred_header; }
  // bytes and externals (not head: what a packet is counted with when it is queued).
  std::size_t size() const noexcept;
  // The pieces in wire order (empty ones left out), head first; they point into head, bytes and the binaries.
  void segments(std::vector<std::span<const std::byte>>& out) const;
  // Copies every external into bytes (a packet whose form must be converted); head, if any, stays apart.
  void flatten();
};

// The sending side of a connection's atom cache: the atom erts' out_arr holds per slot, the receiver's entries as
// our headers set them. One per connection, used by the writer only, in wire order.
using atom_out_cache = atom_cache;

// Appends the normal distribution header (131,68,N,Flags,AtomCacheRefs) for a message whose terms refer to refs
// (at most 255) by index, updating cache: an atom the cache holds at its slot is a CachedAtomRef, any other a
// NewCacheEntry (index, length, text) that takes the slot; LongAtoms when a text is longer than 255 bytes
// (erts_encode_ext_dist_header_finalize).
void write_header(std::span<const etf::atom> refs, atom_out_cache& cache, std::vector<std::byte>& head);
// A deferred_header packet re-encoded without atom cache references, in the 131,68,0 form (header) or the
// pass-through form: for a connection whose peer lacks DIST_HDR_ATOM_CACHE (a reconnect to another node of the same
// name, or a packet encoded before the peer's flags were known). False, packet untouched, if its bytes do not decode.
bool drop_atom_refs(out_packet& p, bool header);

// Splits one message in the 131,68 form into fragments: the first carries 131,69,SeqId,FragId and the header's
// N, Flags and refs; the rest 131,70,SeqId,FragId. FragId counts down to 1. The packet must outlive the stream's
// use of the spans it hands out.
class fragment_stream {
 public:
  // header_len: header_length(packet), non-zero.
  fragment_stream(std::span<const std::byte> packet, std::size_t header_len, std::uint64_t seq_id,
                  std::size_t chunk = fragment_size);
  // A packet in pieces (out_packet::segments): the header must lie within the first.
  fragment_stream(std::vector<std::span<const std::byte>> segments, std::size_t header_len, std::uint64_t seq_id,
                  std::size_t chunk = fragment_size);
  bool done() const noexcept { return offset_ >= size_; }
  std::uint64_t total() const noexcept { return total_; }
  // The next fragment: its header bytes (appended to head) and its data (a span into the packet). Returns the
  // number of the original packet's bytes it covers. For a packet given as one span only.
  std::size_t next(std::vector<std::byte>& head, std::span<const std::byte>& data);
  // The same, the data as the spans of the segments it covers (appended to data).
  std::size_t next(std::vector<std::byte>& head, std::vector<std::span<const std::byte>>& data);

 private:
  void advance(std::size_t n) noexcept;
  std::vector<std::span<const std::byte>> segs_;
  std::size_t size_ = 0, header_len_, chunk_, offset_ = 0;
  std::size_t seg_ = 0, seg_off_ = 0;  // where offset_ is among the segments
  std::uint64_t seq_, total_, next_id_;
};

}  // namespace cnode::dist

template <>
struct std::is_error_code_enum<cnode::dist::fragment_error> : std::true_type {};
