#include "runtime/cluster/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"

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

const char* b64_digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 7515 section 2).
std::string b64url(const std::string& in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<unsigned char>(in[k]); };
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += b64_digits[(v >> 18) & 63];
    out += b64_digits[(v >> 12) & 63];
    out += b64_digits[(v >> 6) & 63];
    out += b64_digits[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = byte(i) << 16;
    out += b64_digits[(v >> 18) & 63];
    out += b64_digits[(v >> 12) & 63];
  } else if (i + 2 == in.size()) {
    uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8);
    out += b64_digits[(v >> 18) & 63];
    out += b64_digits[(v >> 12) & 63];
    out += b64_digits[(v >> 6) & 63];
  }
  return out;
}

/// Decodes base64url without padding; false on any other character or a
/// length no encoder makes.
bool b64url_decode(const std::string& in, std::string& out) {
  if (in.size() % 4 == 1)
    return false;
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    auto p = std::strchr(b64_digits, ch);
    if (ch == 0 || p == nullptr)
      return false;
    acc = (acc << 6) | static_cast<uint32_t>(p - b64_digits);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return true;
}

std::string hmac_sha256(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    return {};
  return std::string(reinterpret_cast<char*>(out), len);
}

/// Hex HMAC-SHA256 (empty if OpenSSL fails: an empty proof never verifies).
std::string hmac_hex(const std::string& key, const std::string& data) {
  auto raw = hmac_sha256(key, data);
  return hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

caf::error refused(const std::string& why) {
  return caf::make_error(ec::not_authenticated, "client token refused: " + why);
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
  return hmac_hex(secret, cluster + "|" + name + "|" + nonce);
}

std::string sign_client_token(const std::string& key, const client_claims& c) {
  nlohmann::json payload{{"iss", c.issuer}, {"sub", c.user},          {"role", c.role},
                         {"iat", c.issued_at}, {"exp", c.expires_at}};
  auto signed_part = b64url(R"({"alg":"HS256","typ":"JWT"})") + "." + b64url(payload.dump());
  return signed_part + "." + b64url(hmac_sha256(key, signed_part));
}

caf::expected<client_claims> verify_client_token(const std::string& key,
                                                 const std::string& cluster,
                                                 const std::string& token, int64_t now_s) {
  if (token.empty())
    return refused("no token");
  if (token.size() > 4096)
    return refused("longer than 4096 bytes");
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string::npos || token.find('.', dot2 + 1) != std::string::npos)
    return refused("not a JSON Web Token (header.payload.signature)");
  std::string header;
  std::string payload;
  std::string signature;
  if (!b64url_decode(token.substr(0, dot1), header)
      || !b64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload)
      || !b64url_decode(token.substr(dot2 + 1), signature))
    return refused("not base64url");
  auto h = nlohmann::json::parse(header, nullptr, false);
  if (!h.is_object() || !h.contains("alg") || h["alg"] != "HS256")
    return refused("only alg HS256 is accepted");
  auto expected = hmac_sha256(key, token.substr(0, dot2));
  if (expected.empty() || signature.size() != expected.size()
      || CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0)
    return refused("bad signature");
  auto p = nlohmann::json::parse(payload, nullptr, false);
  if (!p.is_object())
    return refused("the payload is not a JSON object");
  auto text = [&](const char* k) {
    auto i = p.find(k);
    return i != p.end() && i->is_string() ? i->get<std::string>() : std::string{};
  };
  auto number = [&](const char* k, int64_t& out) {
    auto i = p.find(k);
    if (i == p.end() || !i->is_number_integer())
      return false;
    out = i->get<int64_t>();
    return true;
  };
  client_claims c;
  c.issuer = text("iss");
  c.user = text("sub");
  c.role = text("role");
  if (!number("exp", c.expires_at))
    return refused("no expiry (exp)");
  if (!number("iat", c.issued_at))
    return refused("no issue time (iat)");
  if (c.issuer != cluster)
    return refused("issued for another cluster ('" + c.issuer.substr(0, 64) + "')");
  if (c.user.empty() || c.user.size() > 128)
    return refused("the user (sub) has 1 to 128 bytes");
  if (c.role != "user" && c.role != "operator")
    return refused("the role is user or operator");
  if (c.expires_at <= now_s)
    return refused("expired");
  if (c.expires_at - c.issued_at > max_client_token_ttl_s)
    return refused("valid for longer than 30 days");
  return c;
}

caf::expected<std::string> load_client_token_key(const std::string& path, bool create) {
  auto read = [&]() -> caf::expected<std::string> {
    std::ifstream in{path};
    if (!in)
      return caf::make_error(ec::invalid_argument,
                             "cannot read the client token key file '" + path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    auto key = ss.str();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r'))
      key.pop_back();
    if (key.size() < 32)
      return caf::make_error(ec::invalid_argument, "the client token key in '" + path
                                                     + "' is shorter than 32 bytes");
    return key;
  };
  if (!create || ::access(path.c_str(), F_OK) == 0)
    return read();
  std::error_code made;
  auto parent = std::filesystem::path{path}.parent_path();
  if (!parent.empty())
    std::filesystem::create_directories(parent, made);
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1)
    return caf::make_error(ec::io_failure, std::string{"no randomness for a client token key"});
  auto key = hex(raw, sizeof(raw)) + "\n";
  // Written under a name of its own, then linked into place: a process
  // starting beside this one reads either no file or the whole key, and
  // link() keeps the first key when two race.
  auto tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return caf::make_error(ec::io_failure, "cannot create '" + tmp + "': " + std::strerror(errno));
  auto written = ::write(fd, key.data(), key.size());
  ::fsync(fd);
  ::close(fd);
  if (written != static_cast<ssize_t>(key.size())) {
    ::unlink(tmp.c_str());
    return caf::make_error(ec::io_failure, "cannot write '" + tmp + "'");
  }
  if (::link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
    auto why = std::string{std::strerror(errno)};
    ::unlink(tmp.c_str());
    return caf::make_error(ec::io_failure, "cannot create '" + path + "': " + why);
  }
  ::unlink(tmp.c_str());
  return read();
}

std::string make_mutual_proof(const std::string& secret, const std::string& cluster,
                              const std::string& role, const std::string& prover,
                              const std::string& verifier, const std::string& challenge,
                              const std::string& own_nonce) {
  return hmac_hex(secret, "troupe operator handshake|" + role + "|" + cluster + "|" + prover
                            + "|" + verifier + "|" + challenge + "|" + own_nonce);
}

bool same_proof(const std::string& x, const std::string& y) {
  return !x.empty() && x.size() == y.size() && CRYPTO_memcmp(x.data(), y.data(), x.size()) == 0;
}

} // namespace troupe::cluster
