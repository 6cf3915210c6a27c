#pragma once

// Every atom and message type Troupe's actors exchange, in one place. Types
// that may cross nodes have an `inspect()` overload and are registered in
// `register_types()` (runtime/core/types.hpp); an unregistered type sent to
// another node arrives as an empty message in CAF 0.17.6.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>

#include "runtime/core/trace.hpp"

namespace troupe {

// -- atoms (at most 10 characters each) ----------------------------------------

/// `(which_children_atom) -> std::vector<child_info>`: a supervisor's children.
using which_children_atom = caf::atom_constant<caf::atom("children")>;
/// `(crashes_atom) -> std::vector<crash_record>`: a supervisor's recent crashes, oldest first.
using crashes_atom = caf::atom_constant<caf::atom("crashes")>;
/// `(start_child_atom, child_spec) -> caf::actor`: adds and starts a child (local only).
using start_child_atom = caf::atom_constant<caf::atom("startchild")>;
/// `(terminate_child_atom, name) -> ok`: stops a child, keeping its spec (OTP `terminate_child`).
using terminate_child_atom = caf::atom_constant<caf::atom("termchild")>;
/// `(restart_child_atom, name) -> caf::actor`: starts a terminated child again.
using restart_child_atom = caf::atom_constant<caf::atom("restartchd")>;
/// `(delete_child_atom, name) -> ok`: forgets a terminated child's spec.
using delete_child_atom = caf::atom_constant<caf::atom("deletechld")>;
/// `(status_atom) -> group_status`: a group's state and counters.
using status_atom = caf::atom_constant<caf::atom("status")>;
/// `(dead_letters_atom) -> std::vector<dead_letter>`: a group's recent dead letters.
using dead_letters_atom = caf::atom_constant<caf::atom("deadletter")>;
/// `(supervisor_atom) -> caf::actor`: the supervisor under a group router (invalid while down);
/// a supervisor answers an invalid handle (its children are right under it).
using supervisor_atom = caf::atom_constant<caf::atom("supervisor")>;
/// `(group_atom, name) -> caf::actor`: a node's current router of a group.
using group_atom = caf::atom_constant<caf::atom("group")>;
/// Internal: a worker (re)started, `(worker_up_atom, index, handle)` to its router.
using worker_up_atom = caf::atom_constant<caf::atom("worker_up")>;
/// Internal: a delayed restart is due, `(restart_atom, token)`.
using restart_atom = caf::atom_constant<caf::atom("restart")>;
/// Internal: a child's shutdown timeout expired, `(shutdown_timeout_atom, token)`.
using shutdown_timeout_atom = caf::atom_constant<caf::atom("shut_tout")>;
/// Internal: time to answer the requests past their call timeout, `(sweep_atom)`;
/// to the client token keeper, time to read the revocations again and sweep
/// the gateway's clients.
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;

/// Internal: a worker tells its router, from its exception handler, which
/// routed message it is dying on, `(crashed_on_atom, seq)`: that message is
/// blamed for the crash, every other one it held is sent again unblamed.
using crashed_on_atom = caf::atom_constant<caf::atom("crashedon")>;

/// Internal: a worker's cue to send the acknowledgements it collected while
/// its mailbox had more, `(ack_flush_atom)`.
using ack_flush_atom = caf::atom_constant<caf::atom("ackflush")>;

/// Internal: a router's cue to send its workers' outboxes, the messages it
/// handed them while its mailbox had more, `(dispatch_flush_atom)`.
using dispatch_flush_atom = caf::atom_constant<caf::atom("dispflush")>;

// -- cluster membership (runtime/cluster) ---------------------------------------

/// `(hello_atom, node_name, cluster_name) -> std::string nonce`: asks a node
/// agent for a challenge. Any peer may ask; nothing else is open to it.
/// An operator's shell asks `(hello_atom, shell_name, cluster_name,
/// shell_nonce) -> std::vector<std::string>{node_nonce, node_name,
/// node_proof}` instead: the node proves the secret first
/// (`make_mutual_proof(.., "node", node, shell, shell_nonce, node_nonce)`),
/// and the shell's `auth_atom` proof is `make_mutual_proof(.., "operator",
/// shell, node, node_nonce, shell_nonce)`.
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// `(auth_atom, node_name, proof) -> ok`: answers the challenge with
/// HMAC-SHA256(secret, cluster|name|nonce); the agent trusts that node from then on.
using auth_atom = caf::atom_constant<caf::atom("auth")>;
/// `(members_atom) -> std::vector<member_info>`: a node agent's view of the cluster.
using members_atom = caf::atom_constant<caf::atom("members")>;
/// `(subscribe_atom, listener)`: the agent sends the listener a
/// `member_up_atom` for each peer up now, a `drain_atom` for each drained
/// node and a `scale_atom` for each rescaled group, then those events as
/// they happen (and `member_down_atom`).
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
/// `(member_up_atom, node_name, peer_agent)`: a peer joined (both ways authenticated).
using member_up_atom = caf::atom_constant<caf::atom("member_up")>;
/// `(member_down_atom, node_name, reason)`: a peer was lost.
using member_down_atom = caf::atom_constant<caf::atom("memberdown")>;
/// `(claim_atom, group, instance, home_node) -> (bool holds, bool claiming, bool home_down,
/// std::vector<std::string> live)`: before a node starts an instance it asks
/// each live peer whether it runs or is claiming that instance, whether it
/// sees the instance's home node down, and which nodes it sees live.
using claim_atom = caf::atom_constant<caf::atom("claim")>;
/// `(routes_atom) -> std::vector<std::string>`: a cluster router's counts,
/// "NODE N" per node it sent to, then "resent N" and "in_flight N".
using routes_atom = caf::atom_constant<caf::atom("routes")>;
/// `(manager_atom, placement_manager)`: tells a node agent (locally) whom to
/// forward `claim_atom` to.
using manager_atom = caf::atom_constant<caf::atom("manager")>;
/// Internal: a supervised process ended, `(process_exit_atom, description)`
/// from its reader thread to its process actor.
using process_exit_atom = caf::atom_constant<caf::atom("proc_exit")>;
/// Internal: a placement manager's start-up grace is over, `(startup_grace_atom)`.
using startup_grace_atom = caf::atom_constant<caf::atom("startgrace")>;
/// Internal: a node agent's periodic (re)connect round, `(tick_atom)`.
using tick_atom = caf::atom_constant<caf::atom("tick")>;
/// `(node_info_atom) -> node_info`: what a node agent's node is and hosts
/// (for `troupe shell`). Locally, `(node_info_atom, node_info)` gives the
/// agent the parts it cannot know itself.
using node_info_atom = caf::atom_constant<caf::atom("nodeinfo")>;
/// `(drain_atom, node_name, bool drained) -> ok` to a node agent (`troupe
/// shell drain`), which tells its listeners the same as an event: the
/// placement manager and the cluster routers leave a drained node out of
/// their plan, so its instances move to the other nodes. Every listener of
/// an agent must handle it.
using drain_atom = caf::atom_constant<caf::atom("drain")>;
/// `(scale_atom, group, uint32_t instances) -> ok` to a node agent (`troupe
/// shell scale`), which tells its listeners the same as an event: the
/// placement managers and the cluster routers plan with the new instance
/// count. Every listener of an agent must handle it.
using scale_atom = caf::atom_constant<caf::atom("scale")>;
/// `(halt_atom) -> ok` to a node agent: the node stops in order and its
/// process exits with code 0 (`troupe shell stop`, `shutdown`).
using halt_atom = caf::atom_constant<caf::atom("halt")>;
/// `(log_level_atom) -> std::string` to a node agent: the node's log level;
/// `(log_level_atom, std::string level) -> std::string`: sets it and answers
/// the one before (`troupe shell log`). Only members and operators may set.
using log_level_atom = caf::atom_constant<caf::atom("loglevel")>;

/// One decision of an operator that the whole cluster keeps: a node drained
/// (`key` the node, `value` 1 or 0) or a group scaled (`key` the group,
/// `value` its instances), stamped with when an agent took it (Unix ms).
struct operator_decision {
  std::string key;
  uint32_t value = 0;
  int64_t stamp_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, operator_decision& x) {
  return f(caf::meta::type_name("troupe.operator_decision"), x.key, x.value, x.stamp_ms);
}

/// Every drain and scale decision an agent knows.
struct operator_decisions {
  std::vector<operator_decision> drains;
  std::vector<operator_decision> scales;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, operator_decisions& x) {
  return f(caf::meta::type_name("troupe.operator_decisions"), x.drains, x.scales);
}

/// `(decisions_atom, operator_decisions)` from a node agent to a peer's agent
/// when the peer comes up: per node and per group the newer decision wins
/// (a last-writer-wins register), so a node restarted, or cut off while an
/// operator drained or scaled, learns what the others know.
using decisions_atom = caf::atom_constant<caf::atom("decisions")>;

/// One node as a node agent sees it.
struct member_info {
  std::string name;
  /// `self`, `up`, `joining` (connected, not yet authenticated both ways) or `down`.
  std::string state;
  /// `host:cluster_port` from the topology.
  std::string address;
  /// When it reached its state, milliseconds since the Unix epoch.
  int64_t since_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_info& x) {
  return f(caf::meta::type_name("troupe.member_info"), x.name, x.state, x.address, x.since_ms);
}

/// One node as it describes itself to an operator (`troupe shell`).
struct node_info {
  std::string name;
  /// When the node process started, milliseconds since the Unix epoch.
  int64_t started_ms = 0;
  /// The node's root supervisor (walk it with `which_children`: the whole
  /// tree of the node).
  caf::actor root;
  /// The node's supervisor of groups (`restart` terminates and restarts a
  /// group under it).
  caf::actor groups_root;
  /// The groups it hosts, and for each the cluster-wide instance numbers
  /// it runs, in the order of its workers (`GROUP/0`, `GROUP/1`, ...).
  std::vector<std::string> groups;
  std::vector<std::vector<uint32_t>> instances;
  std::string kafka;
  std::string redis;
  uint16_t http_port = 0;
  /// Groups an operator rescaled (`scale`), and their instance counts.
  std::vector<std::string> scaled_groups;
  std::vector<uint32_t> scaled_instances;
  /// Actors running in the node process now (CAF's registry count; CAF's
  /// own middleman and brokers are not in it): what its tree holds, the
  /// readers linked to workers, and the main thread's actor that waits for
  /// the root to end. A test compares the two to find an unsupervised actor.
  uint64_t running_actors = 0;
  /// What the node's services report to operators, a JSON object (the
  /// news service's `ranking`: each A/B variant's feeds, impressions and
  /// reads on this node).
  std::string report;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("troupe.node_info"), x.name, x.started_ms, x.root, x.groups_root,
           x.groups,
           x.instances, x.kafka, x.redis, x.http_port, x.scaled_groups, x.scaled_instances,
           x.running_actors, x.report);
}

