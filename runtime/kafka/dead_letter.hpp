#pragma once

#include <cstdint>
#include <string>

namespace troupe::kafka {

/// The JSON of a dead letter: `{"reason", "topic", "partition", "offset",
/// "key", "value", "value_base64"}` (key and value as read; bytes that are
/// not UTF-8 are replaced in "value", and "value_base64" keeps them all).
std::string dead_letter_json(const std::string& reason, const std::string& topic,
                             int32_t partition, int64_t offset, const std::string& key,
                             const std::string& value);

} // namespace troupe::kafka
