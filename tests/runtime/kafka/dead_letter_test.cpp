// Dead letters: whole when they fit, truncated (size, hash, head) when not.

#include "runtime/kafka/dead_letter.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace troupe;

TEST_CASE("a dead letter that fits keeps the whole value and its bytes in base64") {
  auto j = nlohmann::json::parse(
    kafka::dead_letter_json("not valid JSON", "transactions", 3, 42, "u-1", "{\"x\":"));
  CHECK(j["reason"] == "not valid JSON");
  CHECK(j["topic"] == "transactions");
  CHECK(j["partition"] == 3);
  CHECK(j["offset"] == 42);
  CHECK(j["key"] == "u-1");
  CHECK(j["value"] == "{\"x\":");
  CHECK(j["value_base64"] == "eyJ4Ijo=");
  CHECK(!j.contains("truncated"));
}

TEST_CASE("a dead letter too large for Kafka is truncated to its size, SHA-256 and head") {
  std::string value(500000, 'x');
  auto text = kafka::dead_letter_json("too large", "transactions", 0, 7, "u-2", value);
  CHECK(text.size() < 8 * 1024);
  auto j = nlohmann::json::parse(text);
  CHECK(j["truncated"] == true);
  CHECK(j["size"] == 500000);
  // sha256 of 500,000 'x', as Python's hashlib gives it
  CHECK(j["sha256"] == "c7adf6280412b3f9acbd4759796fdb295f7894b4a2a7a9d3412b3c72d2434442");
  CHECK(j["value_head"] == std::string(kafka::dead_letter_head_bytes, 'x'));
  CHECK(j["reason"] == "too large");
  CHECK(j["offset"] == 7);
  CHECK(!j.contains("value"));
  // The same value hashes the same; another does not.
  auto again = nlohmann::json::parse(
    kafka::dead_letter_json("too large", "transactions", 0, 7, "u-2", value));
  CHECK(again["sha256"] == j["sha256"]);
  auto other = nlohmann::json::parse(
    kafka::dead_letter_json("too large", "transactions", 0, 7, "u-2", value + "y"));
  CHECK(other["sha256"] != j["sha256"]);
}

TEST_CASE("a dead letter's limit counts the escaped JSON, not only the value") {
  // Control bytes take six characters each in JSON (\u0001): 100 KB of them
  // and their base64 do not fit in 512 KB, though the value alone would.
  std::string value(100000, '\x01');
  auto j = nlohmann::json::parse(kafka::dead_letter_json("bad", "t", 0, 1, "k", value));
  CHECK(j["truncated"] == true);
  CHECK(j["size"] == 100000);
  // A smaller limit (what Kafka took when it refused the first letter).
  auto small = kafka::dead_letter_json("bad", "t", 0, 1, "k", std::string(3000, 'a'), 4096);
  CHECK(nlohmann::json::parse(small)["truncated"] == true);
  CHECK(small.size() <= 4096);
}
