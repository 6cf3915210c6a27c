#pragma once

#include <string>

namespace troupe::cluster {

/// A fresh random challenge (128 bits, hex).
std::string make_nonce();

/// The proof a node named `name` gives for `nonce`: hex HMAC-SHA256 keyed by
/// the cluster secret over `cluster|name|nonce`.
std::string make_proof(const std::string& secret, const std::string& cluster,
                       const std::string& name, const std::string& nonce);

/// The token a WebSocket client presents for `user`: hex HMAC-SHA256 keyed
/// by the cluster secret over `cluster|client|user` (`troupe token USER`).
std::string client_token(const std::string& secret, const std::string& cluster,
                         const std::string& user);

/// Compares two proofs in constant time.
bool same_proof(const std::string& x, const std::string& y);

} // namespace troupe::cluster