// -- supervision ---------------------------------------------------------------

/// What a supervisor knows of one child, as `which_children` answers it.
struct child_info {
  /// The child's name, unique under its supervisor.
  std::string name;
  /// The running instance; invalid while the child is not running.
  caf::actor handle;
  /// `running`, `restarting` (waiting for a backoff or a sibling's shutdown) or `terminated`.
  std::string state;
  /// `permanent`, `transient` or `temporary`.
  std::string restart;
  /// True for a supervisor child: ask it in turn to walk the tree.
  bool is_supervisor = false;
  /// How often this child was restarted since its supervisor started.
  uint64_t restarts = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, child_info& x) {
  return f(caf::meta::type_name("troupe.child_info"), x.name, x.handle, x.state,
           x.restart, x.is_supervisor, x.restarts);
}

/// One entry of a supervisor's bounded crash history.
struct crash_record {
  /// The child that exited (or the supervisor itself for an escalation).
  std::string child;
  /// Wall-clock time of the exit, in milliseconds since the Unix epoch.
  int64_t when_ms = 0;
  /// The exit reason, rendered (an exception's text, an error, `kill`).
  std::string reason;
  /// What the supervisor did: `restarted`, `restart_delayed`, `not_restarted`,
  /// `removed` or `escalated`.
  std::string action;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, crash_record& x) {
  return f(caf::meta::type_name("troupe.crash_record"), x.child, x.when_ms, x.reason,
           x.action);
}

