#include "dist/flags.hpp"

#include <fmt/format.h>

namespace cnode::dist {

std::string flag_name(dflags f) {
  switch (f) {
    case dflag::published: return "PUBLISHED";
    case dflag::atom_cache: return "ATOM_CACHE";
    case dflag::extended_references: return "EXTENDED_REFERENCES";
    case dflag::dist_monitor: return "DIST_MONITOR";
    case dflag::fun_tags: return "FUN_TAGS";
    case dflag::dist_monitor_name: return "DIST_MONITOR_NAME";
    case dflag::hidden_atom_cache: return "HIDDEN_ATOM_CACHE";
    case dflag::new_fun_tags: return "NEW_FUN_TAGS";
    case dflag::extended_pids_ports: return "EXTENDED_PIDS_PORTS";
    case dflag::export_ptr_tag: return "EXPORT_PTR_TAG";
    case dflag::bit_binaries: return "BIT_BINARIES";
    case dflag::new_floats: return "NEW_FLOATS";
    case dflag::unicode_io: return "UNICODE_IO";
    case dflag::dist_hdr_atom_cache: return "DIST_HDR_ATOM_CACHE";
    case dflag::small_atom_tags: return "SMALL_ATOM_TAGS";
    case dflag::utf8_atoms: return "UTF8_ATOMS";
    case dflag::map_tag: return "MAP_TAG";
    case dflag::big_creation: return "BIG_CREATION";
    case dflag::send_sender: return "SEND_SENDER";
    case dflag::big_seqtrace_labels: return "BIG_SEQTRACE_LABELS";
    case dflag::exit_payload: return "EXIT_PAYLOAD";
    case dflag::fragments: return "FRAGMENTS";
    case dflag::handshake_23: return "HANDSHAKE_23";
    case dflag::unlink_id: return "UNLINK_ID";
    case dflag::mandatory_25_digest: return "MANDATORY_25_DIGEST";
    case dflag::spawn: return "SPAWN";
    case dflag::name_me: return "NAME_ME";
    case dflag::v4_nc: return "V4_NC";
    case dflag::alias: return "ALIAS";
    default: return fmt::format("UNKNOWN<{:X}>", f);
  }
}

std::vector<std::string> missing_flags(dflags peer, dflags required) {
  std::vector<std::string> names;
  for (int bit = 63; bit >= 0; --bit) {
    const dflags f = dflags{1} << bit;
    if ((required & f) != 0 && (peer & f) == 0) names.push_back(flag_name(f));
  }
  return names;
}

std::string format_flag_list(const std::vector<std::string>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i != 0) out += ',';
    out += '"';
    out += names[i];
    out += '"';
  }
  out += ']';
  return out;
}

std::string describe_flags(dflags f) {
  std::string out;
  for (int bit = 0; bit < 64; ++bit) {
    const dflags one = dflags{1} << bit;
    if ((f & one) == 0) continue;
    if (!out.empty()) out += '|';
    out += flag_name(one);
  }
  return out.empty() ? "0" : out;
}

}  // namespace cnode::dist
