#pragma once

#include <set>
#include <string>
#include <vector>

#include "topology/topology.hpp"

namespace troupe::topology {

/// Where one instance of a group runs.
struct assignment {
  std::string group;
  uint32_t instance = 0;
  std::string node;
  /// False when the instance runs away from its home node, which is lost.
  bool at_home = true;
};

/// Where every instance runs for a given set of live nodes.
struct plan {
  std::vector<assignment> assignments;
  /// Groups none of whose allowed nodes is alive: they answer by fallback.
  std::vector<std::string> unplaced;

  /// The instances of `group` on `node`.
  std::vector<uint32_t> instances_on(const std::string& group, const std::string& node) const;
};

/// Places every group's instances. A pure function of the topology and the
/// live nodes, so every node computes the same plan without a vote.
///
/// Instance i of a group is at home on `nodes[i % nodes.size()]` (its allowed
/// nodes in order of preference). An instance whose home is alive stays
/// there; the others go, in instance order, to the live allowed node with the
/// fewest instances of that group so far, ties broken by preference. Only the
/// instances of lost nodes move, and they go home when their node returns.
plan place(const topology& t, const std::set<std::string>& alive);

/// `place()` with every node alive.
plan place(const topology& t);

/// The plan as `troupe check` prints it: one line per group.
std::string describe(const topology& t, const plan& p);

} // namespace troupe::topology