// -- groups --------------------------------------------------------------------

/// A message a group router hands one of its workers, numbered by the
/// router; the worker acknowledges it (with its answer) in a `routed_acks`.
/// Sent, never requested: a worker's acknowledgements travel in batches.
struct routed {
  uint64_t seq = 0;
  caf::message content;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, routed& x) {
  return f(caf::meta::type_name("troupe.routed"), x.seq, x.content);
}

/// Several `routed` messages for one worker, in order: what a busy router
/// sends instead of one message each.
struct routed_batch {
  std::vector<routed> items;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, routed_batch& x) {
  return f(caf::meta::type_name("troupe.routed_batch"), x.items);
}

/// A worker's acknowledgements of the `routed` messages it finished, in the
/// order it finished them, with each one's answer (empty for a message that
/// was not a request): one message for everything it finished while its
/// mailbox had more, so the cost of acknowledging shrinks as load grows.
struct routed_acks {
  std::vector<uint64_t> seqs;
  std::vector<caf::message> answers;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, routed_acks& x) {
  return f(caf::meta::type_name("troupe.routed_acks"), x.seqs, x.answers);
}

/// The envelope a cluster router wraps a message in for a group on another
/// node (or this one), answered with a `reply`.
struct envelope {
  caf::message content;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  return f(caf::meta::type_name("troupe.envelope"), x.content);
}

