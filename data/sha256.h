// SHA-256 digests as lower-case hex, from OpenSSL's libcrypto: of bytes in memory (SHA256SUMS
// checks) and of files (checkpoint identity). The one place the tool computes a digest.
#pragma once

#include <cstddef>
#include <string>

namespace ng {

// Lower-case hex digest of `size` bytes.
std::string sha256_hex(const void* data, size_t size);

// Lower-case hex digest of the file at `path`, read in chunks so that large checkpoints need no
// copy in memory. ng::Error naming the file when it cannot be opened or read.
std::string file_sha256(const std::string& path);

}  // namespace ng
