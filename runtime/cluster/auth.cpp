#include "runtime/cluster/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace troupe::cluster {

namespace {

std::string hex(const unsigned char* data, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string result;
  result.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    result += digits[data[i] >> 4];
    result += digits[data[i] & 0x0f];
  }
  return result;
}

} // namespace

std::string make_nonce() {
  unsigned char buf[16];
  if (RAND_bytes(buf, sizeof(buf)) != 1)
    return {}; // an empty nonce never verifies
  return hex(buf, sizeof(buf));
}

std::string make_proof(const std::string& secret, const std::string& cluster,
                       const std::string& name, const std::string& nonce) {
  auto data = cluster + "|" + name + "|" + nonce;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    return {};
  return hex(out, len);
}

std::string client_token(const std::string& secret, const std::string& cluster,
                         const std::string& user) {
  return make_proof(secret, cluster, "client", user);
}

bool same_proof(const std::string& x, const std::string& y) {
  return !x.empty() && x.size() == y.size() && CRYPTO_memcmp(x.data(), y.data(), x.size()) == 0;
}

} // namespace troupe::cluster
