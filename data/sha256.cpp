// SHA-256 through OpenSSL's EVP interface (see sha256.h).
#include "data/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "src/core/error.h"

namespace ng {
namespace {

std::string to_hex(const unsigned char* digest, unsigned int size) {
  static const char* hex = "0123456789abcdef";
  std::string out(2 * size, '0');
  for (unsigned int k = 0; k < size; ++k) {
    out[2 * k] = hex[digest[k] >> 4];
    out[2 * k + 1] = hex[digest[k] & 0xf];
  }
  return out;
}

}  // namespace

std::string sha256_hex(const void* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, size, digest, &len, EVP_sha256(), nullptr) != 1)
    fail("internal: OpenSSL's SHA-256 failed on {} bytes", size);
  return to_hex(digest, len);
}

std::string file_sha256(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail("{}: cannot open to compute its SHA-256 ({})", path, std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    fail("internal: OpenSSL's SHA-256 could not start for {}", path);
  // Chunks keep a multi-gigabyte checkpoint out of memory.
  std::vector<unsigned char> chunk(1 << 20);
  size_t got = 0;
  while ((got = std::fread(chunk.data(), 1, chunk.size(), f.get())) > 0)
    if (EVP_DigestUpdate(ctx.get(), chunk.data(), got) != 1)
      fail("internal: OpenSSL's SHA-256 failed on {}", path);
  // A directory opens on Linux and fails only here, with EISDIR.
  if (std::ferror(f.get()))
    fail("{}: cannot read to compute its SHA-256 ({})", path, std::strerror(errno));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1)
    fail("internal: OpenSSL's SHA-256 failed on {}", path);
  return to_hex(digest, len);
}

}  // namespace ng
