#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/log.hpp"
#include "runtime/supervision/spec.hpp"

namespace troupe::topology {

// -- cluster-wide settings ------------------------------------------------------

/// TLS between nodes (libcaf_openssl); all three paths or none.
struct tls_settings {
  std::string certificate;
  std::string key;
  std::string ca_file;
};

/// The `[cluster]` table: what every node of the cluster shares.
struct cluster_settings {
  std::string name;
  /// The shared secret nodes authenticate each other with (read from
  /// `secret_file` when that key is given instead of `secret`).
  std::string secret;
  caf::timespan heartbeat_interval = std::chrono::milliseconds(100);
  caf::timespan failure_timeout = std::chrono::milliseconds(500);
  /// `"embedded"` (librdkafka's mock cluster, started by `troupe up`) or a bootstrap list.
  std::string kafka = "embedded";
  /// `"embedded"` (a redis-server started by `troupe up`) or `redis://host:port`.
  std::string redis = "embedded";
  std::optional<tls_settings> tls;
  /// What the nodes log (`log_level`, default info) and how (`log_format`,
  /// `text` or `json`); a node's own `log_level` and `troupe node
  /// --log-level` override the level, `troupe shell`'s `log level` changes it
  /// while the node runs.
  log_level log = log_level::info;
  log_format format = log_format::text;
};

// -- per-node settings ------------------------------------------------------------

/// One `[[node]]`: where a node process listens.
struct node_spec {
  std::string name;
  std::string host = "127.0.0.1";
  uint16_t cluster_port = 0;
  uint16_t http_port = 0;
  /// Scheduler threads of the node's actor system; 0: one per core.
  size_t threads = 0;
  /// This node's log level, if it differs from the cluster's.
  std::optional<log_level> log;
  /// The line of the `[[node]]` header, for messages.
  int line = 0;
};

// -- groups ------------------------------------------------------------------------

/// One `[[group]]`: a supervised actor group and where it may run.
struct group_decl {
  std::string name;
  /// One of `domains()`.
  std::string domain;
  /// Instances in the whole cluster.
  uint32_t instances = 1;
  /// The nodes that may host it, in order of preference (default: all, in file order).
  std::vector<std::string> nodes;
  strategy strat = strategy::one_for_one;
  int intensity = 5;
  caf::timespan period = std::chrono::seconds(5);
  std::optional<backoff_spec> backoff;
  /// `round_robin` or `key_hash`.
  std::string routing = "round_robin";
  /// The message field to hash with `key_hash` routing, e.g. `"user"`.
  std::string key;
  /// One of the domain's declared fallbacks, or `"none"`.
  std::string fallback = "none";
  caf::timespan restart_delay = std::chrono::seconds(1);
  /// The domain's own settings (`[group.settings]`), checked against the domain.
  std::map<std::string, std::string> settings;
  int line = 0;
};

/// A whole topology file.
struct topology {
  /// The file it came from, for messages.
  std::string source;
  cluster_settings cluster;
  std::vector<node_spec> nodes;
  std::vector<group_decl> groups;

  const node_spec* node(const std::string& name) const;
  const group_decl* group(const std::string& name) const;
};

/// A domain Troupe can run as a group, with its fallbacks and settings keys.
struct domain_info {
  std::string name;
  /// Fallback names the domain declares, besides `"none"`.
  std::vector<std::string> fallbacks;
  /// Settings keys the domain reads, each with its default (as written in the file).
  std::map<std::string, std::string> settings;
};

/// Every domain, in a fixed order.
const std::vector<domain_info>& domains();

/// A setting of the group, or its domain's default ("" when neither has it).
std::string setting(const group_decl& decl, const std::string& key);

/// A numeric setting, or an error naming the group and the key.
caf::expected<double> number(const group_decl& decl, const std::string& key);

/// Parses and validates `text` as the topology file `source`. Errors have
/// code `ec::invalid_topology` and read `FILE:LINE: KEY: PROBLEM`.
caf::expected<topology> parse(const std::string& text, const std::string& source);

/// Reads and parses the file at `path`.
caf::expected<topology> load(const std::string& path);

} // namespace troupe::topology
