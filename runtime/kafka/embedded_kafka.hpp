#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace troupe::kafka {

/// librdkafka's mock cluster: the real Kafka protocol on loopback, for a
/// local cluster without a broker. Owned by the thread that made it; the
/// brokers run on librdkafka's own threads until it is destroyed. Ports are
/// random on every start, nothing persists, and about 5 MiB are kept per
/// partition (see DEPENDENCY-FACTS).
class embedded_kafka {
public:
  /// Starts `brokers` mock brokers and creates `topics` (name, partitions).
  static caf::expected<std::unique_ptr<embedded_kafka>>
  make(int brokers, const std::vector<std::pair<std::string, int>>& topics);

  ~embedded_kafka();

  embedded_kafka(const embedded_kafka&) = delete;
  embedded_kafka& operator=(const embedded_kafka&) = delete;

  /// `127.0.0.1:port,...`, for `bootstrap.servers`.
  const std::string& bootstrap() const {
    return bootstrap_;
  }

  /// Takes every broker down (its connections close, requests to it fail)
  /// or brings them all up again, as a broker outage does; for fault tests
  /// and `troupe kafka`'s `down` / `up` commands.
  caf::error set_down(bool down);

  /// Delays every broker's answers by `ms` (0: none again): a broker that
  /// hangs rather than fails.
  caf::error set_rtt(int ms);

  int brokers() const {
    return brokers_;
  }

private:
  embedded_kafka() = default;

  rd_kafka_s* handle_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  std::string bootstrap_;
  int brokers_ = 0;
};

} // namespace troupe::kafka
