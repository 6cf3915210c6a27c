#include "topology/domain_schema.hpp"

#include <cmath>
#include <cstdlib>
#include <set>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"

namespace troupe::topology {

const char* to_string(setting_type x) {
  switch (x) {
    case setting_type::string: return "a string";
    case setting_type::integer: return "an integer";
    case setting_type::number: return "a number";
    case setting_type::duration: return "a duration string such as \"500ms\"";
    case setting_type::boolean: return "a boolean";
  }
  return "?";
}

const setting_spec* domain_schema::find(const std::string& key) const {
  for (auto& s : settings)
    if (s.key == key)
      return &s;
  return nullptr;
}

settings_map domain_schema::defaults() const {
  settings_map result;
  for (auto& s : settings)
    result[s.key] = s.fallback;
  return result;
}

namespace {

std::string show(double x) {
  if (x == std::floor(x) && std::fabs(x) < 1e15)
    return std::to_string(static_cast<long long>(x));
  auto text = std::to_string(x);
  while (!text.empty() && text.back() == '0')
    text.pop_back();
  return text;
}

std::string show_bound(const setting_spec& spec, double x) {
  if (spec.type == setting_type::duration)
    return to_duration_string(std::chrono::milliseconds(static_cast<int64_t>(x)));
  return show(x);
}

} // namespace

std::optional<std::string> check(const setting_spec& spec, const std::string& text) {
  double value = 0;
  switch (spec.type) {
    case setting_type::string:
      if (text.empty() && !spec.may_be_empty)
        return std::string{"must not be empty"};
      return std::nullopt;
    case setting_type::boolean:
      if (text != "true" && text != "false")
        return "expected a boolean, got '" + text + "'";
      return std::nullopt;
    case setting_type::duration: {
      auto d = parse_duration(text);
      if (!d)
        return render(d.error()).substr(sizeof("invalid_argument: ") - 1);
      value = static_cast<double>(
        std::chrono::duration_cast<std::chrono::milliseconds>(*d).count());
      break;
    }
    case setting_type::integer:
    case setting_type::number: {
      char* end = nullptr;
      value = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value))
        return std::string{"expected "} + to_string(spec.type) + ", got '" + text + "'";
      if (spec.type == setting_type::integer && value != std::floor(value))
        return "expected an integer, got '" + text + "'";
      break;
    }
  }
  auto range = [&] {
    return std::string{" ("} + (spec.min ? "at least " + show_bound(spec, *spec.min) : "")
           + (spec.min && spec.max ? ", " : "")
           + (spec.max ? "at most " + show_bound(spec, *spec.max) : "") + ")";
  };
  if ((spec.min && value < *spec.min) || (spec.max && value > *spec.max))
    return text + " is out of range" + range();
  return std::nullopt;
}

std::optional<setting_problem> domain_schema::validate(const settings_map& xs) const {
  for (auto& [key, text] : xs) {
    auto spec = find(key);
    if (!spec) {
      std::set<std::string> keys;
      for (auto& s : settings)
        keys.insert(s.key);
      std::string known;
      for (auto& k : keys)
        known += (known.empty() ? "" : ", ") + k;
      return setting_problem{key, "unknown setting of " + name + " (known: "
                                    + (known.empty() ? "none" : known) + ")"};
    }
    if (auto problem = check(*spec, text))
      return setting_problem{key, *problem};
  }
  if (check_together)
    return check_together(xs);
  return std::nullopt;
}

} // namespace troupe::topology
