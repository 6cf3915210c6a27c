#include "actors/ingestor/transaction_json.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/json_text.hpp"
#include "runtime/kafka/record_json.hpp"

namespace troupe::ingest {

namespace {

caf::error bad(std::string why) {
  return caf::make_error(ec::invalid_argument, std::move(why));
}

} // namespace

caf::expected<transaction> parse_transaction(std::string_view bytes, size_t max_bytes) {
  auto parsed = kafka::parse_record_json(bytes, max_bytes, transaction_schema);
  if (!parsed)
    return parsed.error();
  auto& j = *parsed;
  transaction tx;
  for (auto [name, out] : {std::pair{"id", &tx.id}, std::pair{"user", &tx.user},
                           std::pair{"currency", &tx.currency}, std::pair{"merchant", &tx.merchant},
                           std::pair{"category", &tx.category}, std::pair{"country", &tx.country},
                           std::pair{"device", &tx.device}}) {
    auto i = j.find(name);
    if (i == j.end())
      return bad(std::string{"missing field '"} + name + "'");
    if (!i->is_string())
      return bad(std::string{"field '"} + name + "' must be a string");
    *out = i->get<std::string>();
  }
  if (tx.id.empty() || tx.user.empty())
    return bad(tx.id.empty() ? "field 'id' must not be empty" : "field 'user' must not be empty");
  auto amount = j.find("amount");
  if (amount == j.end())
    return bad("missing field 'amount'");
  if (!amount->is_number())
    return bad("field 'amount' must be a number");
  tx.amount = amount->get<double>();
  if (!std::isfinite(tx.amount) || tx.amount < 0)
    return bad("field 'amount' must be finite and not negative");
  auto ts = j.find("timestamp");
  if (ts == j.end())
    return bad("missing field 'timestamp'");
  if (!ts->is_number_integer())
    return bad("field 'timestamp' must be an integer (Unix milliseconds)");
  tx.timestamp = ts->get<int64_t>();
  if (tx.timestamp < 0)
    return bad("field 'timestamp' must not be negative");
  return tx;
}

std::string to_json(const transaction& tx) {
  // Written straight to text (every transaction a producer or a rescore
  // sends): the keys in the order nlohmann::json writes them (sorted).
  std::string out;
  out.reserve(160 + tx.id.size() + tx.user.size() + tx.merchant.size());
  auto text = [&out](const char* key, const std::string& value) {
    out += key;
    append_json_string(out, value);
  };
  out += "{\"amount\":";
  append_json_number(out, tx.amount);
  text(",\"category\":", tx.category);
  text(",\"country\":", tx.country);
  text(",\"currency\":", tx.currency);
  text(",\"device\":", tx.device);
  text(",\"id\":", tx.id);
  text(",\"merchant\":", tx.merchant);
  out += ",\"schema\":";
  append_json_number(out, static_cast<int64_t>(transaction_schema));
  out += ",\"timestamp\":";
  append_json_number(out, tx.timestamp);
  text(",\"user\":", tx.user);
  out += '}';
  return out;
}

} // namespace troupe::ingest
