# The `websocket-broadcaster` domain's library, included by the top-level CMakeLists.txt
# (paths from the repository root). It adds itself to the domains this
# build runs; actors/domains.cpp registers it.
# The live page is plain HTML in its own file, embedded into the library.
file(READ ${PROJECT_SOURCE_DIR}/actors/websocket_broadcaster/page.html PAGE_HTML)
configure_file(actors/websocket_broadcaster/page_html.hpp.in
               ${PROJECT_BINARY_DIR}/generated/actors/websocket_broadcaster/page_html.hpp @ONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/actors/websocket_broadcaster/page.html)
troupe_add_component(NAME actors_websocket_broadcaster
  SOURCES actors/websocket_broadcaster/gateway.cpp actors/websocket_broadcaster/broadcaster.cpp
          actors/websocket_broadcaster/news_service.cpp actors/websocket_broadcaster/domain.cpp
          actors/websocket_broadcaster/console.cpp
  DEPS actors_news runtime_http runtime_domain runtime_kafka runtime_cluster runtime_core
       nlohmann_json::nlohmann_json)
target_include_directories(actors_websocket_broadcaster PUBLIC ${PROJECT_BINARY_DIR}/generated)
list(APPEND TROUPE_DOMAIN_LIBRARIES actors_websocket_broadcaster)
