#pragma once

#include <cstddef>
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

} // namespace troupe::kafka
