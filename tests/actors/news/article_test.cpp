// The articles topic's JSON: what is accepted, and the reason each kind of
// bad article carries to the dead letters.

#include "actors/news/article.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"

using namespace troupe;

namespace {

const std::string good = R"({"schema":1,"id":"a-1","headline":"Storm closes the port",)"
                         R"("category":"weather","bias":0.25,"published_at":1767225600000,)"
                         R"("breaking":true})";

std::string reason(const std::string& bytes) {
  auto a = news::parse_article(bytes);
  REQUIRE(!a);
  return render(a.error());
}

std::string with(const std::string& field, const std::string& value) {
  auto j = nlohmann::json::parse(good);
  j[field] = nlohmann::json::parse(value);
  return j.dump();
}

std::string without(const std::string& field) {
  auto j = nlohmann::json::parse(good);
  j.erase(field);
  return j.dump();
}

} // namespace

TEST_CASE("a well-formed article parses with every field") {
  auto a = news::parse_article(good);
  REQUIRE(a);
  CHECK(a->id == "a-1");
  CHECK(a->headline == "Storm closes the port");
  CHECK(a->category == "weather");
  CHECK(a->bias == 0.25);
  CHECK(a->published_ms == 1767225600000);
  CHECK(a->breaking);
}

TEST_CASE("an article written by to_json reads back the same") {
  auto a = news::parse_article(good);
  REQUIRE(a);
  auto b = news::parse_article(news::to_json(*a));
  REQUIRE(b);
  CHECK(b->id == a->id);
  CHECK(b->headline == a->headline);
  CHECK(b->bias == a->bias);
  CHECK(b->published_ms == a->published_ms);
  CHECK(b->breaking == a->breaking);
}

TEST_CASE("breaking is optional and false by default") {
  auto a = news::parse_article(without("breaking"));
  REQUIRE(a);
  CHECK(!a->breaking);
}

TEST_CASE("each kind of bad article names its problem") {
  CHECK(reason("{nope") == "invalid_argument: not valid JSON");
  CHECK(reason("[1]").find("not a JSON object") != std::string::npos);
  CHECK(reason(without("schema")).find("missing field 'schema'") != std::string::npos);
  CHECK(reason(with("schema", "2")).find("unsupported schema 2") != std::string::npos);
  CHECK(reason(without("id")).find("missing field 'id'") != std::string::npos);
  CHECK(reason(with("id", "\"\"")).find("'id' must have 1 to 128 bytes") != std::string::npos);
  CHECK(reason(with("headline", "7")).find("'headline' must be a string") != std::string::npos);
  CHECK(reason(with("category", "\"Sport\"")).find("lower case") != std::string::npos);
  CHECK(reason(with("bias", "1.5")).find("'bias' must be from 0 to 1") != std::string::npos);
  CHECK(reason(with("bias", "\"left\"")).find("'bias' must be a number") != std::string::npos);
  CHECK(reason(with("published_at", "\"2026-01-01\"")).find("Unix milliseconds")
        != std::string::npos);
  CHECK(reason(with("breaking", "1")).find("true or false") != std::string::npos);
  CHECK(reason(std::string(20000, ' ')).find("too large") != std::string::npos);
}

TEST_CASE("an article dated past the allowed skew into the future is refused, one within it "
          "is taken") {
  // An article dated at T, a bound at T + 1 s, and one dated at T + 5 s.
  auto a = news::parse_article(with("published_at", "1763800000000"), 16 * 1024,
                               1763800001000);
  CHECK(a);
  auto later = news::parse_article(with("published_at", "1763800005000"), 16 * 1024,
                                   1763800001000);
  REQUIRE(!later);
  CHECK(render(later.error()).find("4000 ms past the allowed clock skew into the future")
        != std::string::npos);
  // Without a bound (0), any date is taken.
  CHECK(news::parse_article(with("published_at", "99999999999999")));
}
