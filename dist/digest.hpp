#pragma once
// What the handshake needs of cryptography, without OpenSSL: MD5 (RFC 1321), for the cookie digest (md5(Cookie ++ integer_to_list(Challenge)), dist_util.erl
// gen_digest/2) and nothing else: the challenge-response is what OTP defines, not a use of MD5 for security here.
// a constant-time compare and the kernel's random bytes. Our own, so that a node without TLS never initialises
// OpenSSL's libcrypto (its providers, tables and random generator cost about 2 MB of resident memory on the first
// handshake); the unit test checks md5 against RFC 1321's vectors and OpenSSL's.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cnode::dist {

std::array<std::byte, 16> md5(std::string_view data) noexcept;

// Compares two equally long byte ranges in time that depends on the length only (digest checks).
bool equal_constant_time(const std::byte* a, const std::byte* b, std::size_t n) noexcept;

// n random bytes from the kernel (getrandom(2)); throws std::system_error when the kernel gives none.
void random_bytes(void* out, std::size_t n);

}  // namespace cnode::dist
