#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "runtime/core/messages.hpp"

namespace troupe::ingest {

/// The schema version this build reads and writes.
constexpr int transaction_schema = 1;

/// Events larger than this go to the dead letters unread.
constexpr size_t default_max_event_bytes = 64 * 1024;

/// Parses one event of the `transactions` topic:
///
/// ```json
/// {"schema": 1, "id": "t-1", "user": "u-7", "amount": 12.5, "currency": "EUR",
///  "merchant": "m-42", "category": "grocery", "country": "DE", "device": "d-1",
///  "timestamp": 1767225600000}
/// ```
///
/// `timestamp` is Unix time in milliseconds. Unknown fields are ignored (a
/// newer producer may add some). The error's text is the reason the dead
/// letter carries: `too large: 70000 bytes (limit 65536)`, `not valid JSON:
/// ...`, `missing field 'user'`, `field 'amount' must be a number`,
/// `unsupported schema 2`, `field 'amount' must be finite and not negative`.
caf::expected<transaction> parse_transaction(std::string_view bytes,
                                             size_t max_bytes = default_max_event_bytes);

/// The JSON of `tx` (schema 1), as `parse_transaction` reads it.
std::string to_json(const transaction& tx);

} // namespace troupe::ingest
