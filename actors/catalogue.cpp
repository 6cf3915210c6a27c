#include "actors/catalogue.hpp"

#include <algorithm>
#include <cstdlib>

#include "actors/alerter/alerter.hpp"
#include "actors/echo/echo.hpp"
#include "actors/feature_enricher/enricher.hpp"
#include "actors/fraud_detector/detector.hpp"
#include "actors/ingestor/ingestor.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"

namespace troupe::actors {

namespace {

/// A setting of the group, or the domain's default.
std::string setting(const topology::group_decl& decl, const std::string& key) {
  auto i = decl.settings.find(key);
  if (i != decl.settings.end())
    return i->second;
  for (auto& d : topology::domains())
    if (d.name == decl.domain) {
      auto j = d.settings.find(key);
      if (j != d.settings.end())
        return j->second;
    }
  return {};
}

/// A numeric setting, or an error naming the group and the key.
caf::expected<double> number(const topology::group_decl& decl, const std::string& key) {
  auto text = setting(decl, key);
  char* end = nullptr;
  auto x = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    return caf::make_error(ec::invalid_argument,
                           "group " + decl.name + ": " + key + " must be a number, not '" + text
                             + "'");
  return x;
}

} // namespace

caf::expected<group_spec> make_group(const topology::group_decl& decl, uint32_t instances,
                                     const domain_context& ctx) {
  group_spec g;
  if (decl.domain == "echo") {
    g = echo::make_group(decl.name, instances);
  } else if (decl.domain == "ingestor") {
    ingest::ingestor_settings s;
    s.kafka = ctx.kafka;
    s.topic = setting(decl, "topic");
    s.dead_letter_topic = setting(decl, "dead_letter_topic");
    s.consumer_group = "troupe." + decl.name;
    auto every = parse_duration(setting(decl, "report_every"));
    if (!every)
      return caf::make_error(ec::invalid_argument,
                             "group " + decl.name + ": report_every: " + render(every.error()));
    s.report_every = *every;
    s.router_of = ctx.router_of;
    s.log = ctx.log;
    g = ingest::make_group(decl.name, instances, s);
  } else if (decl.domain == "feature-enricher") {
    g = enrich::make_group(decl.name, instances, ctx.redis);
  } else if (decl.domain == "fraud-detector") {
    auto crash_every = number(decl, "crash_every");
    if (!crash_every)
      return crash_every.error();
    auto spec = fraud::make_group(decl.name, instances, setting(decl, "model"),
                                  static_cast<uint64_t>(std::max(0.0, *crash_every)));
    if (!spec)
      return spec.error();
    g = std::move(*spec);
  } else if (decl.domain == "alerter") {
    alert::alerter_settings s;
    auto threshold = number(decl, "threshold");
    if (!threshold)
      return threshold.error();
    s.threshold = *threshold;
    s.topic = setting(decl, "topic");
    auto remember = parse_duration(setting(decl, "remember"));
    if (!remember || *remember < std::chrono::seconds(1))
      return caf::make_error(ec::invalid_argument,
                             "group " + decl.name + ": remember: "
                               + (remember ? std::string{"must be at least 1s"}
                                           : render(remember.error())));
    s.remember = std::chrono::duration_cast<std::chrono::seconds>(*remember);
    s.kafka = ctx.kafka;
    s.redis = ctx.redis;
    s.node = ctx.node;
    g = alert::make_group(decl.name, instances, s);
  } else {
    return caf::make_error(ec::invalid_argument,
                           "domain " + decl.domain + " is not in this build yet");
  }
  if (decl.domain != "echo")
    // A pipeline stage's request may wait behind a backlog of batches: the
    // ingestor's own stage timeout decides when to try again.
    g.call_timeout = std::chrono::seconds(30);
  g.instances = instances;
  g.strat = decl.strat;
  g.intensity = decl.intensity;
  g.period = decl.period;
  g.backoff = decl.backoff;
  g.restart_delay = decl.restart_delay;
  if (decl.routing == "key_hash") {
    // Messages carry their key first: a string (a user id) or a number.
    g.route = routing::key_hash;
    g.key = [](const caf::message& m) -> uint64_t {
      if (m.empty())
        return 0;
      if (m.match_element<std::string>(0))
        return std::hash<std::string>{}(m.get_as<std::string>(0));
      if (m.match_element<uint64_t>(0))
        return m.get_as<uint64_t>(0);
      return 0;
    };
  }
  return g;
}

} // namespace troupe::actors
