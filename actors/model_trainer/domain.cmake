# The `model-trainer` domain's library, included by the top-level
# CMakeLists.txt (paths from the repository root). It adds itself to the
# domains this build runs; actors/domains.cpp registers it.
troupe_add_component(NAME actors_model_trainer
  SOURCES actors/model_trainer/training.cpp actors/model_trainer/trainer.cpp
          actors/model_trainer/domain.cpp
  DEPS actors_fraud_detector runtime_domain runtime_kafka runtime_core xgboost::xgboost
       OpenSSL::Crypto nlohmann_json::nlohmann_json
  TESTS tests/actors/model_trainer/training_test.cpp)
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_model_trainer)
