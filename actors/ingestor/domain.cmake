# The `ingestor` domain's library, included by the top-level CMakeLists.txt
# (paths from the repository root). It adds itself to the domains this
# build runs; actors/domains.cpp registers it.
troupe_add_component(NAME actors_ingestor
  SOURCES actors/ingestor/transaction_json.cpp actors/ingestor/ingestor.cpp
          actors/ingestor/domain.cpp
  DEPS runtime_domain runtime_kafka runtime_redis runtime_core nlohmann_json::nlohmann_json
  TESTS tests/actors/ingestor/transaction_json_test.cpp)
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_ingestor)
