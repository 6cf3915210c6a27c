#include "runtime/supervision/spec.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "runtime/core/error.hpp"

namespace troupe {

namespace {

caf::error invalid(const std::string& what) {
  return caf::make_error(ec::invalid_spec, what);
}

/// Returns what is wrong with `x`, or an empty string.
std::string child_problem(const child_spec& x) {
  if (x.name.empty())
    return "child spec without a name";
  if (!x.start)
    return "child '" + x.name + "' has no start function";
  if (!x.shutdown.brutal_kill && !x.shutdown.infinity
      && x.shutdown.timeout <= caf::timespan{0})
    return "child '" + x.name
           + "' has a shutdown timeout of zero or less (use brutal kill instead)";
  return {};
}

} // namespace

caf::error validate(const child_spec& x) {
  auto problem = child_problem(x);
  return problem.empty() ? caf::error{} : invalid(problem);
}

caf::error validate(const supervisor_spec& x) {
  if (x.name.empty())
    return invalid("supervisor spec without a name");
  auto where = "supervisor '" + x.name + "': ";
  if (x.intensity < 0)
    return invalid(where + "negative restart intensity " + std::to_string(x.intensity));
  if (x.period <= caf::timespan{0})
    return invalid(where + "restart period must be positive");
  if (x.children.empty() && !x.dynamic)
    return invalid(where + "no children (set dynamic for a supervisor whose children arrive "
                           "at run time)");
  if (x.crash_history == 0)
    return invalid(where + "crash history must keep at least one entry");
  if (x.backoff) {
    auto& b = *x.backoff;
    if (b.min <= caf::timespan{0})
      return invalid(where + "backoff min must be positive");
    if (b.max < b.min)
      return invalid(where + "backoff max is below backoff min");
    if (!(b.jitter >= 0.0 && b.jitter < 1.0))
      return invalid(where + "backoff jitter must be in [0, 1)");
    if (b.reset_after <= caf::timespan{0})
      return invalid(where + "backoff reset_after must be positive");
  }
  std::set<std::string> names;
  for (auto& c : x.children) {
    if (auto problem = child_problem(c); !problem.empty())
      return invalid(where + problem);
    if (!names.insert(c.name).second)
      return invalid(where + "duplicate child name '" + c.name + "'");
  }
  return caf::none;
}

caf::timespan backoff_delay(const backoff_spec& x, uint32_t attempt, double unit_random) {
  // Double in floating point so that large attempts saturate instead of overflowing.
  auto base = static_cast<double>(x.min.count()) * std::pow(2.0, std::min(attempt, 62u));
  base = std::min(base, static_cast<double>(x.max.count()));
  auto factor = 1.0 + x.jitter * (2.0 * unit_random - 1.0);
  auto result = static_cast<int64_t>(base * factor);
  return caf::timespan{std::max<int64_t>(result, 0)};
}

const char* to_string(restart_type x) {
  switch (x) {
    case restart_type::permanent: return "permanent";
    case restart_type::transient: return "transient";
    case restart_type::temporary: return "temporary";
  }
  return "?";
}

const char* to_string(strategy x) {
  switch (x) {
    case strategy::one_for_one: return "one_for_one";
    case strategy::one_for_all: return "one_for_all";
    case strategy::rest_for_one: return "rest_for_one";
  }
  return "?";
}

} // namespace troupe