/// A worker's answer to an `envelope`; doubles as the acknowledgement that
/// lets the router forget the message.
struct reply {
  caf::message content;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reply& x) {
  return f(caf::meta::type_name("troupe.reply"), x.content);
}

/// A message a group gave up on, with why.
struct dead_letter {
  /// The group that gave up.
  std::string group;
  /// Why: a poison message, saturation, or the group being stopped.
  std::string reason;
  /// The original message, unchanged.
  caf::message content;
  /// How often the message crashed a worker.
  uint32_t crashes = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letter& x) {
  return f(caf::meta::type_name("troupe.dead_letter"), x.group, x.reason, x.content,
           x.crashes);
}

/// A group's state and counters, as `(status_atom)` answers it.
struct group_status {
  std::string name;
  /// `up` (every worker running), `degraded` (some restarting) or `down`
  /// (its supervisor gave up: answers come from the fallback).
  std::string state;
  uint32_t instances = 0;
  uint32_t live_workers = 0;
  /// Accepted and not yet answered, queued or at a worker.
  uint64_t in_flight = 0;
  /// Of those, waiting for a worker.
  uint64_t queued = 0;
  uint64_t accepted = 0;
  uint64_t completed = 0;
  /// Messages sent again after they crashed their worker (at most one per crash).
  uint64_t redelivered = 0;
  /// Messages a dead worker never started, moved to its replacement.
  uint64_t requeued = 0;
  uint64_t dead_letters = 0;
  /// Refused with `group_saturated`.
  uint64_t rejected = 0;
  /// Answered by the fallback (group down, or call timeout).
  uint64_t fallbacks = 0;
  /// Worker restarts seen by the router.
  uint64_t worker_restarts = 0;
  /// Times the group's supervisor gave up and was started again.
  uint64_t group_restarts = 0;
  /// Acceptance to answer of every completed request, as
  /// `histogram::raw()` and `histogram::sum_ms()` (runtime/core/histogram.hpp).
  std::vector<uint64_t> latency_buckets;
  double latency_sum_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_status& x) {
  return f(caf::meta::type_name("troupe.group_status"), x.name, x.state, x.instances,
           x.live_workers, x.in_flight, x.queued, x.accepted, x.completed,
           x.redelivered, x.requeued, x.dead_letters, x.rejected, x.fallbacks,
           x.worker_restarts, x.group_restarts, x.latency_buckets, x.latency_sum_ms);
}

// -- the fraud pipeline (actors/ingestor ... actors/alerter) -----------------------

/// A card transaction, schema version 1 (JSON on the `transactions` topic;
/// parsed and checked by `parse_transaction()` in actors/ingestor).
struct transaction {
  std::string id;
  std::string user;
  double amount = 0;
  std::string currency;
  std::string merchant;
  std::string category;
  std::string country;
  std::string device;
  /// Unix time in milliseconds.
  int64_t timestamp = 0;
  /// Its trace (runtime/core/trace.hpp): from the Kafka record's
  /// `traceparent` header, else new at ingest; `span` is the span of the
  /// stage that handed it on. Not part of the JSON.
  trace::context trace;
};

