# The `model-monitor` domain's library, included by the top-level
# CMakeLists.txt (paths from the repository root). It adds itself to the
# domains this build runs; actors/domains.cpp registers it.
troupe_add_component(NAME actors_model_monitor
  SOURCES actors/model_monitor/quality.cpp actors/model_monitor/monitor.cpp
          actors/model_monitor/domain.cpp
  DEPS actors_fraud_detector runtime_domain runtime_kafka runtime_core nlohmann_json::nlohmann_json
  TESTS tests/actors/model_monitor/quality_test.cpp)
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_model_monitor)
target_compile_definitions(actors_model_monitor_test PRIVATE
                           TROUPE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
