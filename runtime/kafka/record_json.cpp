#include "runtime/kafka/record_json.hpp"

#include <string>

#include "runtime/core/error.hpp"

namespace troupe::kafka {

caf::expected<nlohmann::json> parse_record_json(std::string_view bytes, size_t max_bytes,
                                                int schema) {
  auto bad = [](std::string why) { return caf::make_error(ec::invalid_argument, std::move(why)); };
  if (bytes.size() > max_bytes)
    return bad("too large: " + std::to_string(bytes.size()) + " bytes (limit "
               + std::to_string(max_bytes) + ")");
  auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (j.is_discarded())
    return bad("not valid JSON");
  if (!j.is_object())
    return bad("not a JSON object");
  auto version = j.find("schema");
  if (version == j.end())
    return bad("missing field 'schema'");
  if (!version->is_number_integer())
    return bad("field 'schema' must be an integer");
  if (version->get<int64_t>() != schema)
    return bad("unsupported schema " + std::to_string(version->get<int64_t>()));
  return j;
}

std::string event_id(std::string_view bytes, const std::string& topic, int32_t partition,
                     int64_t offset) {
  if (bytes.size() <= (1u << 20)) {
    auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
    if (j.is_object()) {
      auto id = j.find("id");
      if (id != j.end() && id->is_string() && !id->get_ref<const std::string&>().empty()
          && id->get_ref<const std::string&>().size() <= 128)
        return id->get<std::string>();
    }
  }
  return topic + "/" + std::to_string(partition) + "@" + std::to_string(offset);
}

} // namespace troupe::kafka
