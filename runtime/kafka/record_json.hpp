#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace troupe::kafka {

/// The JSON object of one record whose field `schema` must be `schema`. The
/// error names the first problem, for the dead letter: `too large: N bytes
/// (limit M)`, `not valid JSON`, `not a JSON object`, `missing field
/// 'schema'`, `field 'schema' must be an integer`, `unsupported schema N`.
caf::expected<nlohmann::json> parse_record_json(std::string_view bytes, size_t max_bytes,
                                                int schema);

/// The event id for the logs of a record that may be malformed: its JSON's
/// string `id` (at most 128 bytes), else `topic/partition@offset`.
std::string event_id(std::string_view bytes, const std::string& topic, int32_t partition,
                     int64_t offset);

} // namespace troupe::kafka
