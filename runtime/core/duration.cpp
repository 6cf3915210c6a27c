#include "runtime/core/duration.hpp"

#include <regex>

#include "runtime/core/error.hpp"

namespace troupe {

caf::expected<caf::timespan> parse_duration(const std::string& text) {
  static const std::regex pattern{R"(^(\d{1,12})(us|ms|s|m|h)?$)"};
  std::smatch m;
  if (!std::regex_match(text, m, pattern))
    return caf::make_error(ec::invalid_argument,
                           "bad duration '" + text + "' (use e.g. 250ms, 2s, 1m)");
  auto n = std::stoll(m[1]);
  auto unit = m[2].str();
  if (unit.empty()) {
    if (n != 0)
      return caf::make_error(ec::invalid_argument, "duration '" + text + "' needs a unit");
    return caf::timespan{0};
  }
  // At most 100,000 hours (about 11 years), so that no unit overflows the
  // 64-bit nanoseconds it becomes, nor a deadline computed from it.
  constexpr int64_t max_ns = int64_t{100000} * 3600 * 1000000000;
  int64_t unit_ns = unit == "us"   ? 1000
                    : unit == "ms" ? 1000000
                    : unit == "s"  ? 1000000000
                    : unit == "m"  ? int64_t{60} * 1000000000
                                   : int64_t{3600} * 1000000000;
  if (n > max_ns / unit_ns)
    return caf::make_error(ec::invalid_argument,
                           "duration '" + text + "' is too long (at most 100000h)");
  return caf::timespan{n * unit_ns};
}

std::string to_duration_string(caf::timespan x) {
  using namespace std::chrono;
  auto ns = x.count();
  if (ns == 0)
    return "0";
  struct unit { int64_t ns; const char* name; };
  for (auto u : {unit{3600000000000, "h"}, unit{60000000000, "m"}, unit{1000000000, "s"},
                 unit{1000000, "ms"}, unit{1000, "us"}})
    if (ns % u.ns == 0)
      return std::to_string(ns / u.ns) + u.name;
  return std::to_string(ns) + "ns";
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace troupe
