// libei (erl_interface 5.3) as a second oracle for the ETF codec, across every type libei supports:
//   1. what we encode, a walk with ei_get_type/ei_decode_* reads back as the same term;
//   2. what ei_x_encode_* writes for a term, we decode to the same term;
//   3. both encodings are byte-identical (libei always writes UTF-8 atom tags, so ours uses utf8_atoms), except
//      where libei departs from the BEAM (integers of 2^27..2^31 in magnitude).
// The corpus is a fixed list of edge values plus seeded random terms. Usage: etf_ei_check [SEED [COUNT]].
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <ei.h>

#include "etf/codec.hpp"
#include "etf/format.hpp"
#include "ei_corpus.hpp"

using namespace cnode::etf;
using cnode::etf::ei_check::ei_corpus;

namespace {

[[noreturn]] void ei_failed(const char* what) { throw std::runtime_error(std::string("libei: ") + what + " failed"); }

// ---------------------------------------------------------------------------------------------------------------
// libei bytes -> term, through ei_decode_* only.

term from_ei(const char* buf, int& idx);

big_int big_from_ei(const char* buf, int& idx, int bytes) {
  erlang_big* b = ei_alloc_big(static_cast<unsigned>(bytes));
  if (!b || ei_decode_big(buf, &idx, b) < 0) ei_failed("ei_decode_big");
  big_int v = 0;
  const auto* digits = static_cast<const unsigned short*>(b->digits);
  for (int i = (bytes + 1) / 2 - 1; i >= 0; --i) v = (v << 16) | digits[i];
  if (b->is_neg) v = -v;
  ei_free_big(b);
  return v;
}

atom atom_from_ei(const char* buf, int& idx) {
  char text[MAXATOMLEN_UTF8];
  erlang_char_encoding was, result;
  if (ei_decode_atom_as(buf, &idx, text, sizeof text, ERLANG_UTF8, &was, &result) < 0) ei_failed("ei_decode_atom_as");
  return atom(std::string_view(text));
}

term pid_from_ei(const erlang_pid& p) { return term::pid({atom(p.node), p.num, p.serial, p.creation}); }

erlang_pid pid_to_ei(const pid_value& v) {
  erlang_pid p{};
  std::memcpy(p.node, v.node.text().data(), v.node.size());
  p.num = v.id;
  p.serial = v.serial;
  p.creation = v.creation;
  return p;
}

term fun_from_ei(const char* buf, int& idx) {
  erlang_fun f{};
  if (ei_decode_fun(buf, &idx, &f) < 0) ei_failed("ei_decode_fun");
  term out;
  if (f.type == erlang_fun::EI_FUN_EXPORT) {
    out = term::export_({atom(f.module), atom(f.u.exprt.func), static_cast<std::uint8_t>(f.arity)});
  } else {
    fun_value v;
    v.arity = static_cast<std::uint8_t>(f.arity);
    std::memcpy(v.uniq, f.u.closure.md5, 16);
    v.index = static_cast<std::uint32_t>(f.u.closure.index);
    v.module = atom(f.module);
    v.old_index = term(f.u.closure.old_index);
    v.old_uniq = term(f.u.closure.uniq);
    v.pid = pid_from_ei(f.u.closure.pid);
    int fi = 0;
    for (long i = 0; i < f.u.closure.n_free_vars; ++i) v.free_vars.push_back(from_ei(f.u.closure.free_vars, fi));
    if (fi != f.u.closure.free_var_len) ei_failed("free variable walk");
    out = term::fun(std::move(v));
  }
  free_fun(&f);
  return out;
}

term from_ei(const char* buf, int& idx) {
  int type = 0, size = 0;
  if (ei_get_type(buf, &idx, &type, &size) < 0) ei_failed("ei_get_type");
  switch (type) {
    case ERL_SMALL_INTEGER_EXT:
    case ERL_INTEGER_EXT: {
      long v;
      if (ei_decode_long(buf, &idx, &v) < 0) ei_failed("ei_decode_long");
      return term(v);
    }
    case ERL_SMALL_BIG_EXT:
    case ERL_LARGE_BIG_EXT: {
      const int start = idx;
      big_int v = big_from_ei(buf, idx, size);
      // Where a 64-bit C integer holds the value, ei_decode_longlong/ulonglong must agree with ei_decode_big.
      int probe = start;
      EI_LONGLONG ll;
      EI_ULONGLONG ull;
      if (v >= INT64_MIN && v <= INT64_MAX && (ei_decode_longlong(buf, &probe, &ll) < 0 || big_int(ll) != v))
        ei_failed("ei_decode_longlong agreeing with ei_decode_big");
      probe = start;
      if (v > INT64_MAX && v <= UINT64_MAX && (ei_decode_ulonglong(buf, &probe, &ull) < 0 || big_int(ull) != v))
        ei_failed("ei_decode_ulonglong agreeing with ei_decode_big");
      return term::from_big(std::move(v));
    }
    case ERL_FLOAT_EXT: {
      double d;
      if (ei_decode_double(buf, &idx, &d) < 0) ei_failed("ei_decode_double");
      return term(d);
    }
    case ERL_ATOM_EXT:
      return term(atom_from_ei(buf, idx));
    case ERL_PID_EXT: {
      erlang_pid p;
      if (ei_decode_pid(buf, &idx, &p) < 0) ei_failed("ei_decode_pid");
      return pid_from_ei(p);
    }
    case ERL_PORT_EXT: {
      erlang_port p;
      if (ei_decode_port(buf, &idx, &p) < 0) ei_failed("ei_decode_port");
      return term::port({atom(p.node), p.id, p.creation});
    }
    case ERL_NEW_REFERENCE_EXT: {
      erlang_ref r;
      if (ei_decode_ref(buf, &idx, &r) < 0) ei_failed("ei_decode_ref");
      ref_value v;
      v.node = atom(r.node);
      v.creation = r.creation;
      v.len = static_cast<std::uint8_t>(r.len);
      for (int i = 0; i < r.len; ++i) v.ids[i] = r.n[i];
      return term::reference(v);
    }
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT: {
      int arity;
      if (ei_decode_tuple_header(buf, &idx, &arity) < 0) ei_failed("ei_decode_tuple_header");
      std::vector<term> elems;
      for (int i = 0; i < arity; ++i) elems.push_back(from_ei(buf, idx));
      return term::tuple(std::move(elems));
    }
    case ERL_NIL_EXT: {
      int arity;
      if (ei_decode_list_header(buf, &idx, &arity) < 0 || arity != 0) ei_failed("ei_decode_list_header of []");
      return term::nil();
    }
    case ERL_STRING_EXT: {
      std::vector<char> s(static_cast<std::size_t>(size) + 1);
      if (ei_decode_string(buf, &idx, s.data()) < 0) ei_failed("ei_decode_string");
      std::vector<term> elems;
      for (int i = 0; i < size; ++i) elems.emplace_back(static_cast<unsigned char>(s[static_cast<std::size_t>(i)]));
      return term::list(std::move(elems));
    }
    case ERL_LIST_EXT: {
      int arity;
      if (ei_decode_list_header(buf, &idx, &arity) < 0) ei_failed("ei_decode_list_header");
      std::vector<term> elems;
      for (int i = 0; i < arity; ++i) elems.push_back(from_ei(buf, idx));
      int tail_type, tail_size;
      ei_get_type(buf, &idx, &tail_type, &tail_size);
      if (tail_type == ERL_NIL_EXT) {
        int zero;
        ei_decode_list_header(buf, &idx, &zero);
        return term::list(std::move(elems));
      }
      term tail = from_ei(buf, idx);
      return term::improper_list(std::move(elems), std::move(tail));
    }
    case ERL_BINARY_EXT: {
      std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
      long len;
      if (ei_decode_binary(buf, &idx, bytes.data(), &len) < 0 || len != size) ei_failed("ei_decode_binary");
      return term::binary(bytes);
    }
    case ERL_BIT_BINARY_EXT: {
      const char* p;
      unsigned int bitoffs;
      size_t nbits;
      if (ei_decode_bitstring(buf, &idx, &p, &bitoffs, &nbits) < 0 || bitoffs != 0) ei_failed("ei_decode_bitstring");
      std::size_t nbytes = (nbits + 7) / 8;
      auto last = static_cast<std::uint8_t>(nbits % 8 == 0 ? 8 : nbits % 8);
      return term::bitstring({reinterpret_cast<const std::uint8_t*>(p), nbytes}, last);
    }
    case ERL_MAP_EXT: {
      int arity;
      if (ei_decode_map_header(buf, &idx, &arity) < 0) ei_failed("ei_decode_map_header");
      std::vector<std::pair<term, term>> kvs;
      for (int i = 0; i < arity; ++i) {
        term k = from_ei(buf, idx);
        term v = from_ei(buf, idx);
        kvs.emplace_back(std::move(k), std::move(v));
      }
      return term::map(std::move(kvs));
    }
    case ERL_NEW_FUN_EXT:
    case ERL_EXPORT_EXT:
      return fun_from_ei(buf, idx);
    default:
      throw std::runtime_error("libei: ei_get_type gave unexpected type " + std::to_string(type));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// term -> libei bytes, through ei_x_encode_* only.

void to_ei(const term& t, ei_x_buff* x);

void big_to_ei(const big_int& v, ei_x_buff* x) {
  big_int mag = v < 0 ? big_int(-v) : v;
  std::vector<std::uint8_t> le;
  while (mag > 0) {
    le.push_back(static_cast<std::uint8_t>(mag & 0xff));
    mag >>= 8;
  }
  erlang_big* b = ei_alloc_big(static_cast<unsigned>(le.size()));
  auto* digits = static_cast<unsigned short*>(b->digits);
  for (std::size_t i = 0; i < le.size(); ++i)
    digits[i / 2] = static_cast<unsigned short>(digits[i / 2] | (le[i] << (8 * (i % 2))));
  b->is_neg = v < 0;
  if (ei_x_encode_big(x, b) < 0) ei_failed("ei_x_encode_big");
  ei_free_big(b);
}

void atom_to_ei(atom a, ei_x_buff* x) {
  if (ei_x_encode_atom_len_as(x, a.text().data(), static_cast<int>(a.size()), ERLANG_UTF8, ERLANG_UTF8) < 0)
    ei_failed("ei_x_encode_atom_len_as");
}

void to_ei(const term& t, ei_x_buff* x) {
  switch (t.type()) {
    case term_type::integer:
      if (ei_x_encode_longlong(x, t.small()) < 0) ei_failed("ei_x_encode_longlong");
      return;
    case term_type::big_integer:
      if (t.big_ref() > 0 && t.big_ref() <= UINT64_MAX) {
        if (ei_x_encode_ulonglong(x, static_cast<EI_ULONGLONG>(t.big_ref())) < 0) ei_failed("ei_x_encode_ulonglong");
      } else {
        big_to_ei(t.big_ref(), x);
      }
      return;
    case term_type::float_:
      if (ei_x_encode_double(x, t.float_value()) < 0) ei_failed("ei_x_encode_double");
      return;
    case term_type::atom:
      atom_to_ei(t.atom_value(), x);
      return;
    case term_type::tuple:
      if (ei_x_encode_tuple_header(x, static_cast<long>(t.tuple_size())) < 0) ei_failed("ei_x_encode_tuple_header");
      for (const term& e : t.elements()) to_ei(e, x);
      return;
    case term_type::nil:
      if (ei_x_encode_empty_list(x) < 0) ei_failed("ei_x_encode_empty_list");
      return;
    case term_type::list: {
      std::vector<term> elems;
      term tail;
      bool proper = t.list_to_vector(elems, &tail);
      bool bytes = proper && elems.size() <= 65535;
      for (const term& e : elems) bytes = bytes && e.is_small() && e.small() >= 0 && e.small() <= 255;
      if (bytes) {  // what term_to_binary writes as STRING_EXT
        std::string s;
        for (const term& e : elems) s.push_back(static_cast<char>(e.small()));
        if (ei_x_encode_string_len(x, s.data(), static_cast<int>(s.size())) < 0) ei_failed("ei_x_encode_string_len");
        return;
      }
      if (ei_x_encode_list_header(x, static_cast<long>(elems.size())) < 0) ei_failed("ei_x_encode_list_header");
      for (const term& e : elems) to_ei(e, x);
      if (proper) {
        if (ei_x_encode_empty_list(x) < 0) ei_failed("ei_x_encode_empty_list");
      } else {
        to_ei(tail, x);
      }
      return;
    }
    case term_type::binary: {
      auto b = t.bytes();
      if (t.last_bits() == 8) {
        if (ei_x_encode_binary(x, b.data(), static_cast<int>(b.size())) < 0) ei_failed("ei_x_encode_binary");
      } else if (ei_x_encode_bitstring(x, reinterpret_cast<const char*>(b.data()), 0, t.bit_size()) < 0) {
        ei_failed("ei_x_encode_bitstring");
      }
      return;
    }
    case term_type::map: {
      if (ei_x_encode_map_header(x, static_cast<long>(t.map_size())) < 0) ei_failed("ei_x_encode_map_header");
      for (std::size_t i = 0; i < t.map_size(); ++i) {
        to_ei(t.map_keys()[i], x);
        to_ei(t.map_values()[i], x);
      }
      return;
    }
    case term_type::pid: {
      erlang_pid p = pid_to_ei(t.as_pid());
      if (ei_x_encode_pid(x, &p) < 0) ei_failed("ei_x_encode_pid");
      return;
    }
    case term_type::port: {
      erlang_port p{};
      const port_value& v = t.as_port();
      std::memcpy(p.node, v.node.text().data(), v.node.size());
      p.id = v.id;
      p.creation = v.creation;
      if (ei_x_encode_port(x, &p) < 0) ei_failed("ei_x_encode_port");
      return;
    }
    case term_type::reference: {
      erlang_ref r{};
      const ref_value& v = t.as_ref();
      std::memcpy(r.node, v.node.text().data(), v.node.size());
      r.len = v.len;
      for (int i = 0; i < v.len; ++i) r.n[i] = v.ids[i];
      r.creation = v.creation;
      if (ei_x_encode_ref(x, &r) < 0) ei_failed("ei_x_encode_ref");
      return;
    }
    case term_type::export_: {
      const export_value& v = t.as_export();
      erlang_fun f{};
      f.type = erlang_fun::EI_FUN_EXPORT;
      f.arity = v.arity;
      std::memcpy(f.module, v.module.text().data(), v.module.size());
      std::string func(v.function.text());
      f.u.exprt.func = func.data();
      if (ei_x_encode_fun(x, &f) < 0) ei_failed("ei_x_encode_fun (export)");
      return;
    }
    case term_type::fun: {
      const fun_value& v = t.as_fun();
      erlang_fun f{};
      f.type = erlang_fun::EI_FUN_CLOSURE;
      f.arity = v.arity;
      std::memcpy(f.module, v.module.text().data(), v.module.size());
      std::memcpy(f.u.closure.md5, v.uniq, 16);
      f.u.closure.index = v.index;
      f.u.closure.old_index = static_cast<long>(v.old_index.small());
      f.u.closure.uniq = static_cast<long>(v.old_uniq.small());
      f.u.closure.n_free_vars = static_cast<long>(v.free_vars.size());
      f.u.closure.pid = pid_to_ei(v.pid.as_pid());
      ei_x_buff fv;
      ei_x_new(&fv);
      for (const term& e : v.free_vars) to_ei(e, &fv);
      f.u.closure.free_vars = fv.buff;
      f.u.closure.free_var_len = fv.index;
      int rc = ei_x_encode_fun(x, &f);
      ei_x_free(&fv);
      if (rc < 0) ei_failed("ei_x_encode_fun (closure)");
      return;
    }
  }
}

std::string hex(std::span<const std::uint8_t> b, std::size_t from) {
  std::string s;
  for (std::size_t i = from; i < b.size() && i < from + 32; ++i) s += fmt::format("{:02x} ", b[i]);
  return s;
}

std::string shown(const term& t) {
  std::string s = to_string(t);
  return s.size() > 400 ? s.substr(0, 400) + "..." : s;
}

// libei writes integers of 2^27..2^31 in magnitude as SMALL_BIG_EXT (its ERL_MAX is 2^27-1, encode_longlong.c)
// where the BEAM and we write INTEGER_EXT; bytes can only be compared for terms without such integers.
bool ei_writes_like_beam(const term& t) {
  switch (t.type()) {
    case term_type::integer: {
      std::int64_t v = t.small();
      return !((v >= (std::int64_t{1} << 27) && v < (std::int64_t{1} << 31)) ||
               (v < -(std::int64_t{1} << 27) && v >= -(std::int64_t{1} << 31)));
    }
    case term_type::tuple:
      for (const term& e : t.elements())
        if (!ei_writes_like_beam(e)) return false;
      return true;
    case term_type::list: {
      std::vector<term> elems;
      term tail;
      t.list_to_vector(elems, &tail);
      for (const term& e : elems)
        if (!ei_writes_like_beam(e)) return false;
      return ei_writes_like_beam(tail);
    }
    case term_type::map:
      for (std::size_t i = 0; i < t.map_size(); ++i)
        if (!ei_writes_like_beam(t.map_keys()[i]) || !ei_writes_like_beam(t.map_values()[i])) return false;
      return true;
    case term_type::fun:
      for (const term& e : t.as_fun().free_vars)
        if (!ei_writes_like_beam(e)) return false;
      return ei_writes_like_beam(t.as_fun().old_uniq) && ei_writes_like_beam(t.as_fun().old_index);
    default:
      return true;
  }
}

// One term through all three checks; returns a description of the first disagreement, or "".
std::string check(const term& t) {
  std::vector<std::uint8_t> ours = encode(t, {.utf8_atoms = true});
  int idx = 0, version = 0;
  if (ei_decode_version(reinterpret_cast<const char*>(ours.data()), &idx, &version) < 0 || version != 131)
    return "ei_decode_version rejects our encoding";
  term back = from_ei(reinterpret_cast<const char*>(ours.data()), idx);
  if (static_cast<std::size_t>(idx) != ours.size()) return "libei's walk of our encoding stops at byte " + std::to_string(idx);
  if (!(back == t)) return "libei decodes our encoding as " + shown(back);
  std::vector<std::uint8_t> latin1 = encode(t);
  idx = 1;
  if (!(from_ei(reinterpret_cast<const char*>(latin1.data()), idx) == t))
    return "libei decodes our default (ATOM_EXT) encoding differently";

  ei_x_buff x;
  ei_x_new_with_version(&x);
  to_ei(t, &x);
  std::span<const std::uint8_t> theirs(reinterpret_cast<const std::uint8_t*>(x.buff), static_cast<std::size_t>(x.index));
  std::vector<std::uint8_t> theirs_copy(theirs.begin(), theirs.end());
  ei_x_free(&x);
  decode_result r = decode(theirs_copy);
  if (!r) return "we cannot decode libei's encoding: " + r.ec.message() + " at byte " + std::to_string(r.offset);
  if (!(r.value == t)) return "we decode libei's encoding as " + shown(r.value);
  if (theirs_copy != ours && ei_writes_like_beam(t)) {
    std::size_t i = 0;
    while (i < ours.size() && i < theirs_copy.size() && ours[i] == theirs_copy[i]) ++i;
    return fmt::format("bytes differ at offset {} (sizes {}/{}): libei {}, ours {}", i, theirs_copy.size(),
                       ours.size(), hex(theirs_copy, i), hex(ours, i));
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : std::random_device{}();
  long count = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 20000;
  std::printf("etf_ei_check: seed %llu (repeat with: etf_ei_check %llu %ld)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), count);
  ei_init();
  std::vector<term> corpus = ei_corpus(seed, count);
  int failures = 0;
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    std::string why;
    try {
      why = check(corpus[i]);
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (why.empty()) continue;
    if (++failures <= 10) std::printf("FAIL term #%zu: %s\n  term: %s\n", i, why.c_str(), shown(corpus[i]).c_str());
  }
  std::printf("etf_ei_check: %zu terms, %d failures\n", corpus.size(), failures);
  return failures ? 1 : 0;
}
