#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace troupe::fraud {

/// How a candidate model runs beside the model in use.
enum class canary_mode : uint8_t {
  /// It scores the transactions of `share` percent of the users (by a hash
  /// of the user id); its scores decide their alerts.
  split,
  /// It scores every transaction beside the model in use; only the model
  /// in use decides alerts, the candidate's score goes to the scored-event
  /// log as `shadow`.
  shadow,
};

/// The cluster's model roll-out: the model in use and the candidate on
/// trial, as the model-monitor decides it and every fraud-detector follows
/// it. Each change has a higher `generation`; the latest is kept as a
/// record on the model-events topic, so it outlives every process.
struct rollout {
  uint64_t generation = 0;
  /// The model in use (empty path: each fraud-detector's configured one).
  std::string current_model;
  std::string current_path;
  /// The model in use before the last promotion (what `rollback` of the
  /// current one returns to; empty path: the configured one).
  std::string previous_model;
  std::string previous_path;
  /// The candidate on trial (empty path: none).
  std::string candidate_model;
  std::string candidate_path;
  uint32_t share = 0;
  canary_mode mode = canary_mode::split;
  /// When the trial began (Unix ms): labels of earlier scores do not count.
  int64_t started_at = 0;

  bool has_candidate() const {
    return !candidate_path.empty();
  }

  /// `{"schema":1,"generation","current":{"model","path"},"previous":{...},
  /// "candidate":{"model","path","share","mode","started_at"}|null}`.
  nlohmann::json to_json() const;

  /// The roll-out in `j`; an error names what is wrong.
  static caf::expected<rollout> from_json(const nlohmann::json& j);
};

/// "split" or "shadow".
const char* to_string(canary_mode x);

/// Parses "split" or "shadow".
caf::expected<canary_mode> parse_canary_mode(const std::string& text);

/// Whether `user`'s transactions are scored by the candidate in a split of
/// `share` percent: FNV-1a of `"model-canary:" + user`, mod 100, under
/// `share`. The same on every node, and independent of the ranking's
/// variants and of the routing by user.
bool in_canary(const std::string& user, uint32_t share);

} // namespace troupe::fraud
