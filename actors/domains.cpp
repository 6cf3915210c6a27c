#include "actors/domains.hpp"

#include "actors/alerter/alerter.hpp"
#include "actors/echo/echo.hpp"
#include "actors/feature_enricher/enricher.hpp"
#include "actors/fraud_detector/detector.hpp"
#include "actors/ingestor/ingestor.hpp"
#include "actors/model_monitor/monitor.hpp"
#include "actors/model_trainer/trainer.hpp"
#include "actors/ranker/ranker.hpp"
#include "actors/websocket_broadcaster/broadcaster.hpp"

namespace troupe::actors {

const domain_list& domains() {
  static const domain_list result = {
    ingest::domain_entry(),
    enrich::domain_entry(),
    fraud::domain_entry(),
    alert::domain_entry(),
    monitor::domain_entry(),
    trainer::domain_entry(),
    rank::domain_entry(),
    ws::domain_entry(),
    echo::domain_entry(),
  };
  return result;
}

caf::expected<topology::topology> load_topology(const std::string& path) {
  static const auto schemas = schemas_of(domains());
  return topology::load(path, schemas);
}

} // namespace troupe::actors
