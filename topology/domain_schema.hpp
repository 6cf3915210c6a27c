#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace troupe::topology {

// -- a domain's settings ---------------------------------------------------------

/// The type of one domain setting, as the topology file writes it.
enum class setting_type : uint8_t {
  /// A TOML string.
  string,
  /// A TOML integer.
  integer,
  /// A TOML integer or float.
  number,
  /// A TOML string with a unit: `"250ms"`, `"10s"`, `"168h"`.
  duration,
  /// A TOML boolean.
  boolean,
};

/// What a file must write for `x`, for messages ("an integer").
const char* to_string(setting_type x);

/// One key of a group's `settings = {...}`: its type, default, bounds and
/// meaning. Bounds are inclusive; a duration's are in milliseconds.
struct setting_spec {
  std::string key;
  setting_type type = setting_type::string;
  /// The default, as the file would write it (`"10s"`, `"0.5"`, `"fraud-alerts"`).
  std::string fallback;
  std::optional<double> min;
  std::optional<double> max;
  /// A string that may be empty (most name something and may not).
  bool may_be_empty = false;
  /// One line for people (`troupe check --domains`, the topology README).
  std::string doc;
};

/// A group's domain settings after the parser: every key of the schema, as
/// text, the file's value or the default.
using settings_map = std::map<std::string, std::string>;

/// A key and what is wrong with it.
struct setting_problem {
  std::string key;
  std::string problem;
};

/// What the topology file may say of a group of one domain: its name, the
/// fallbacks it declares and the schema of its settings. Owned by the
/// domain's registration (`runtime/node/domain.hpp`); the parser and
/// `troupe check` validate every `settings = {...}` against it.
struct domain_schema {
  std::string name;
  /// Fallback names the domain declares, besides `"none"`.
  std::vector<std::string> fallbacks;
  std::vector<setting_spec> settings;
  /// Checks that the settings make sense together, once each is valid on
  /// its own (optional).
  std::function<std::optional<setting_problem>(const settings_map&)> check_together;

  /// The spec of `key`, or null.
  const setting_spec* find(const std::string& key) const;

  /// Every key with its default.
  settings_map defaults() const;

  /// Checks `settings`: every key known, each value of its type and within
  /// its bounds, then the domain's own check. Returns the first problem.
  std::optional<setting_problem> validate(const settings_map& settings) const;
};

/// Checks one value, as text, against its spec: the problem, or nothing.
std::optional<std::string> check(const setting_spec& spec, const std::string& text);

/// Every registered domain's schema, in a fixed order.
using domain_schemas = std::vector<domain_schema>;

} // namespace troupe::topology
