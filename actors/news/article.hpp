#pragma once

#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "runtime/core/messages.hpp"

namespace troupe::news {

/// The version of the article JSON this build reads and writes.
constexpr int article_schema = 1;

/// Parses one record of the `articles` topic, schema 1:
///
///     {"schema": 1, "id": "a-1", "headline": "...", "category": "politics",
///      "bias": 0.35, "published_at": 1763800000000, "breaking": false}
///
/// `id` (1 to 128 bytes) and `headline` (1 to 1,000 bytes) are non-empty
/// strings; `category` is 1 to 32 of `[a-z0-9_-]`; `bias` a number from 0
/// (left) to 1 (right); `published_at` Unix milliseconds (an integer);
/// `breaking` a boolean (default false). Other fields are ignored. The error
/// names the first problem, for the dead letter. With `not_after_ms` > 0, an
/// article published after it (Unix ms: now plus the allowed clock skew) is
/// refused: dated in the future, it would top every feed for as long.
caf::expected<article> parse_article(std::string_view bytes, size_t max_bytes = 16 * 1024,
                                     int64_t not_after_ms = 0);

/// The article as schema-1 JSON (what `parse_article` reads back).
std::string to_json(const article& a);

} // namespace troupe::news
