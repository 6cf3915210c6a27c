#include "runtime/node/domain.hpp"

#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"

namespace troupe {

// -- node_service defaults --------------------------------------------------------

http::response node_service::route(const std::string&) const {
  return {0, "", ""};
}

http::ws_handler* node_service::websocket() {
  return nullptr;
}

void node_service::limit(http::server_limits&) const {
  // nop
}

void node_service::health(nlohmann::json&) const {
  // nop
}

void node_service::metrics(troupe::metrics::exposition&) const {
  // nop
}

void node_service::report(nlohmann::json&) const {
  // nop
}

// -- domains ------------------------------------------------------------------------

topology::domain_schemas schemas_of(const domain_list& domains) {
  topology::domain_schemas result;
  for (auto& d : domains)
    result.push_back(d.schema);
  return result;
}

const domain* find_domain(const domain_list& domains, const std::string& name) {
  for (auto& d : domains)
    if (d.schema.name == name)
      return &d;
  return nullptr;
}

caf::expected<group_spec> build_group(const domain_list& domains, const topology::group_decl& decl,
                                      uint32_t instances, const domain_context& ctx) {
  auto dom = find_domain(domains, decl.domain);
  if (!dom)
    return caf::make_error(ec::invalid_argument,
                           "domain " + decl.domain + " is not in this build");
  auto made = dom->make_group(decl, instances, ctx);
  if (!made)
    return made.error();
  auto g = std::move(*made);
  g.instances = instances;
  g.strat = decl.strat;
  g.intensity = decl.intensity;
  g.period = decl.period;
  g.backoff = decl.backoff;
  g.restart_delay = decl.restart_delay;
  g.log = ctx.log.with_group(decl.name);
  if (decl.fallback == "none")
    g.fallback = nullptr;
  if (decl.routing == "key_hash") {
    // Messages carry their key first: a string (a user id) or a number.
    g.route = routing::key_hash;
    g.key = [](const caf::message& m) -> uint64_t {
      // The key is the first element, or the second after a leading atom.
      size_t i = !m.empty() && m.match_element<caf::atom_value>(0) ? 1 : 0;
      if (m.size() <= i)
        return 0;
      if (m.match_element<std::string>(i))
        return std::hash<std::string>{}(m.get_as<std::string>(i));
      if (m.match_element<uint64_t>(i))
        return m.get_as<uint64_t>(i);
      return 0;
    };
  }
  return g;
}

} // namespace troupe
