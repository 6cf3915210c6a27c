#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>

namespace troupe::cluster {

/// A fresh random challenge (128 bits, hex).
std::string make_nonce();

/// The proof a node named `name` gives for `nonce`: hex HMAC-SHA256 keyed by
/// the cluster secret over `cluster|name|nonce`.
std::string make_proof(const std::string& secret, const std::string& cluster,
                       const std::string& name, const std::string& nonce);

/// What a WebSocket client's token says (`troupe token USER`): a JSON Web
/// Token (RFC 7519) signed with HMAC-SHA256 (`alg` `HS256`) by the
/// cluster's client token key, which is not the cluster secret.
struct client_claims {
  /// `iss`: the cluster's name.
  std::string issuer;
  /// `sub`: the user (1 to 128 bytes).
  std::string user;
  /// `role`: `user`, or `operator` (every feed, every alert).
  std::string role = "user";
  /// `iat` and `exp`, seconds since the epoch.
  int64_t issued_at = 0;
  int64_t expires_at = 0;
};

/// The longest lifetime a client token may have (30 days).
constexpr int64_t max_client_token_ttl_s = 30LL * 24 * 3600;

/// Signs `claims` with `key`.
std::string sign_client_token(const std::string& key, const client_claims& claims);

/// Checks a token: its form, `alg` (`HS256` only), its signature by `key`,
/// its issuer (`cluster`), its role and that it has not expired at `now_s`.
/// Fails with `not_authenticated` and the reason ("bad signature", "expired",
/// ...).
caf::expected<client_claims> verify_client_token(const std::string& key,
                                                 const std::string& cluster,
                                                 const std::string& token, int64_t now_s);

/// The client token key in `path`. When `create` is set and the file does
/// not exist, a random 256-bit key is written there first (owner-only, made
/// atomically, so that processes starting together agree on one key). A key
/// has at least 32 bytes.
caf::expected<std::string> load_client_token_key(const std::string& path, bool create);

/// The operator handshake's proofs (`troupe shell` and a node agent), each
/// binding both names and both nonces: `role` is `node` (the node proves
/// itself to the shell first) or `operator`; `prover` and `verifier` are the
/// two names; `challenge` the verifier's nonce and `own_nonce` the
/// prover's. Hex HMAC-SHA256 keyed by the cluster secret, so a proof made for
/// one node, one shell or one session is worth nothing for another.
std::string make_mutual_proof(const std::string& secret, const std::string& cluster,
                              const std::string& role, const std::string& prover,
                              const std::string& verifier, const std::string& challenge,
                              const std::string& own_nonce);

/// Compares two proofs in constant time.
bool same_proof(const std::string& x, const std::string& y);

} // namespace troupe::cluster
