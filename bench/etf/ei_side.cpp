// libei as a benchmark peer. Decoding walks the whole term the way a C node handles a term of unknown shape
// (ei_get_type, then the matching ei_decode_* for every element); encoding replays the term as a flat list of
// ei_x_encode_* calls into a reused ei_x_buff.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <ei.h>

#include "bench.hpp"

namespace cnode::etf::bench {

namespace {

[[noreturn]] void refused(const char* what) { throw std::runtime_error(std::string("libei refused: ") + what); }

struct scratch {
  std::vector<char> bytes;
  char atom[MAXATOMLEN_UTF8];
};

void walk(const char* buf, int* idx, scratch& s) {
  int type = 0, size = 0;
  if (ei_get_type(buf, idx, &type, &size) < 0) refused("ei_get_type");
  switch (type) {
    case ERL_SMALL_INTEGER_EXT:
    case ERL_INTEGER_EXT: {
      long v;
      if (ei_decode_long(buf, idx, &v) < 0) refused("ei_decode_long");
      return;
    }
    case ERL_SMALL_BIG_EXT:
    case ERL_LARGE_BIG_EXT: {
      EI_LONGLONG v;
      if (size <= 8 && ei_decode_longlong(buf, idx, &v) == 0) return;
      erlang_big* b = ei_alloc_big(static_cast<unsigned>(size));
      int rc = ei_decode_big(buf, idx, b);
      ei_free_big(b);
      if (rc < 0) refused("ei_decode_big");
      return;
    }
    case ERL_FLOAT_EXT: {
      double d;
      if (ei_decode_double(buf, idx, &d) < 0) refused("ei_decode_double");
      return;
    }
    case ERL_ATOM_EXT:
      if (ei_decode_atom(buf, idx, s.atom) < 0) refused("ei_decode_atom");
      return;
    case ERL_STRING_EXT:
      s.bytes.resize(static_cast<std::size_t>(size) + 1);
      if (ei_decode_string(buf, idx, s.bytes.data()) < 0) refused("ei_decode_string");
      return;
    case ERL_NIL_EXT:
    case ERL_LIST_EXT: {
      int n;
      if (ei_decode_list_header(buf, idx, &n) < 0) refused("ei_decode_list_header");
      if (n == 0) return;
      for (int i = 0; i < n; ++i) walk(buf, idx, s);
      walk(buf, idx, s);  // the tail
      return;
    }
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT: {
      int n;
      if (ei_decode_tuple_header(buf, idx, &n) < 0) refused("ei_decode_tuple_header");
      for (int i = 0; i < n; ++i) walk(buf, idx, s);
      return;
    }
    case ERL_MAP_EXT: {
      int n;
      if (ei_decode_map_header(buf, idx, &n) < 0) refused("ei_decode_map_header");
      for (int i = 0; i < 2 * n; ++i) walk(buf, idx, s);
      return;
    }
    case ERL_BINARY_EXT: {
      s.bytes.resize(static_cast<std::size_t>(size));
      long len;
      if (ei_decode_binary(buf, idx, s.bytes.data(), &len) < 0) refused("ei_decode_binary");
      return;
    }
    case ERL_BIT_BINARY_EXT: {
      const char* p;
      unsigned int off;
      size_t bits;
      if (ei_decode_bitstring(buf, idx, &p, &off, &bits) < 0) refused("ei_decode_bitstring");
      return;
    }
    case ERL_PID_EXT: {
      erlang_pid p;
      if (ei_decode_pid(buf, idx, &p) < 0) refused("ei_decode_pid");
      return;
    }
    case ERL_PORT_EXT: {
      erlang_port p;
      if (ei_decode_port(buf, idx, &p) < 0) refused("ei_decode_port");
      return;
    }
    case ERL_NEW_REFERENCE_EXT: {
      erlang_ref r;
      if (ei_decode_ref(buf, idx, &r) < 0) refused("ei_decode_ref");
      return;
    }
    case ERL_NEW_FUN_EXT:
    case ERL_EXPORT_EXT: {
      erlang_fun f;
      if (ei_decode_fun(buf, idx, &f) < 0) refused("ei_decode_fun");
      free_fun(&f);
      return;
    }
    default: refused("an unexpected type");
  }
}

// One ei_x_encode_* call.
struct op {
  enum kind_t { integer, big, dbl, atom, string, tuple, list, nil, binary, bits, map, pid } kind;
  std::int64_t n = 0;  // integer value; arity; byte or bit count
  double d = 0;
  std::string text;    // atom text, string bytes, binary bytes
  std::shared_ptr<erlang_big> bignum;
  erlang_pid p{};
};

void flatten(const term& t, std::vector<op>& ops) {
  switch (t.type()) {
    case term_type::integer: ops.push_back({op::integer, t.small()}); return;
    case term_type::big_integer: {
      big_int mag = t.big_ref() < 0 ? big_int(-t.big_ref()) : t.big_ref();
      std::vector<std::uint8_t> le;
      while (mag > 0) {
        le.push_back(static_cast<std::uint8_t>(mag & 0xff));
        mag >>= 8;
      }
      op o{op::big};
      o.bignum.reset(ei_alloc_big(static_cast<unsigned>(le.size())), ei_free_big);
      auto* digits = static_cast<unsigned short*>(o.bignum->digits);
      for (std::size_t i = 0; i < le.size(); ++i)
        digits[i / 2] = static_cast<unsigned short>(digits[i / 2] | (le[i] << (8 * (i % 2))));
      o.bignum->is_neg = t.big_ref() < 0;
      ops.push_back(std::move(o));
      return;
    }
    case term_type::float_: {
      op o{op::dbl};
      o.d = t.float_value();
      ops.push_back(std::move(o));
      return;
    }
    case term_type::atom: {
      op o{op::atom};
      o.text = std::string(t.atom_value().text());
      ops.push_back(std::move(o));
      return;
    }
    case term_type::tuple:
      ops.push_back({op::tuple, static_cast<std::int64_t>(t.tuple_size())});
      for (const term& e : t.elements()) flatten(e, ops);
      return;
    case term_type::nil: ops.push_back({op::nil}); return;
    case term_type::list: {
      std::vector<term> elems;
      term tail;
      bool proper = t.list_to_vector(elems, &tail);
      bool bytes = proper && elems.size() <= 65535;
      for (const term& e : elems) bytes = bytes && e.is_small() && e.small() >= 0 && e.small() <= 255;
      if (bytes) {
        op o{op::string};
        for (const term& e : elems) o.text.push_back(static_cast<char>(e.small()));
        ops.push_back(std::move(o));
        return;
      }
      ops.push_back({op::list, static_cast<std::int64_t>(elems.size())});
      for (const term& e : elems) flatten(e, ops);
      flatten(tail, ops);
      return;
    }
    case term_type::binary: {
      op o{t.last_bits() == 8 ? op::binary : op::bits, static_cast<std::int64_t>(t.bit_size())};
      o.text.assign(reinterpret_cast<const char*>(t.bytes().data()), t.bytes().size());
      ops.push_back(std::move(o));
      return;
    }
    case term_type::map:
      ops.push_back({op::map, static_cast<std::int64_t>(t.map_size())});
      for (std::size_t i = 0; i < t.map_size(); ++i) {
        flatten(t.map_keys()[i], ops);
        flatten(t.map_values()[i], ops);
      }
      return;
    case term_type::pid: {
      op o{op::pid};
      const pid_value& v = t.as_pid();
      std::memcpy(o.p.node, v.node.text().data(), v.node.size());
      o.p.num = v.id;
      o.p.serial = v.serial;
      o.p.creation = v.creation;
      ops.push_back(std::move(o));
      return;
    }
    default: throw std::runtime_error("bench corpus holds a type the libei encoder replay does not do");
  }
}

}  // namespace

struct ei_peer::state {
  std::vector<std::uint8_t> bytes;
  std::vector<op> ops;
  scratch s;
  ei_x_buff x{};
};

ei_peer::ei_peer(const item& it) : s_(std::make_unique<state>()) {
  s_->bytes = it.bytes;
  flatten(it.value, s_->ops);
  ei_x_new_with_version(&s_->x);
}

ei_peer::~ei_peer() { ei_x_free(&s_->x); }

void ei_peer::decode() {
  int idx = 0, version;
  const char* buf = reinterpret_cast<const char*>(s_->bytes.data());
  if (ei_decode_version(buf, &idx, &version) < 0) refused("ei_decode_version");
  walk(buf, &idx, s_->s);
}

void ei_peer::encode() {
  ei_x_buff* x = &s_->x;
  x->index = 0;  // reuse the buffer, as our encoder reuses its vector
  ei_x_encode_version(x);
  for (const op& o : s_->ops) {
    int rc = 0;
    switch (o.kind) {
      case op::integer: rc = ei_x_encode_longlong(x, o.n); break;
      case op::big: rc = ei_x_encode_big(x, o.bignum.get()); break;
      case op::dbl: rc = ei_x_encode_double(x, o.d); break;
      case op::atom:
        // As term_to_binary in OTP 25: Latin-1 tags where the atom allows, UTF-8 otherwise.
        rc = ei_x_encode_atom_len_as(x, o.text.data(), static_cast<int>(o.text.size()), ERLANG_UTF8,
                                     static_cast<erlang_char_encoding>(ERLANG_LATIN1 | ERLANG_UTF8));
        break;
      case op::string: rc = ei_x_encode_string_len(x, o.text.data(), static_cast<int>(o.text.size())); break;
      case op::tuple: rc = ei_x_encode_tuple_header(x, o.n); break;
      case op::list: rc = ei_x_encode_list_header(x, o.n); break;
      case op::nil: rc = ei_x_encode_empty_list(x); break;
      case op::binary: rc = ei_x_encode_binary(x, o.text.data(), static_cast<int>(o.text.size())); break;
      case op::bits: rc = ei_x_encode_bitstring(x, o.text.data(), 0, static_cast<size_t>(o.n)); break;
      case op::map: rc = ei_x_encode_map_header(x, o.n); break;
      case op::pid: rc = ei_x_encode_pid(x, &o.p); break;
    }
    if (rc < 0) refused("ei_x_encode_*");
  }
}

std::size_t ei_peer::encoded_size() const { return static_cast<std::size_t>(s_->x.index); }

}  // namespace cnode::etf::bench
