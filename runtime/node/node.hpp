#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/group/group_spec.hpp"

namespace troupe {

/// What a standalone node runs (`troupe node` without `--config`): groups
/// built in code. A cluster node is `cluster_node` (cluster_node.hpp).
struct node_config {
  std::string name = "n1";
  /// One group per entry, each under its own child of the root supervisor.
  std::vector<group_spec> groups;
  /// The root supervisor's restart intensity over its groups.
  int intensity = 10;
  caf::timespan period = std::chrono::seconds(60);
};

/// The current router of each group on a node. Routers are replaced when the
/// root supervisor restarts a group, so callers look them up here rather
/// than keeping a handle. Thread-safe: updated from inside the supervisor.
class group_directory {
public:
  void put(const std::string& name, const caf::actor& router);
  /// Forgets `name`'s router if it is still `router` (it ended).
  void erase_if(const std::string& name, const caf::actor_addr& router);
  /// The group's router, or an invalid handle for an unknown group.
  caf::actor get(const std::string& name) const;
  std::vector<std::string> names() const;
  /// The cluster-wide instance numbers a group's workers run here, in
  /// worker order (set by the placement manager; empty on a single node).
  void set_instances(const std::string& name, std::vector<uint32_t> ids);
  std::vector<uint32_t> instances(const std::string& name) const;

private:
  mutable std::mutex mtx_;
  std::map<std::string, caf::actor> routers_;
  std::map<std::string, std::vector<uint32_t>> instances_;
};

/// A standalone Troupe node: a root supervisor (one_for_one) with one child
/// per group.
/// Owned by the thread that made it; `stop()` (or the destructor) stops the
/// tree in reverse start order and waits for it.
class node {
public:
  /// Validates every group and starts the root supervisor.
  static caf::expected<std::unique_ptr<node>> make(caf::actor_system& sys, node_config cfg);

  ~node();

  const std::string& name() const { return cfg_.name; }
  const caf::actor& root() const { return root_; }
  /// The group's current router (invalid for an unknown group).
  caf::actor group(const std::string& name) const { return directory_->get(name); }
  std::vector<std::string> group_names() const { return directory_->names(); }
  /// The routers of its groups, as they are restarted.
  std::shared_ptr<group_directory> directory() const { return directory_; }

  /// Stops the tree in order; returns once the root supervisor is gone.
  void stop();

private:
  node(caf::actor_system& sys, node_config cfg);

  caf::actor_system& sys_;
  node_config cfg_;
  std::shared_ptr<group_directory> directory_ = std::make_shared<group_directory>();
  caf::actor root_;
};

} // namespace troupe
