// The transactions topic's JSON: what is accepted, and the reason each kind
// of bad event carries to the dead letters.

#include "actors/ingestor/transaction_json.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"

using namespace troupe;

namespace {

const std::string good = R"({"schema":1,"id":"t-1","user":"u-7","amount":12.5,"currency":"EUR",)"
                         R"("merchant":"m-42","category":"grocery","country":"DE","device":"d-1",)"
                         R"("timestamp":1767225600000})";

std::string reason(const std::string& bytes, size_t limit = ingest::default_max_event_bytes) {
  auto tx = ingest::parse_transaction(bytes, limit);
  REQUIRE(!tx);
  return render(tx.error());
}

/// `good` with `field` set to the JSON `value`.
std::string with(const std::string& field, const std::string& value) {
  auto j = nlohmann::json::parse(good);
  j[field] = nlohmann::json::parse(value);
  return j.dump();
}

/// `good` without `field`.
std::string without(const std::string& field) {
  auto j = nlohmann::json::parse(good);
  j.erase(field);
  return j.dump();
}

} // namespace

TEST_CASE("a valid transaction is read field by field and written back the same") {
  auto tx = ingest::parse_transaction(good);
  REQUIRE(tx);
  CHECK(tx->id == "t-1");
  CHECK(tx->user == "u-7");
  CHECK(tx->amount == 12.5);
  CHECK(tx->currency == "EUR");
  CHECK(tx->merchant == "m-42");
  CHECK(tx->category == "grocery");
  CHECK(tx->country == "DE");
  CHECK(tx->device == "d-1");
  CHECK(tx->timestamp == 1767225600000);
  auto again = ingest::parse_transaction(ingest::to_json(*tx));
  REQUIRE(again);
  CHECK(again->id == tx->id);
  CHECK(again->amount == tx->amount);
  CHECK(again->timestamp == tx->timestamp);
  // Unknown fields are ignored: a newer producer may add some.
  CHECK(ingest::parse_transaction(good.substr(0, good.size() - 1) + R"(,"extra":[1,2]})"));
}

TEST_CASE("a transaction written as text reads back as the same document and the same transaction, whatever its strings") {
  std::vector<std::string> odd{"t-1", "quote \" backslash \\", "line\nbreak\ttab", "Zürich 東京",
                               std::string{"nul\0byte", 8}, "\x01\x1f"};
  for (size_t n = 0; n < 600; ++n) {
    troupe::transaction tx;
    tx.id = odd[n % odd.size()] + std::to_string(n);
    tx.user = odd[(n / 2) % odd.size()] + "u";
    tx.amount = n % 5 == 0 ? static_cast<double>(n) : 0.01 * static_cast<double>(n * 7919 % 100003);
    tx.currency = "EUR";
    tx.merchant = odd[(n / 3) % odd.size()];
    tx.category = "grocery";
    tx.country = odd[(n / 5) % odd.size()];
    tx.device = "d-" + std::to_string(n);
    tx.timestamp = 1767225600000 + static_cast<int64_t>(n);
    auto text = ingest::to_json(tx);
    // The document nlohmann::json wrote before, key for key.
    nlohmann::json expected{{"schema", ingest::transaction_schema}, {"id", tx.id},
                            {"user", tx.user}, {"amount", tx.amount},
                            {"currency", tx.currency}, {"merchant", tx.merchant},
                            {"category", tx.category}, {"country", tx.country},
                            {"device", tx.device}, {"timestamp", tx.timestamp}};
    CHECK_MESSAGE(nlohmann::json::parse(text) == expected, text);
    auto again = ingest::parse_transaction(text);
    REQUIRE_MESSAGE(again, text);
    CHECK(again->id == tx.id);
    CHECK(again->user == tx.user);
    CHECK(again->merchant == tx.merchant);
    CHECK(again->country == tx.country);
    CHECK(again->amount == tx.amount);
    CHECK(again->timestamp == tx.timestamp);
  }
}

TEST_CASE("each kind of bad event gets its own reason") {
  CHECK(reason("{\"schema\":1,") .find("not valid JSON") != std::string::npos);
  CHECK(reason("\xff\xfe garbage").find("not valid JSON") != std::string::npos);
  CHECK(reason("[1,2,3]").find("not a JSON object") != std::string::npos);
  CHECK(reason(without("user")).find("missing field 'user'") != std::string::npos);
  CHECK(reason(without("timestamp")).find("missing field 'timestamp'") != std::string::npos);
  CHECK(reason(with("amount", "\"12.5\"")).find("field 'amount' must be a number")
        != std::string::npos);
  CHECK(reason(with("amount", "-3")).find("must be finite and not negative") != std::string::npos);
  CHECK(reason(with("user", "7")).find("field 'user' must be a string") != std::string::npos);
  CHECK(reason(with("timestamp", "1.5")).find("field 'timestamp' must be an integer")
        != std::string::npos);
  CHECK(reason(with("schema", "2")).find("unsupported schema 2") != std::string::npos);
  CHECK(reason(with("id", "\"\"")).find("field 'id' must not be empty") != std::string::npos);
  CHECK(reason(good, 100).find("too large: " + std::to_string(good.size()) + " bytes (limit 100)")
        != std::string::npos);
}
