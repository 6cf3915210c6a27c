# The `echo` domain's library, included by the top-level CMakeLists.txt
# (paths from the repository root). It adds itself to the domains this
# build runs; actors/domains.cpp registers it.
troupe_add_component(NAME actors_echo
  SOURCES actors/echo/echo.cpp actors/echo/domain.cpp
  DEPS runtime_domain)
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_echo)