namespace trace {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, context& x) {
  return f(caf::meta::type_name("troupe.trace_context"), x.trace_hi, x.trace_lo, x.span,
           x.flags);
}

} // namespace trace

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, transaction& x) {
  return f(caf::meta::type_name("troupe.transaction"), x.id, x.user, x.amount, x.currency,
           x.merchant, x.category, x.country, x.device, x.timestamp, x.trace);
}

/// A transaction with its features (actors/fraud_detector/model.hpp lists
/// them), as the feature-enricher hands it on.
struct enriched_transaction {
  transaction tx;
  std::vector<float> features;
  /// Redis was unreachable: only the features that need no history are real
  /// (amount, hour, category); the others hold their neutral values.
  bool degraded = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, enriched_transaction& x) {
  return f(caf::meta::type_name("troupe.enriched_transaction"), x.tx, x.features, x.degraded);
}

/// A transaction with its fraud score: the probability, the model version
/// that gave it, and the features that pushed it most (names and SHAP
/// contributions in log-odds, largest first).
struct scored_transaction {
  enriched_transaction item;
  float probability = 0;
  std::string model_version;
  std::vector<std::string> top_features;
  std::vector<float> top_contributions;
  /// A candidate on trial in shadow: its version and score (empty version:
  /// none). Only `probability` decides the alert.
  std::string shadow_version;
  float shadow_probability = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scored_transaction& x) {
  return f(caf::meta::type_name("troupe.scored_transaction"), x.item, x.probability,
           x.model_version, x.top_features, x.top_contributions, x.shadow_version,
           x.shadow_probability);
}

/// `(enrich_atom, std::vector<transaction>) -> std::vector<enriched_transaction>`:
/// a feature-enricher's features for a batch, in order.
using enrich_atom = caf::atom_constant<caf::atom("enrich")>;
/// `(score_atom, std::vector<enriched_transaction>) -> std::vector<scored_transaction>`.
using score_atom = caf::atom_constant<caf::atom("score")>;
/// `(alert_atom, std::vector<scored_transaction>) -> uint64_t`: raises the
/// alerts of a batch (each at most once) and answers how many were new.
using alert_atom = caf::atom_constant<caf::atom("alert")>;
/// `(model_load_atom, path) -> std::string version`: a fraud-detector loads
/// and checks a model; every worker of the group scores with it from its next
/// batch on (a batch is scored by one model, never by two).
using model_load_atom = caf::atom_constant<caf::atom("modelload")>;
/// `(model_status_atom) -> std::string`: "version (path)" of the current model.
using model_status_atom = caf::atom_constant<caf::atom("modelstat")>;
/// `(model_quality_atom) -> std::string`: a model-monitor worker's view,
/// JSON: `{"window_ms", "models": [quality...], "events": [...]}`
/// (`actors/model_monitor/quality.hpp`).
using model_quality_atom = caf::atom_constant<caf::atom("modelqual")>;
/// `(model_train_atom) -> std::string`: a model-trainer worker trains a
/// candidate now and answers its outcome, JSON
/// (`actors/model_trainer/trainer.hpp`).
using model_train_atom = caf::atom_constant<caf::atom("modeltrain")>;
/// `(model_rollout_atom) -> std::string`: the model-monitor's model
/// roll-out, JSON (`actors/fraud_detector/rollout.hpp`) with the trial's
/// figures; every fraud-detector asks it each second and follows it.
using model_rollout_atom = caf::atom_constant<caf::atom("modelroll")>;
/// `(model_canary_atom, path, uint32_t share, std::string mode) ->
/// std::string`: the model-monitor puts the model at `path` on trial
/// (`split` for `share` percent of the users, or `shadow`); answers the new
/// roll-out once it is durable.
using model_canary_atom = caf::atom_constant<caf::atom("modelcan")>;
/// `(model_promote_atom, version) -> std::string`: the candidate `version`
/// becomes the model in use, cluster-wide.
using model_promote_atom = caf::atom_constant<caf::atom("modelprom")>;
/// `(model_rollback_atom, version) -> std::string`: the candidate `version`
/// is withdrawn, or, when `version` is in use, the model before it returns.
using model_rollback_atom = caf::atom_constant<caf::atom("modelback")>;
/// `(trace_atom, std::string transaction) -> std::string`: the spans a node
/// holds of the transaction, JSON (an operator's `trace`, through the node
/// agent to its `@traces` service).
using trace_atom = caf::atom_constant<caf::atom("trace")>;

