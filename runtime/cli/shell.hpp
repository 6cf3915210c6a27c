#pragma once

#include <chrono>
#include <string>

#include "topology/domain_schema.hpp"

#include <caf/timespan.hpp>

namespace troupe::cli {

/// Options of `troupe shell`.
struct shell_options {
  /// The topology file: the cluster's name, secret and nodes.
  std::string config = "cluster.conf";
  /// `host:port` of the node to ask first (default: the topology's first
  /// node).
  std::string connect;
  /// One command to run (`-c`); empty: read commands from the terminal
  /// (line editing) or from standard input.
  std::string command;
  /// Machine-readable answers: one JSON document per command.
  bool json = false;
  /// How long one request to a node may take before the node counts as
  /// unreachable for this command.
  caf::timespan timeout = std::chrono::seconds(3);
  /// The domains' settings schemas, to validate the topology file.
  topology::domain_schemas domains;
};

/// Exit codes of `troupe shell` (sysexits-like): 0 every command succeeded,
/// 1 a command failed (the cluster said no, or a node did not answer),
/// 2 a command was not understood (unknown command, bad argument),
/// 3 no node of the cluster could be reached.
enum shell_exit : int {
  shell_ok = 0,
  shell_failed = 1,
  shell_usage = 2,
  shell_unreachable = 3,
};

/// Runs `troupe shell`: an actor system of its own that joins the cluster
/// through the node agents (proving the cluster's secret, as nodes do) and
/// takes commands (`help` lists them).
int run_shell(const shell_options& opt);

} // namespace troupe::cli
