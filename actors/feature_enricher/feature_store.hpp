#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/messages.hpp"
#include "runtime/redis/connection.hpp"

namespace troupe::enrich {

/// The categories the model knows, by code (`category` feature; the same
/// list as CATEGORIES in scripts/fraud/fraud_data.py).
const std::vector<std::string>& categories();

/// The per-user online features in Redis (features.lua): computed and
/// updated atomically per transaction, one pipelined round trip per batch.
///
/// Blocking (hiredis): owned by a detached worker, never used on a CAF
/// scheduler thread. Built by `make()`, which connects and loads the script.
class feature_store {
public:
  static caf::expected<std::unique_ptr<feature_store>>
  make(const std::string& url, caf::timespan timeout,
       caf::timespan ttl = std::chrono::hours{24 * 30});

  /// The feature vector of each transaction, in `batch` order. A replayed
  /// transaction gets the features of its first pass and changes nothing.
  /// Fails when Redis cannot be reached (the connection is then dead).
  caf::expected<std::vector<std::vector<float>>> features(const std::vector<transaction>& batch);

  /// The vector used while Redis is unreachable: the features that need no
  /// history (amount, hour, category) and neutral values for the rest (no
  /// recent transactions, z-score 0, a week since the last one, nothing new,
  /// no history).
  static std::vector<float> degraded(const transaction& tx);

  bool alive() const {
    return conn_->alive();
  }

  /// How long a batch of `n` transactions may take in Redis: 1 s, plus 2 ms
  /// per transaction (the script runs once per transaction). A slow reply
  /// under load is not an outage; a frozen Redis is found within it.
  static caf::timespan batch_timeout(size_t n);

private:
  feature_store(std::unique_ptr<redis::connection> conn, std::string sha, int64_t ttl_seconds);

  caf::error load_script();

  std::unique_ptr<redis::connection> conn_;
  std::string sha_;
  int64_t ttl_seconds_;
};

} // namespace troupe::enrich
