#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include <caf/io/middleman_actor.hpp>

#include "runtime/cluster/tls_tunnel.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "topology/topology.hpp"

namespace troupe::cli {

/// The shell's connection to one node's agent.
struct link {
  caf::actor agent;
  std::string error;
};

/// How `troupe shell` reaches a cluster: it dials each node's agent through
/// the cluster transport (a TLS tunnel of its own, keyed as the nodes' are:
/// the topology's certificate, or the cluster secret), proves the secret
/// (it names itself `shell/HOST:PID`), and asks the agents, their routers
/// and supervisors, each request with the shell's timeout. A node that does
/// not answer is reported for that command and dialled again for the next.
///
/// Owned by the shell's main thread; every request blocks it (the shell is
/// an actor system of its own, with nothing else to do meanwhile).
class cluster_link {
public:
  cluster_link(caf::actor_system& sys, topology::topology topo, std::string entry,
               caf::timespan timeout);

  ~cluster_link();

  cluster_link(const cluster_link&) = delete;
  cluster_link& operator=(const cluster_link&) = delete;

  const topology::topology& topo() const {
    return topo_;
  }

  /// Connects to the entry node (or any node): false if none answers.
  bool join(std::string& why);

protected:
  /// The topology's nodes, the entry node first.
  std::vector<std::string> ordered_nodes() const;

  template <class T, class... Ts>
  caf::expected<T> ask(const caf::actor& dest, Ts&&... xs) {
    caf::expected<T> result{caf::make_error(caf::sec::request_timeout)};
    if (!dest)
      return caf::make_error(ec::invalid_argument, std::string{"no such actor"});
    self_->request(dest, timeout_, std::forward<Ts>(xs)...)
      .receive([&](T& x) { result = std::move(x); }, [&](caf::error& e) { result = e; });
    return result;
  }

  /// `ask` with a timeout of its own (a long operation, such as training).
  template <class T, class... Ts>
  caf::expected<T> ask_for(caf::timespan timeout, const caf::actor& dest, Ts&&... xs) {
    caf::expected<T> result{caf::make_error(caf::sec::request_timeout)};
    if (!dest)
      return caf::make_error(ec::invalid_argument, std::string{"no such actor"});
    self_->request(dest, timeout, std::forward<Ts>(xs)...)
      .receive([&](T& x) { result = std::move(x); }, [&](caf::error& e) { result = e; });
    return result;
  }

  template <class... Ts>
  caf::error ask_void(const caf::actor& dest, Ts&&... xs) {
    caf::error result;
    self_->request(dest, timeout_, std::forward<Ts>(xs)...)
      .receive([&]() {}, [&](caf::error& e) { result = e; });
    return result;
  }

  /// The shell's end of the cluster transport, made on first use.
  caf::expected<caf::io::middleman_actor> transport();

  /// The node's agent, connected and authenticated (dialled again if the
  /// last command lost it).
  caf::expected<caf::actor> agent_of(const std::string& name);

  /// Forgets a node's connection after a failed request: the next command
  /// dials it again.
  void lost(const std::string& name, const caf::error& err);

  /// Every reachable node's description (unreachable ones in `down`).
  std::map<std::string, node_info> describe_all(std::map<std::string, std::string>& down);

  /// Every reachable node's description, and why the others are not.
  std::pair<std::map<std::string, node_info>, std::map<std::string, std::string>> reach();

  caf::actor_system& sys_;
  caf::scoped_actor self_;
  topology::topology topo_;
  std::string entry_;
  caf::timespan timeout_;
  /// The shell's name in the cluster: `shell/HOST:PID`.
  std::string me_;
  std::map<std::string, link> links_;
  /// The shell's own end of the nodes' TLS tunnels, and the middleman actor
  /// that dials through it.
  std::shared_ptr<cluster::tls_tunnel> tunnel_;
  caf::io::middleman_actor transport_;
};

} // namespace troupe::cli
