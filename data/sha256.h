// SHA-256 (FIPS 180-4), enough to check a SHA256SUMS file without a crypto dependency.
#pragma once

#include <cstddef>
#include <string>

namespace ng {

// Lower-case hex digest of `size` bytes.
std::string sha256_hex(const void* data, size_t size);

}  // namespace ng
