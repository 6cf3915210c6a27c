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
#include "topology/domain_schema.hpp"

namespace troupe::topology {

// -- cluster-wide settings ------------------------------------------------------

/// Certificates for the cluster transport (`runtime/cluster/tls_tunnel.hpp`);
/// all three paths or none. Without them the cluster secret keys it.
///
/// A node's certificate names the node: its subjectAltName holds
/// `DNS:<node name>`, and peers refuse a node whose certificate does not.
/// `certificate` and `key` may hold `{node}`, replaced by each node's name
/// (one certificate per node). The shell presents `operator_certificate`
/// and `operator_key` when given (an operator's certificate names no node),
/// else `certificate` and `key`.
struct tls_settings {
  std::string certificate;
  std::string key;
  std::string ca_file;
  std::string operator_certificate;
  std::string operator_key;
  /// The client port speaks TLS too (`https://`, `wss://`), presenting the
  /// node's certificate (`clients = true`).
  bool clients = false;

  /// True when `certificate` or `key` holds `{node}`.
  bool per_node() const;

  /// The settings node `name` uses: `{node}` replaced by its name.
  tls_settings for_node(const std::string& name) const;

  /// The settings an operator's shell uses: the operator's certificate and
  /// key in place of the node's, when given.
  tls_settings for_operator() const;
};

/// The `[cluster]` table: what every node of the cluster shares.
struct cluster_settings {
  std::string name;
  /// The shared secret nodes authenticate each other with (read from
  /// `secret_file` when that key is given instead of `secret`).
  std::string secret;
  caf::timespan heartbeat_interval = std::chrono::milliseconds(100);
  caf::timespan failure_timeout = std::chrono::milliseconds(500);
  /// How long a node waits, after it lost a peer, before it starts any
  /// instance that peer may still run: the lost peer, if it is cut off
  /// rather than dead, sees itself in a minority after its own failure
  /// timeout and stops hosting meanwhile. Default: `failure_timeout`.
  caf::timespan takeover_delay = std::chrono::milliseconds(500);
  /// `"embedded"` (librdkafka's mock cluster, started by `troupe up`) or a bootstrap list.
  std::string kafka = "embedded";
  /// How long a consumer's fetch may wait at the broker when there is
  /// nothing new (`fetch.wait.max.ms`). A real broker answers as soon as
  /// data arrives, so a longer wait there costs no latency and saves the
  /// brokers and nodes a fetch per millisecond per consumer; the embedded
  /// mock answers an empty fetch only after the full wait, so it adds up
  /// to the wait to each hop there. Default 1 ms; 1 ms to 5 s.
  caf::timespan kafka_fetch_wait = std::chrono::milliseconds(1);
  /// `"embedded"` (a redis-server started by `troupe up`) or `redis://host:port`.
  std::string redis = "embedded";
  /// The nice value `troupe up` gives the embedded Redis (-20 to 19). The
  /// embedded Redis shares its host's cores with the nodes, and each of its
  /// single-threaded script runs that the scheduler interrupts stalls every
  /// node's enricher waiting on it: a higher priority than the nodes' lets
  /// it run as soon as it has work. 0 leaves it as the launcher runs.
  /// Only with `redis = "embedded"`. Default -10.
  int redis_nice = -10;
  /// The password of a production Redis, read from `redis_password_file`
  /// (relative to the topology file's folder); empty: none. The embedded
  /// Redis has a generated one of its own.
  std::string redis_password;
  /// Where the cluster keeps what must outlive its processes on this host
  /// (the embedded Redis's append-only file, under `redis/`): `state_dir`,
  /// relative to the topology file's folder; default `.troupe-state`.
  std::string state_dir = ".troupe-state";
  /// The share of new traces (events that came without a sampled
  /// `traceparent`) whose spans go to the `traces` topic (`trace_sample`,
  /// 0 to 1, default 0.01). Every span stays in its node's memory for
  /// `troupe shell -c 'trace ID'` either way.
  double trace_sample = 0.01;
  /// The key that signs WebSocket clients' tokens (`troupe token`), apart
  /// from the cluster secret: the file `client_token_key_file` names
  /// (relative to the topology file's folder), or by default
  /// `<state_dir>/client-token.key`, generated when first needed. Hosts of
  /// one cluster must share it: a cluster on several hosts names it.
  std::string client_token_key_file;
  /// True when `client_token_key_file` is the default (it may be created).
  bool client_token_key_generated = true;
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
  /// Where `/metrics` and `/healthz` are served apart from the client port
  /// (`admin_port`, on `admin_host`, default 127.0.0.1); 0: on `http_port`
  /// with the rest.
  std::string admin_host = "127.0.0.1";
  uint16_t admin_port = 0;
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
  /// A registered domain's name (`runtime/node/domain.hpp`).
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
  /// The domain's own settings (`settings = {...}`), checked against the
  /// domain's schema: every key of it, the file's value or the default.
  settings_map settings;
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

/// A setting of the group as text ("" for a key its domain does not have).
std::string setting(const group_decl& decl, const std::string& key);

/// A numeric setting (integer or number); the parser checked it.
double number(const group_decl& decl, const std::string& key);

/// A duration setting; the parser checked it.
caf::timespan duration(const group_decl& decl, const std::string& key);

/// Parses and validates `text` as the topology file `source`, whose groups
/// may be of the domains in `domains` (each group's settings are checked
/// against its domain's schema). Errors have code `ec::invalid_topology` and
/// read `FILE:LINE: KEY: PROBLEM`.
caf::expected<topology> parse(const std::string& text, const std::string& source,
                              const domain_schemas& domains);

/// Reads and parses the file at `path`.
caf::expected<topology> load(const std::string& path, const domain_schemas& domains);

} // namespace troupe::topology
