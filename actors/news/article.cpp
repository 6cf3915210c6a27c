#include "actors/news/article.hpp"

#include <cmath>
#include <regex>

#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"
#include "runtime/kafka/record_json.hpp"

namespace troupe::news {

namespace {

caf::error bad(std::string why) {
  return caf::make_error(ec::invalid_argument, std::move(why));
}

/// A string field of 1 to `max` bytes.
caf::expected<std::string> text(const nlohmann::json& j, const char* name, size_t max) {
  auto i = j.find(name);
  if (i == j.end())
    return bad(std::string{"missing field '"} + name + "'");
  if (!i->is_string())
    return bad(std::string{"field '"} + name + "' must be a string");
  auto s = i->get<std::string>();
  if (s.empty() || s.size() > max)
    return bad(std::string{"field '"} + name + "' must have 1 to " + std::to_string(max)
               + " bytes");
  return s;
}

} // namespace

caf::expected<article> parse_article(std::string_view bytes, size_t max_bytes,
                                     int64_t not_after_ms) {
  auto parsed = kafka::parse_record_json(bytes, max_bytes, article_schema);
  if (!parsed)
    return parsed.error();
  auto& j = *parsed;
  article a;
  auto id = text(j, "id", 128);
  if (!id)
    return id.error();
  a.id = std::move(*id);
  auto headline = text(j, "headline", 1000);
  if (!headline)
    return headline.error();
  a.headline = std::move(*headline);
  auto category = text(j, "category", 32);
  if (!category)
    return category.error();
  static const std::regex pattern{"^[a-z0-9_-]+$"};
  if (!std::regex_match(*category, pattern))
    return bad("field 'category' must be lower case letters, digits, '_' or '-'");
  a.category = std::move(*category);
  auto bias = j.find("bias");
  if (bias == j.end())
    return bad("missing field 'bias'");
  if (!bias->is_number())
    return bad("field 'bias' must be a number");
  a.bias = bias->get<double>();
  if (!std::isfinite(a.bias) || a.bias < 0 || a.bias > 1)
    return bad("field 'bias' must be from 0 to 1");
  auto published = j.find("published_at");
  if (published == j.end())
    return bad("missing field 'published_at'");
  if (!published->is_number_integer())
    return bad("field 'published_at' must be an integer (Unix milliseconds)");
  a.published_ms = published->get<int64_t>();
  if (a.published_ms <= 0)
    return bad("field 'published_at' must be positive");
  if (not_after_ms > 0 && a.published_ms > not_after_ms)
    return bad("field 'published_at' is " + std::to_string(a.published_ms - not_after_ms)
               + " ms past the allowed clock skew into the future");
  auto breaking = j.find("breaking");
  if (breaking != j.end()) {
    if (!breaking->is_boolean())
      return bad("field 'breaking' must be true or false");
    a.breaking = breaking->get<bool>();
  }
  return a;
}

std::string to_json(const article& a) {
  nlohmann::json j{{"schema", article_schema}, {"id", a.id},
                   {"headline", a.headline},   {"category", a.category},
                   {"bias", a.bias},           {"published_at", a.published_ms},
                   {"breaking", a.breaking}};
  return j.dump();
}

} // namespace troupe::news
