# The `feature-enricher` domain's library, included by the top-level CMakeLists.txt
# (paths from the repository root). It adds itself to the domains this
# build runs; actors/domains.cpp registers it.
# The feature script is Lua in its own file, embedded into the library.
file(READ ${PROJECT_SOURCE_DIR}/actors/feature_enricher/features.lua FEATURES_LUA)
configure_file(actors/feature_enricher/features_lua.hpp.in
               ${PROJECT_BINARY_DIR}/generated/actors/feature_enricher/features_lua.hpp @ONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/actors/feature_enricher/features.lua)
troupe_add_component(NAME actors_feature_enricher
  SOURCES actors/feature_enricher/feature_store.cpp actors/feature_enricher/enricher.cpp
          actors/feature_enricher/domain.cpp
  DEPS runtime_domain runtime_redis runtime_core
  TESTS tests/actors/feature_enricher/feature_store_test.cpp
  TEST_DEPS actors_ingestor nlohmann_json::nlohmann_json)
target_include_directories(actors_feature_enricher PUBLIC ${PROJECT_BINARY_DIR}/generated)
target_compile_definitions(actors_feature_enricher_test PRIVATE
  TROUPE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_feature_enricher)
