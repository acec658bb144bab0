#pragma once
// Distribution capability flags (DFLAG_*), exchanged in the handshake. Values: kernel/include/dist.hrl (OTP 25).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cnode::dist {

using dflags = std::uint64_t;

namespace dflag {
inline constexpr dflags published = 0x1;
inline constexpr dflags atom_cache = 0x2;
inline constexpr dflags extended_references = 0x4;
inline constexpr dflags dist_monitor = 0x8;
inline constexpr dflags fun_tags = 0x10;
inline constexpr dflags dist_monitor_name = 0x20;
inline constexpr dflags hidden_atom_cache = 0x40;
inline constexpr dflags new_fun_tags = 0x80;
inline constexpr dflags extended_pids_ports = 0x100;
inline constexpr dflags export_ptr_tag = 0x200;
inline constexpr dflags bit_binaries = 0x400;
inline constexpr dflags new_floats = 0x800;
inline constexpr dflags unicode_io = 0x1000;
inline constexpr dflags dist_hdr_atom_cache = 0x2000;
inline constexpr dflags small_atom_tags = 0x4000;
inline constexpr dflags utf8_atoms = 0x10000;
inline constexpr dflags map_tag = 0x20000;
inline constexpr dflags big_creation = 0x40000;
inline constexpr dflags send_sender = 0x80000;
inline constexpr dflags big_seqtrace_labels = 0x100000;
inline constexpr dflags exit_payload = 0x400000;
inline constexpr dflags fragments = 0x800000;
inline constexpr dflags handshake_23 = 0x1000000;
inline constexpr dflags unlink_id = 0x2000000;
// Stands for all of mandatory_25 (dist_util.erl:247). The OTP 25 docs say bit 36: wrong, that is OTP 26's
// internal DFLAG_LOCAL_EXT. Never set bit 36.
inline constexpr dflags mandatory_25_digest = 0x4000000;
inline constexpr dflags spawn = dflags{1} << 32;
inline constexpr dflags name_me = dflags{1} << 33;
inline constexpr dflags v4_nc = dflags{1} << 34;
inline constexpr dflags alias = dflags{1} << 35;
}  // namespace dflag

// What an OTP 25 node refuses to talk without (erts_internal:get_dflags() mandatory = 0x1070f94).
inline constexpr dflags mandatory_25 =
    dflag::extended_references | dflag::fun_tags | dflag::new_fun_tags | dflag::extended_pids_ports |
    dflag::export_ptr_tag | dflag::bit_binaries | dflag::new_floats | dflag::utf8_atoms | dflag::map_tag |
    dflag::big_creation | dflag::handshake_23;
static_assert(mandatory_25 == 0x1070f94);

// Our advertised set: the mandatory bits spelled out (the peer intersects bit by bit) plus the digest, and what
// the upper layers implement. FRAGMENTS: every packet carries a distribution header (131,68 / 69 / 70;
// dist/fragment.hpp). Not yet DIST_HDR_ATOM_CACHE: we would read it, but do not yet write cache references.
inline constexpr dflags default_hidden_flags =
    mandatory_25 | dflag::mandatory_25_digest | dflag::v4_nc | dflag::unlink_id | dflag::dist_monitor | dflag::fragments |
    dflag::dist_monitor_name | dflag::send_sender | dflag::exit_payload | dflag::spawn | dflag::alias |
    dflag::small_atom_tags | dflag::big_seqtrace_labels;

constexpr dflags default_flags(bool hidden) noexcept {
  return hidden ? default_hidden_flags : default_hidden_flags | dflag::published;
}

// Replaces MANDATORY_25_DIGEST with the flags it stands for (dist_util.erl:247).
constexpr dflags expand_mandatory_25(dflags f) noexcept {
  return (f & dflag::mandatory_25_digest) != 0 ? f | mandatory_25 : f;
}

// A connection is visible ("normal") only when both sides set PUBLISHED (dist_util.erl:877).
constexpr bool is_published(dflags effective) noexcept { return (effective & dflag::published) != 0; }

// The BEAM's name of a single flag ("BIG_CREATION"), or "UNKNOWN<hex>" like dflag2str.
std::string flag_name(dflags single_bit);

// Names of the flags in `required` that `peer` (already expanded) lacks, in the order the BEAM prints them:
// highest bit first (check_mandatory walks from the lowest bit and prepends, dist_util.erl:287).
std::vector<std::string> missing_flags(dflags peer, dflags required = mandatory_25);

// ["BIG_CREATION","UTF8_ATOMS"], as ~p prints a list of strings.
std::string format_flag_list(const std::vector<std::string>& names);

// "PUBLISHED|EXTENDED_REFERENCES|..." for logs.
std::string describe_flags(dflags f);

}  // namespace cnode::dist
