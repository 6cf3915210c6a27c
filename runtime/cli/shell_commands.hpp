#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/timespan.hpp>
#include <nlohmann/json.hpp>

#include "runtime/cli/shell.hpp"
#include "topology/topology.hpp"

namespace troupe::cli {

/// One command's answer: an exit code, the text for people and the JSON
/// document for machines.
struct outcome {
  int rc = shell_ok;
  std::string text;
  nlohmann::json doc = nlohmann::json::object();
};

/// The shell's commands on one cluster. Every command is one row of a
/// table (`command_names()`): its name, arguments, one line and a longer
/// text for `help`, how many arguments it takes, and what runs it, so that
/// `help`, the dispatch and Tab completion never disagree.
///
/// Owned by the shell's main thread (`run_shell`).
class shell_session {
public:
  /// A session on `topo` that asks `entry` (a node's name or
  /// `host:cluster_port`; empty: the first node) first.
  static std::unique_ptr<shell_session> make(caf::actor_system& sys, topology::topology topo,
                                             std::string entry, caf::timespan timeout);

  virtual ~shell_session() = default;

  /// Connects to the entry node (or any node): false if none answers.
  virtual bool join(std::string& why) = 0;

  /// Runs one command line, split into words.
  virtual outcome run(const std::vector<std::string>& words) = 0;
};

/// Every command's name, in `help`'s order.
std::vector<std::string> command_names();

/// Splits a command line into words; double or single quotes group words,
/// and a `{` starts a JSON argument that runs to the end of the line.
std::vector<std::string> split(const std::string& line);

} // namespace troupe::cli
