#pragma once

#include <chrono>
#include <functional>
#include <string>

#include <caf/actor.hpp>

#include "runtime/core/log.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::trainer {

/// Settings of the `model-trainer` group.
struct trainer_settings {
  std::string kafka;
  std::string node;
  /// The model in use, which a candidate must do at least as well as on the
  /// held-out slice (the fraud-detector's `model`).
  std::string model = "actors/fraud_detector/model/fraud.json";
  /// Where registered models go: `REGISTRY/VERSION/{model.json,
  /// reference.json, meta.json}`.
  std::string registry = ".troupe-state/models";
  std::string scores_topic = "fraud-scores";
  std::string feedback_topic = "fraud-feedback";
  std::string events_topic = "model-events";
  /// The scored events (and labels) a training set is drawn from.
  std::chrono::milliseconds window{24 * 3600 * 1000};
  /// A training needs at least this many labelled scores, this many frauds.
  size_t min_rows = 500;
  size_t min_fraud = 20;
  /// Percent of the labelled scores held out (by a hash of the id) to
  /// compare the candidate with the model in use.
  uint32_t holdout = 20;
  int rounds = 150;
  /// The alert threshold, for the precision and recall reported.
  double threshold = 0.5;
  /// Train when the model-monitor reports drift or a quality drop, at most
  /// once per `cooldown`.
  bool on_drift = true;
  std::chrono::milliseconds cooldown{10 * 60 * 1000};
  /// Train every this often (0: only on demand and on drift).
  std::chrono::milliseconds every{0};
  std::string version_prefix = "fraud";
  /// A registered candidate goes on trial at once: `split` for this percent
  /// of the users, or `shadow` (0 with split: registered only).
  uint32_t canary_share = 0;
  std::string canary_mode = "split";
  /// Reaches the model-monitor, which holds the model roll-out.
  std::function<caf::actor(const std::string& domain)> router_of;
  log_fn log;
};

/// The `model-trainer` group: one detached worker (declare `instances = 1`)
/// that trains fraud models with libxgboost's C API, no Python at run time.
///
/// A training draws the scored-event log and the labels of the last
/// `window`, joins them by transaction id, holds out `holdout` percent (by
/// a hash of the id), trains on the rest with the checked-in model's
/// parameters, and compares the candidate with the model in use on the
/// held-out slice. A candidate whose AUC is at least the current one's is
/// registered: `REGISTRY/VERSION/model.json`, its training reference
/// (`reference.json`, for the model-monitor), and `meta.json` (SHA-256,
/// both models' figures on the held-out slice, rows, reason, time), and a
/// `model_registered` record on `events_topic`; otherwise `model_rejected`.
/// The model in use is the roll-out's (asked of the model-monitor), else
/// `model`. A registered candidate goes on trial when `canary_share` (or
/// `canary_mode = shadow`) says so: the model-monitor then promotes it on
/// its measured quality or rolls it back.
///
/// Triggers: `(model_train_atom)` (the shell's `model train`, answered
/// with the outcome as JSON); a `drift_detected` or `quality_dropped` record
/// on `events_topic` (read in the consumer group `troupe.<group>`), at most
/// once per `cooldown`; and `every`, when set.
group_spec make_group(const std::string& name, size_t instances, trainer_settings settings);

/// The `model-trainer` domain's registration (actors/domains.cpp).
troupe::domain domain_entry();

} // namespace troupe::trainer
