#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe {

/// JSON text appended to a string piece by piece, without building a
/// document: for records written once per event on the hot path (the
/// scored-event log, a transaction), where a `nlohmann::json` tree costs an
/// allocation per key and value and its dump a pass over the tree (3.3 µs
/// for a scored event against 0.4 µs). The caller writes the punctuation and
/// the keys; these write values that any JSON parser reads back exactly.

/// `s` as a JSON string, quoted: `"` and `\` escaped, control characters
/// as `\n`, `\t`, ... or `\u00XX`; every other byte as it is (the text is
/// UTF-8 already: it came from a parser that checked).
void append_json_string(std::string& out, std::string_view s);

/// `x` as the shortest JSON number that reads back as exactly `x`, with a
/// fraction or exponent so that it reads back as a floating-point number
/// (`3.0`, not `3`); `null` for NaN and the infinities, as
/// `nlohmann::json::dump` writes them.
void append_json_number(std::string& out, double x);

/// `x` as a JSON integer.
void append_json_number(std::string& out, int64_t x);

} // namespace troupe