/// Internal to an ingestor worker: read the next records, `(poll_atom)`.
using poll_atom = caf::atom_constant<caf::atom("poll")>;
/// Internal to an ingestor worker: Kafka confirmed (or refused) a dead
/// letter, `(dead_letter_done_atom, topic, partition, offset, int32_t status)`
/// (0 confirmed, 1 failed, 2 too large).
using dead_letter_done_atom = caf::atom_constant<caf::atom("dl_done")>;
/// Internal to a broadcaster's Kafka reader: Kafka confirmed (or refused) a
/// dead letter of batch `id`, `(reader_ack_atom, uint64_t id, caf::error)`.
using reader_ack_atom = caf::atom_constant<caf::atom("readerack")>;
/// Internal to an ingestor worker: send a dead letter again,
/// `(dead_letter_retry_atom, topic, partition, offset)`.
using dead_letter_retry_atom = caf::atom_constant<caf::atom("dl_retry")>;

/// Internal to an ingestor worker: Kafka answered for the transactions of
/// a batch that were scored with degraded features and sent to be scored
/// again, `(rescore_done_atom, batch id, bool ok)`.
using rescore_done_atom = caf::atom_constant<caf::atom("rescored")>;
/// Internal to an ingestor worker: send a batch down the pipeline again,
/// `(retry_atom, batch id)`.
using retry_atom = caf::atom_constant<caf::atom("retry")>;
/// Internal to an alerter worker: Kafka confirmed (or refused) one alert of
/// a batch, `(alert_sent_atom, batch id, ok)`.
using alert_sent_atom = caf::atom_constant<caf::atom("alertsent")>;

// -- news personalisation and push (actors/news, ranker, websocket_broadcaster) ---

/// A news article, schema version 1 (JSON on the `articles` topic; parsed
/// and checked by `parse_article()` in actors/news).
struct article {
  std::string id;
  std::string headline;
  /// Lower case, `[a-z0-9_-]{1,32}`: also the `breaking:<category>` channel.
  std::string category;
  /// Political bias, 0 (left) to 1 (right).
  double bias = 0.5;
  /// Unix time in milliseconds.
  int64_t published_ms = 0;
  bool breaking = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, article& x) {
  return f(caf::meta::type_name("troupe.article"), x.id, x.headline, x.category, x.bias,
           x.published_ms, x.breaking);
}

/// One article of a feed with the parts of its score, so that a reader sees
/// why it is there: score = 0.40 affinity + 0.30 bias alignment + 0.30
/// recency. A trending answer sets `reads` and leaves the parts at zero.
struct ranked_article {
  article item;
  double score = 0;
  double affinity = 0;
  double bias_alignment = 0;
  double recency = 0;
  uint64_t reads = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ranked_article& x) {
  return f(caf::meta::type_name("troupe.ranked_article"), x.item, x.score, x.affinity,
           x.bias_alignment, x.recency, x.reads);
}

/// A user's feed, best first.
struct feed {
  std::string user;
  std::vector<ranked_article> items;
  /// `ranker` (personalised) or `trending` (the fallback while the ranker
  /// group is down).
  std::string source;
  /// True when answered by the fallback.
  bool degraded = false;
  /// The user has no preferences in Redis (or Redis could not be reached):
  /// the documented defaults were used.
  bool default_preferences = false;
  /// Articles considered.
  uint64_t candidates = 0;
  /// The ranking's A/B variant that ranked it (empty for the fallback).
  std::string variant;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, feed& x) {
  return f(caf::meta::type_name("troupe.feed"), x.user, x.items, x.source, x.degraded,
           x.default_preferences, x.candidates, x.variant);
}

