// The node agent: one actor, two halves (agent_state.hpp): membership and
// authentication, and the operator control plane.
#include "runtime/cluster/node_agent.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>

#include "runtime/cluster/agent_state.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/types.hpp"

namespace troupe::cluster {

namespace {

caf::behavior agent_impl(agent_actor* self, topology::topology topo, std::string me,
                         std::shared_ptr<group_directory> directory, log_fn log,
                         caf::io::middleman_actor transport, std::function<node_info()> describe_node,
                         std::function<void()> on_halt,
                         std::function<void(audit_entry)> audit,
                         std::shared_ptr<tls_tunnel> tunnel) {
  auto& st = self->state;
  st.self = self;
  st.tunnel = std::move(tunnel);
  st.audit = std::move(audit);
  st.describe_node = std::move(describe_node);
  st.on_halt = std::move(on_halt);
  st.directory = std::move(directory);
  st.topo = std::move(topo);
  st.me = std::move(me);
  st.log = std::move(log);
  st.mm = transport ? transport : self->system().middleman().actor_handle();
  for (auto& n : st.topo.nodes) {
    if (n.name == st.me)
      continue;
    auto& p = st.peers[n.name];
    p.spec = n;
    p.dial_host = n.host;
    p.dial_port = n.cluster_port;
  }
  self->set_down_handler([self](caf::down_msg& msg) { self->state.on_down(msg); });
  self->send(self, tick_atom::value);
  // Membership first: most messages are peers' and the agent's own.
  return membership_handlers(self).or_else(operator_handlers(self));
}

} // namespace

caf::expected<caf::actor> spawn_node_agent(caf::actor_system& sys, topology::topology topo,
                                           std::string self_name,
                                           std::shared_ptr<group_directory> directory,
                                           log_fn log, caf::io::middleman_actor transport,
                                           std::function<node_info()> describe_node,
                                           std::function<void()> on_halt,
                                           std::function<void(audit_entry)> audit,
                                           std::shared_ptr<tls_tunnel> tunnel) {
  if (!topo.node(self_name))
    return caf::make_error(ec::invalid_argument,
                           "node '" + self_name + "' is not in " + topo.source);
  return sys.spawn(agent_impl, std::move(topo), std::move(self_name), std::move(directory),
                   std::move(log), std::move(transport), std::move(describe_node),
                   std::move(on_halt), std::move(audit), std::move(tunnel));
}

void configure_system(caf::actor_system_config& cfg, const topology::cluster_settings& c,
                      const topology::node_spec& node) {
  if (node.threads > 0)
    configure_scheduler(cfg, node.threads);
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", c.heartbeat_interval);
  // The agent declares a silent peer down after `failure_timeout` unless
  // another member still hears it (`agent_state::watch_links`); CAF's own
  // timeout is the bound for a link others keep vouching for.
  cfg.set("middleman.connection-timeout", c.failure_timeout * link_silence_bound);
}

} // namespace troupe::cluster

