#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/log.hpp"
#include "runtime/kafka/client.hpp"

namespace troupe::kafka {

/// The JSON of a dead letter: `{"reason", "topic", "partition", "offset",
/// "key", "value", "value_base64"}` (key and value as read; bytes that are
/// not UTF-8 are replaced in "value", and "value_base64" keeps them all).
std::string dead_letter_json(const std::string& reason, const std::string& topic,
                             int32_t partition, int64_t offset, const std::string& key,
                             const std::string& value);

/// Logs that `who` sends record `r` to dead letters: a warning with the
/// reason, where the record was, and its event id (`event_id`), if `budget`
/// lets the line through; the first line after a held-back flood says how
/// many were not logged.
void log_dead_letter(const log_fn& log, log_budget& budget, const std::string& who,
                     const std::string& reason, const record& r);

} // namespace troupe::kafka