/// `(rank_atom, std::string user, uint32_t k) -> feed`: the ranker's top `k`
/// for `user` (routed by user: the key follows the atom).
using rank_atom = caf::atom_constant<caf::atom("rank")>;
/// `(article_atom, article, bool relayed)` to a node's news hub: a new
/// article; the hub that got it from Kafka (`relayed` false) relays it to
/// every other node's hub.
using article_atom = caf::atom_constant<caf::atom("article")>;
/// `(alert_push_atom, std::string user, std::string json, bool relayed)` to
/// a news hub: a fraud alert for the WebSocket `alerts` channels.
using alert_push_atom = caf::atom_constant<caf::atom("alertpush")>;
/// `(read_atom, std::string article_id, bool relayed)` to a news hub: a
/// reader opened an article (counts for trending).
using read_atom = caf::atom_constant<caf::atom("read")>;
/// `(window_atom) -> std::vector<article>`: a news hub's current window (a
/// joining node's hub fills its own from a peer's).
using window_atom = caf::atom_constant<caf::atom("window")>;
/// `(feed_atom, std::string user, uint32_t k) -> feed` to a broadcaster
/// worker, which delegates it to the ranker's cluster router. The gateway
/// asks through its node's feed requester, `(feed_atom, uint64_t session,
/// std::string request_id, std::string user, uint32_t k)`, which answers the
/// session when the feed (or an error) comes back.
using feed_atom = caf::atom_constant<caf::atom("feed")>;
/// Internal to a broadcaster worker: read the next records, `(consume_atom)`.
using consume_atom = caf::atom_constant<caf::atom("consume")>;
/// `(revoke_atom, std::string user) -> int64_t` from an operator to a node
/// agent, which hands it to its node's client token keeper (the `@client-tokens`
/// service): every token of `user` issued up to now (the answer, seconds
/// since the epoch) is refused on every node from then on, and the user's
/// open WebSockets are closed (`troupe shell`'s `token revoke USER`).
using revoke_atom = caf::atom_constant<caf::atom("revoke")>;
/// `(audit_atom, std::string command, bool ok, std::string result)` from an
/// operator's shell to a node agent, after each command it ran: the node
/// records it in its audit trail with who sent it (`runtime/cluster/audit.hpp`).
using audit_atom = caf::atom_constant<caf::atom("audit")>;
/// `(audit_atom, who, from, source, command, ok, result)` from an actor of
/// the node's own process to its agent (the live page's console, for an
/// operator's action): recorded with the operator the caller authenticated.
/// Refused from any other sender.
/// `(console_atom, node, snapshot_json, relayed)`: a node's part of the live
/// page's cluster view, from its console to its news hub and from hub to
/// hub (`actors/websocket_broadcaster/console.hpp`).
using console_atom = caf::atom_constant<caf::atom("console")>;
/// `(console_command_atom, session, request_id, who, from, action, target)`:
/// an operator's action from the live page, from the gateway to its node's
/// console.
using console_command_atom = caf::atom_constant<caf::atom("consolecmd")>;
/// `(console_exec_atom, who, from, action, target) -> (bool acted, std::string
/// outcome)`: a node's console asks a peer's console (the `@console` entry
/// of its directory) for that node's part of `restart GROUP` or `kill
/// GROUP/INSTANCE`.
using console_exec_atom = caf::atom_constant<caf::atom("conexec")>;
/// `(heard_atom, std::string node) -> int64_t`: from one node's agent to a
/// peer's, when `node` has been silent on their link for the failure
/// timeout: how many milliseconds since the asked agent's own link last
/// carried bytes from `node` (-1 if it has none). A peer that still hears
/// `node` keeps it up (one lossy link does not make a member down).
/// Answered to trusted nodes only.
using heard_atom = caf::atom_constant<caf::atom("heard")>;
/// `(cut_atom, std::string node, int64_t rounds)`: a node agent to itself,
/// until CAF holds no link to a peer it declared down (at most `rounds`
/// more times). Ignored from any other sender.
using cut_atom = caf::atom_constant<caf::atom("cut")>;
/// `(dialed_atom, host, port)` from the tunnel's thread to the process's
/// secure middleman: a TLS connection it asked for is ready, or failed
/// (`runtime/cluster/secure_transport.cpp`). Carries no result: the
/// middleman takes that from the tunnel's own hand-over, so the message
/// proves nothing and is harmless from anyone else.
using dialed_atom = caf::atom_constant<caf::atom("dialed")>;

} // namespace troupe
