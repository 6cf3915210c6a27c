#include "actors/fraud_detector/rollout.hpp"

#include "runtime/core/error.hpp"
#include "runtime/core/hash.hpp"

namespace troupe::fraud {

const char* to_string(canary_mode x) {
  return x == canary_mode::shadow ? "shadow" : "split";
}

caf::expected<canary_mode> parse_canary_mode(const std::string& text) {
  if (text == "split")
    return canary_mode::split;
  if (text == "shadow")
    return canary_mode::shadow;
  return caf::make_error(ec::invalid_argument,
                         "unknown canary mode '" + text + "' (expected split or shadow)");
}

bool in_canary(const std::string& user, uint32_t share) {
  return fnv1a_64("model-canary:" + user) % 100 < share;
}

nlohmann::json rollout::to_json() const {
  nlohmann::json j{{"schema", 1},
                   {"generation", generation},
                   {"current", {{"model", current_model}, {"path", current_path}}},
                   {"previous", {{"model", previous_model}, {"path", previous_path}}},
                   {"candidate", nullptr}};
  if (has_candidate())
    j["candidate"] = {{"model", candidate_model},
                      {"path", candidate_path},
                      {"share", share},
                      {"mode", fraud::to_string(mode)},
                      {"started_at", started_at}};
  return j;
}

caf::expected<rollout> rollout::from_json(const nlohmann::json& j) {
  auto bad = [](const std::string& why) {
    return caf::make_error(ec::invalid_argument, "bad model roll-out: " + why);
  };
  if (!j.is_object())
    return bad("not a JSON object");
  if (j.value("schema", 0) != 1)
    return bad("unsupported schema");
  rollout r;
  auto text = [](const nlohmann::json& o, const char* key) {
    auto i = o.find(key);
    return i != o.end() && i->is_string() ? i->get<std::string>() : std::string{};
  };
  auto g = j.find("generation");
  if (g == j.end() || !g->is_number_unsigned())
    return bad("missing field 'generation'");
  r.generation = g->get<uint64_t>();
  if (auto c = j.find("current"); c != j.end() && c->is_object()) {
    r.current_model = text(*c, "model");
    r.current_path = text(*c, "path");
  }
  if (auto p = j.find("previous"); p != j.end() && p->is_object()) {
    r.previous_model = text(*p, "model");
    r.previous_path = text(*p, "path");
  }
  if (auto c = j.find("candidate"); c != j.end() && c->is_object()) {
    r.candidate_model = text(*c, "model");
    r.candidate_path = text(*c, "path");
    if (r.candidate_path.empty())
      return bad("a candidate without a path");
    auto s = c->find("share");
    if (s == c->end() || !s->is_number_unsigned() || s->get<uint64_t>() > 100)
      return bad("a candidate's share must be 0 to 100");
    r.share = static_cast<uint32_t>(s->get<uint64_t>());
    auto m = parse_canary_mode(text(*c, "mode"));
    if (!m)
      return m.error();
    r.mode = *m;
    r.started_at = c->value("started_at", int64_t{0});
  }
  return r;
}

} // namespace troupe::fraud
