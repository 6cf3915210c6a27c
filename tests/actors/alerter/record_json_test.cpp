// The scored-event log's records, written straight to text: each reads back
// as the document the alerter built with nlohmann::json before.

#include "actors/alerter/alerter.hpp"

#include <random>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "runtime/core/trace.hpp"

using namespace troupe;

namespace {

/// The scored event as a nlohmann::json document: what the log held before
/// its records were written straight to text.
nlohmann::json reference(const scored_transaction& s, double threshold, const std::string& node,
                         int64_t scored_at) {
  auto& tx = s.item.tx;
  nlohmann::json j{{"schema", 1},
                   {"transaction", tx.id},
                   {"user", tx.user},
                   {"timestamp", tx.timestamp},
                   {"features", s.item.features},
                   {"score", s.probability},
                   {"model", s.model_version},
                   {"alert", s.probability > threshold},
                   {"degraded", s.item.degraded},
                   {"scored_at", scored_at},
                   {"node", node}};
  if (tx.trace.valid())
    j["trace"] = trace::trace_hex(tx.trace.trace_hi, tx.trace.trace_lo);
  if (!s.shadow_version.empty())
    j["shadow"] = {{"model", s.shadow_version},
                   {"score", s.shadow_probability},
                   {"alert", s.shadow_probability > threshold}};
  return j;
}

} // namespace

TEST_CASE("a scored event written as text reads back as the same document, whatever its "
          "strings, numbers, shadow score and trace") {
  std::mt19937 rng{4711};
  std::uniform_real_distribution<float> any{-1e4f, 1e4f};
  std::uniform_real_distribution<float> share{0.0f, 1.0f};
  std::vector<std::string> names{"t-1", "u \"quoted\" \\ back", "line\nbreak", "Zürich 東京",
                                 std::string{"nul\0byte", 8}, ""};
  for (int n = 0; n < 2000; ++n) {
    scored_transaction s;
    s.item.tx.id = names[n % names.size()] + std::to_string(n);
    s.item.tx.user = names[(n / 3) % names.size()];
    s.item.tx.timestamp = 1767225600000 + n;
    if (n % 2 == 0)
      s.item.tx.trace = trace::new_trace(1.0);
    for (int i = 0; i < 11; ++i)
      s.item.features.push_back(i % 4 == 0 ? static_cast<float>(i) : any(rng));
    s.item.degraded = n % 7 == 0;
    s.probability = n % 11 == 0 ? 1.0f : share(rng);
    s.model_version = n % 5 == 0 ? "fraud-v2" : "fraud-v1";
    if (n % 3 == 0) {
      s.shadow_version = "fraud-v3 \"candidate\"";
      s.shadow_probability = share(rng);
    }
    auto text = alert::scored_json(s, 0.5, "n" + std::to_string(n % 3), 1767225601000 + n);
    auto j = nlohmann::json::parse(text, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), text);
    auto expected = reference(s, 0.5, "n" + std::to_string(n % 3), 1767225601000 + n);
    CHECK_MESSAGE(j == expected, text, "\n", expected.dump());
    // The keys in the order nlohmann writes them (sorted): a record's text
    // is the old one's wherever the numbers print alike.
    CHECK(text.rfind("{\"alert\":", 0) == 0);
    CHECK(text.find("\"transaction\":") < text.find("\"user\":"));
  }
}
