#include "runtime/kafka/dead_letter.hpp"

#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include "runtime/kafka/record_json.hpp"

namespace troupe::kafka {

namespace {

std::string base64(const std::string& in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    auto n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {abc[n >> 18], abc[(n >> 12) & 63], abc[(n >> 6) & 63], abc[n & 63]};
  }
  if (i + 1 == in.size()) {
    auto n = uint8_t(in[i]) << 16;
    out += {abc[n >> 18], abc[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    auto n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {abc[n >> 18], abc[(n >> 12) & 63], abc[(n >> 6) & 63], '='};
  }
  return out;
}

std::string sha256_hex(const std::string& in) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (auto b : digest)
    out += {hex[b >> 4], hex[b & 15]};
  return out;
}

} // namespace

std::string dead_letter_json(const std::string& reason, const std::string& topic,
                             int32_t partition, int64_t offset, const std::string& key,
                             const std::string& value, size_t max_bytes) {
  // Bytes that are not UTF-8 are replaced in "value"; "value_base64" keeps them.
  auto dump = [](const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  // The whole letter holds the value at least once and its base64 (4/3 of
  // it): when that alone is too large, it is not rendered only to be
  // thrown away.
  if (key.size() + value.size() * 7 / 3 + reason.size() <= max_bytes) {
    auto whole = dump({{"reason", reason},     {"topic", topic}, {"partition", partition},
                       {"offset", offset},     {"key", key},     {"value", value},
                       {"value_base64", base64(value)}});
    if (whole.size() <= max_bytes)
      return whole;
  }
  auto head = value.substr(0, dead_letter_head_bytes);
  return dump({{"reason", reason},
               {"topic", topic},
               {"partition", partition},
               {"offset", offset},
               {"key", key.substr(0, dead_letter_head_bytes)},
               {"truncated", true},
               {"size", value.size()},
               {"sha256", sha256_hex(value)},
               {"value_head", head},
               {"value_head_base64", base64(head)}});
}

void log_dead_letter(const log_fn& log, log_budget& budget, const std::string& who,
                     const std::string& reason, const record& r) {
  uint64_t held = 0;
  if (!log || !budget.take(held))
    return;
  log.warning(who + ": dead letter (" + reason + ") for " + r.topic + "/"
                + std::to_string(r.partition) + "@" + std::to_string(r.offset)
                + (held ? "; " + std::to_string(held) + " more were not logged" : ""),
              event_id(r.value, r.topic, r.partition, r.offset));
}

} // namespace troupe::kafka
