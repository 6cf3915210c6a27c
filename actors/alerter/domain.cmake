# The `alerter` domain's library, included by the top-level CMakeLists.txt
# (paths from the repository root). It adds itself to the domains this
# build runs; actors/domains.cpp registers it.
troupe_add_component(NAME actors_alerter
  SOURCES actors/alerter/alerter.cpp actors/alerter/domain.cpp
  DEPS runtime_domain runtime_kafka runtime_redis runtime_core nlohmann_json::nlohmann_json
  TESTS tests/actors/alerter/claim_test.cpp tests/actors/alerter/record_json_test.cpp)
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_alerter)
