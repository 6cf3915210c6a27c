#pragma once

#include <string>
#include <utility>
#include <vector>

#include "topology/domain_schema.hpp"

namespace troupe::launcher {

/// Options of `troupe up`.
struct up_options {
  /// The topology file.
  std::string config = "cluster.conf";
  /// The `troupe` executable the nodes run (normally this very binary).
  std::string troupe_binary;
  /// Passed on to every node as `--log-level` and `--log-format` (empty:
  /// the topology's).
  std::string log_level;
  std::string log_format;
  /// The domains' settings schemas, to validate the file's groups.
  topology::domain_schemas domains;
};

/// `troupe up`: launches the local cluster of the topology file and returns
/// its exit code once it has been stopped (SIGINT/SIGTERM) and every process
/// it started has ended.
///
/// Each node of the file that lives on this host runs as a child process
/// under a supervisor of its own (one_for_one, intensity 5 in 60 s, backoff
/// 100 ms to 5 s): a node that dies is restarted; one that keeps dying is
/// given up on and the others carry on. Kafka `"embedded"` starts librdkafka's
/// mock cluster in this process (with the topics the groups name); Redis
/// `"embedded"` starts a private `redis-server` on a free loopback port, also
/// supervised. Both addresses are passed to every node. Output lines are
/// prefixed with the name of the process that printed them.
int run_up(const up_options& opt);

/// `troupe kafka`: runs the mock Kafka cluster alone with `topics` (name,
/// partitions) and, given a topology file, the topics its groups name (as
/// `troupe up` creates them), and prints its bootstrap list until
/// SIGINT/SIGTERM. Lines on standard input command it: `down` takes every
/// broker down, `up` brings them back (answered `brokers down` / `brokers
/// up`), for outage drills.
int run_kafka(int brokers, std::vector<std::pair<std::string, int>> topics,
              const std::string& topology_file,
              const std::vector<topology::domain_schema>& domains);

} // namespace troupe::launcher
