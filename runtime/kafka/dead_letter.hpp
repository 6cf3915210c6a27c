#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/log.hpp"
#include "runtime/kafka/client.hpp"

namespace troupe::kafka {

/// The largest dead letter written whole: well below the 1 MB Kafka takes
/// by default (`message.max.bytes`), framing included.
constexpr size_t max_dead_letter_bytes = 512 * 1024;

/// How many bytes of the value a truncated dead letter keeps.
constexpr size_t dead_letter_head_bytes = 1024;

/// The JSON of a dead letter: `{"reason", "topic", "partition", "offset",
/// "key", "value", "value_base64"}` (key and value as read; bytes that are
/// not UTF-8 are replaced in "value", and "value_base64" keeps them all).
///
/// A letter that would be larger than `max_bytes` can never reach the topic
/// whole, and an event whose dead letter never arrives would hold back its
/// partition's commits for ever. It is written truncated instead:
/// `{"reason", "topic", "partition", "offset", "key", "truncated": true,
/// "size", "sha256", "value_head", "value_head_base64"}`: the value's size
/// and SHA-256 (hex), and its first `dead_letter_head_bytes` bytes (the key
/// likewise cut to that many).
std::string dead_letter_json(const std::string& reason, const std::string& topic,
                             int32_t partition, int64_t offset, const std::string& key,
                             const std::string& value,
                             size_t max_bytes = max_dead_letter_bytes);

/// Logs that `who` sends record `r` to dead letters: a warning with the
/// reason, where the record was, and its event id (`event_id`), if `budget`
/// lets the line through; the first line after a held-back flood says how
/// many were not logged.
void log_dead_letter(const log_fn& log, log_budget& budget, const std::string& who,
                     const std::string& reason, const record& r);

} // namespace troupe::kafka
