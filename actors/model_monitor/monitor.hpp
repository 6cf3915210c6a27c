#pragma once

#include <chrono>
#include <set>
#include <string>

#include "runtime/core/log.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::monitor {

/// Settings of the `model-monitor` group.
struct monitor_settings {
  std::string kafka;
  std::string node;
  /// The scored-event log (the alerter's `scores_topic`).
  std::string scores_topic = "fraud-scores";
  /// Labels: `{"schema":1,"transaction":ID,"label":"fraud"|"legit","at":ms}`.
  std::string feedback_topic = "fraud-feedback";
  /// Where `drift_detected` and `quality_dropped` records go.
  std::string events_topic = "model-events";
  /// Where a malformed label goes, with its reason.
  std::string dead_letter_topic = "dead-letters";
  /// The training reference of the model in use (`MODEL.reference.json`).
  std::string reference;
  /// The sliding window every figure covers.
  std::chrono::milliseconds window{10 * 60 * 1000};
  /// A feature whose PSI reaches this in a window of at least `min_events`
  /// scores of a model is drift.
  double psi_threshold = 0.25;
  uint64_t min_events = 500;
  /// Features whose PSI is shown but not judged: a cyclic one (the hour)
  /// concentrates in any window shorter than its cycle.
  std::set<std::string> skip_features{"hour_of_day"};
  /// Recall under this, over at least `min_labels` labelled frauds in the
  /// window, is a quality drop (0: not judged).
  double recall_threshold = 0;
  uint64_t min_labels = 50;
  /// How long a score waits for its label (and a label for its score).
  std::chrono::milliseconds label_horizon{60 * 60 * 1000};
  /// At most this many scores wait for labels (the oldest go first).
  size_t max_waiting = 500000;
  /// A candidate on trial is judged once it has this many labelled scores
  /// since the trial began, `canary_min_fraud` of them fraud (and the
  /// model in use as many labelled frauds over the same time).
  uint64_t canary_labels = 300;
  uint64_t canary_min_fraud = 30;
  /// The candidate holds when its AUC, recall and precision are each at
  /// least the model in use's minus this; it is then promoted, else rolled
  /// back.
  double canary_tolerance = 0.05;
  /// Judge trials by themselves (false: only operators promote and roll
  /// back).
  bool auto_promote = true;
  log_fn log;
};

/// The `model-monitor` group: one detached worker (declare `instances = 1`:
/// a label must meet its score) in the Kafka consumer group
/// `troupe.<group>`, reading the scored-event log and the labels.
///
/// Per model version, over a sliding `window` (ten slices): the scores'
/// distribution and alert rate, each feature's population stability index
/// against the model's training reference, and, joining each label with
/// its score (waiting up to `label_horizon` either way), precision and
/// recall of the alerts and the AUC of the scores. Every second it sets
/// them as gauges (`troupe_model_*{model}`) and judges them: a feature's
/// PSI reaching `psi_threshold` (over `min_events` scores) produces a
/// `drift_detected` record on `events_topic` and a warning; recall under
/// `recall_threshold` (over `min_labels` labelled frauds) a
/// `quality_dropped` one. Each once per crossing, per feature for drift
/// (again after the figure went back under 80 % of its threshold). A malformed label goes to
/// `dead_letter_topic` with its reason, confirmed before its offset is
/// committed. `(model_quality_atom)` answers the view as JSON.
///
/// It also decides the cluster's model roll-out (`actors/fraud_detector/
/// rollout.hpp`), which every fraud-detector follows: `(model_canary_atom,
/// path, share, mode)` puts a candidate on trial, `(model_promote_atom,
/// version)` and `(model_rollback_atom, version)` end it (or return to the
/// model before the one in use), `(model_rollout_atom)` answers it with
/// the trial's figures. Each change is a record on `events_topic` (key
/// `rollout`: `canary_started`, `model_promoted`, `model_rolled_back`,
/// with the whole roll-out), confirmed by Kafka before it takes effect; a
/// worker started again reads the latest back before it answers. With
/// `auto_promote`, a trial is judged on the labels of the scores made
/// since it began (shadow scores count for the candidate): promoted when
/// its quality holds against the model in use, rolled back otherwise.
group_spec make_group(const std::string& name, size_t instances, monitor_settings settings);

/// The `model-monitor` domain's registration (actors/domains.cpp).
troupe::domain domain_entry();

} // namespace troupe::monitor
