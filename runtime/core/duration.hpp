#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

namespace troupe {

/// Parses a duration as written in cluster.conf and on command lines:
/// a whole number with a unit, `us`, `ms`, `s`, `m` or `h` ("250ms", "2s");
/// a bare "0" means zero. An error names the bad text.
caf::expected<caf::timespan> parse_duration(const std::string& text);

/// Renders a duration in the largest unit that divides it ("1500ms", "2s").
std::string to_duration_string(caf::timespan x);

/// The wall clock as Unix milliseconds (for timestamps other processes read).
int64_t unix_ms();

} // namespace troupe
