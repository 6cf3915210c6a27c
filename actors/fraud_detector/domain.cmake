# The `fraud-detector` domain's library, included by the top-level CMakeLists.txt
# (paths from the repository root). It adds itself to the domains this
# build runs; actors/domains.cpp registers it.
troupe_add_component(NAME actors_fraud_detector
  SOURCES actors/fraud_detector/model.cpp actors/fraud_detector/rollout.cpp
          actors/fraud_detector/detector.cpp
          actors/fraud_detector/domain.cpp
  DEPS runtime_domain runtime_core xgboost::xgboost nlohmann_json::nlohmann_json
  TESTS tests/actors/fraud_detector/model_test.cpp tests/actors/fraud_detector/rollout_test.cpp
  TEST_DEPS nlohmann_json::nlohmann_json)
target_compile_definitions(actors_fraud_detector_test PRIVATE
  TROUPE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_fraud_detector)
