# The `ranker` domain's library, included by the top-level CMakeLists.txt
# (paths from the repository root). It adds itself to the domains this
# build runs; actors/domains.cpp registers it.
troupe_add_component(NAME actors_ranker
  SOURCES actors/ranker/ranking.cpp actors/ranker/ranker.cpp actors/ranker/domain.cpp
  DEPS actors_news runtime_domain runtime_redis runtime_core
  TESTS tests/actors/ranker/ranking_test.cpp)
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_ranker)
