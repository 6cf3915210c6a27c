// `troupe shell`'s way into the cluster: dial, authenticate, ask.
#include "runtime/cli/shell_link.hpp"

#include <algorithm>

#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "runtime/cluster/auth.hpp"
#include "runtime/cluster/secure_transport.hpp"
#include "runtime/core/log.hpp"

namespace troupe::cli {

cluster_link::cluster_link(caf::actor_system& sys, topology::topology topo, std::string entry,
                           caf::timespan timeout)
  : sys_(sys), self_(sys), topo_(std::move(topo)), entry_(std::move(entry)), timeout_(timeout) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  me_ = "shell/" + std::string{host} + ":" + std::to_string(getpid());
}

cluster_link::~cluster_link() {
  // Ends the transport now: a dial still waiting for a node that does not
  // answer would otherwise keep it, and the shell's exit, until its
  // handshake timeout.
  if (transport_)
    self_->send_exit(transport_, caf::exit_reason::user_shutdown);
}

bool cluster_link::join(std::string& why) {
  for (auto& n : ordered_nodes())
    if (auto a = agent_of(n))
      return true;
    else
      why += (why.empty() ? "" : "; ") + n + ": " + links_[n].error;
  return false;
}

std::vector<std::string> cluster_link::ordered_nodes() const {
  std::vector<std::string> result;
  for (auto& n : topo_.nodes)
    if (entry_ == n.name || entry_ == n.host + ":" + std::to_string(n.cluster_port))
      result.push_back(n.name);
  for (auto& n : topo_.nodes)
    if (std::find(result.begin(), result.end(), n.name) == result.end())
      result.push_back(n.name);
  return result;
}

caf::expected<caf::io::middleman_actor> cluster_link::transport() {
  if (!transport_) {
    // Refusals (a certificate the nodes do not accept) go to stderr.
    auto log = log_fn{logger::make(me_, log_level::warning, log_format::text, stderr)};
    // An operator presents the operator's certificate, when the topology
    // names one, and pins each node's identity as nodes do.
    auto keys = topo_.cluster;
    if (keys.tls) {
      if (keys.tls->per_node() && keys.tls->operator_certificate.empty())
        return caf::make_error(ec::invalid_argument,
                               "[cluster.tls] names a certificate per node ({node}): the shell "
                               "needs operator_certificate and operator_key");
      keys.tls = keys.tls->for_operator();
    }
    auto t = cluster::tls_tunnel::make(keys, timeout_, log,
                                       cluster::tls_tunnel::names_of(topo_.nodes));
    if (!t)
      return t.error();
    tunnel_ = std::move(*t);
    transport_ = cluster::spawn_secure_middleman(sys_, tunnel_, log);
  }
  return transport_;
}

caf::expected<caf::actor> cluster_link::agent_of(const std::string& name) {
  auto& l = links_[name];
  if (l.agent)
    return l.agent;
  auto spec = topo_.node(name);
  if (!spec) {
    l.error = "not a node of " + topo_.source;
    return caf::make_error(ec::invalid_argument, l.error);
  }
  caf::actor agent;
  std::string why;
  auto host = spec->host;
  auto port = spec->cluster_port;
  auto mm = transport();
  if (!mm) {
    l.error = render(mm.error());
    return mm.error();
  }
  self_->request(*mm, timeout_, caf::connect_atom::value, host, port)
    .receive(
      [&](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
        if (ptr)
          agent = caf::actor_cast<caf::actor>(ptr);
        else
          why = "no agent published";
      },
      [&](caf::error& e) { why = render(e); });
  if (agent) {
    // Mutual: the node proves the secret first, for this shell's nonce and
    // its own name; only then does the shell prove it back.
    auto mine = cluster::make_nonce();
    auto hello = ask<std::vector<std::string>>(agent, hello_atom::value, me_,
                                               topo_.cluster.name, mine);
    if (!hello) {
      why = "hello: " + render(hello.error());
    } else if (hello->size() != 3 || (*hello)[1] != name
               || !cluster::same_proof((*hello)[2], cluster::make_mutual_proof(
                                                      topo_.cluster.secret, topo_.cluster.name,
                                                      "node", name, me_, mine, (*hello)[0]))) {
      why = "the node did not prove the cluster secret as " + name;
    } else {
      auto proof = cluster::make_mutual_proof(topo_.cluster.secret, topo_.cluster.name,
                                              "operator", me_, name, (*hello)[0], mine);
      if (auto err = ask_void(agent, auth_atom::value, me_, proof))
        why = "auth: " + render(err);
    }
  }
  if (!why.empty()) {
    l.error = spec->host + ":" + std::to_string(spec->cluster_port) + " " + why;
    return caf::make_error(ec::not_authenticated, l.error);
  }
  l.agent = agent;
  l.error.clear();
  return agent;
}

void cluster_link::lost(const std::string& name, const caf::error& err) {
  links_[name].agent = nullptr;
  links_[name].error = render(err);
}

std::map<std::string, node_info>
cluster_link::describe_all(std::map<std::string, std::string>& down) {
  std::map<std::string, node_info> result;
  for (auto& name : ordered_nodes()) {
    auto agent = agent_of(name);
    if (!agent) {
      down[name] = links_[name].error;
      continue;
    }
    auto info = ask<node_info>(*agent, node_info_atom::value);
    if (!info) {
      lost(name, info.error());
      // Once more, on a fresh connection: the last one may have died
      // with its node while the shell waited for input.
      agent = agent_of(name);
      if (agent)
        info = ask<node_info>(*agent, node_info_atom::value);
      if (!agent || !info) {
        down[name] = agent ? render(info.error()) : links_[name].error;
        continue;
      }
    }
    result[name] = std::move(*info);
  }
  return result;
}

std::pair<std::map<std::string, node_info>, std::map<std::string, std::string>>
cluster_link::reach() {
  std::map<std::string, std::string> down;
  auto infos = describe_all(down);
  return {std::move(infos), std::move(down)};
}

} // namespace troupe::cli
