#include "runtime/kafka/embedded_kafka.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "runtime/core/error.hpp"

namespace troupe::kafka {

caf::expected<std::unique_ptr<embedded_kafka>>
embedded_kafka::make(int brokers, const std::vector<std::pair<std::string, int>>& topics) {
  if (brokers < 1)
    return caf::make_error(ec::invalid_argument, std::string{"at least one broker"});
  std::unique_ptr<embedded_kafka> result{new embedded_kafka};
  char err[512];
  auto conf = rd_kafka_conf_new();
  // The handle only hosts the mock cluster; it never produces, so it has no
  // bootstrap list to warn about: log errors only.
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  result->handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (!result->handle_) {
    rd_kafka_conf_destroy(conf);
    return caf::make_error(ec::invalid_argument, "cannot create a Kafka handle: " + std::string{err});
  }
  result->cluster_ = rd_kafka_mock_cluster_new(result->handle_, brokers);
  if (!result->cluster_)
    return caf::make_error(ec::invalid_argument, std::string{"cannot start the mock Kafka cluster"});
  result->bootstrap_ = rd_kafka_mock_cluster_bootstraps(result->cluster_);
  result->brokers_ = brokers;
  for (auto& [name, partitions] : topics) {
    auto rc = rd_kafka_mock_topic_create(result->cluster_, name.c_str(), partitions, 1);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
      return caf::make_error(ec::invalid_argument,
                             "cannot create topic " + name + ": " + rd_kafka_err2str(rc));
  }
  return result;
}

caf::error embedded_kafka::set_down(bool down) {
  for (int id = 1; id <= brokers_; ++id) {
    auto rc = down ? rd_kafka_mock_broker_set_down(cluster_, id)
                   : rd_kafka_mock_broker_set_up(cluster_, id);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
      return caf::make_error(ec::invalid_argument, "cannot set broker " + std::to_string(id)
                                                     + (down ? " down: " : " up: ")
                                                     + rd_kafka_err2str(rc));
  }
  return {};
}

caf::error embedded_kafka::set_rtt(int ms) {
  for (int id = 1; id <= brokers_; ++id)
    if (auto rc = rd_kafka_mock_broker_set_rtt(cluster_, id, ms); rc != RD_KAFKA_RESP_ERR_NO_ERROR)
      return caf::make_error(ec::invalid_argument, "cannot delay broker " + std::to_string(id)
                                                     + ": " + rd_kafka_err2str(rc));
  return {};
}

embedded_kafka::~embedded_kafka() {
  if (cluster_)
    rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_)
    rd_kafka_destroy(handle_);
}

} // namespace troupe::kafka
