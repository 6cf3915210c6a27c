#include "actors/catalogue.hpp"

#include <algorithm>
#include <cstdlib>

#include "actors/alerter/alerter.hpp"
#include "actors/echo/echo.hpp"
#include "actors/feature_enricher/enricher.hpp"
#include "actors/fraud_detector/detector.hpp"
#include "actors/ingestor/ingestor.hpp"
#include "actors/ranker/ranker.hpp"
#include "actors/websocket_broadcaster/broadcaster.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"

namespace troupe::actors {

using topology::number;
using topology::setting;

namespace {

/// A duration setting in milliseconds, at least `min_ms`.
caf::expected<int64_t> millis(const topology::group_decl& decl, const std::string& key,
                              int64_t min_ms = 1) {
  auto d = parse_duration(setting(decl, key));
  if (!d)
    return caf::make_error(ec::invalid_argument,
                           "group " + decl.name + ": " + key + ": " + render(d.error()));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
  if (ms < min_ms)
    return caf::make_error(ec::invalid_argument, "group " + decl.name + ": " + key
                                                   + " must be at least "
                                                   + std::to_string(min_ms) + " ms");
  return ms;
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
    s.log = ctx.log.with_group(decl.name);
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
    s.log = ctx.log.with_group(decl.name);
    g = alert::make_group(decl.name, instances, s);
  } else if (decl.domain == "ranker") {
    rank::ranker_settings s;
    s.redis = ctx.redis;
    s.store = ctx.articles ? ctx.articles : std::make_shared<news::article_store>();
    auto k = number(decl, "top_k");
    if (!k)
      return k.error();
    if (*k < 1 || *k > 100)
      return caf::make_error(ec::invalid_argument,
                             "group " + decl.name + ": top_k must be from 1 to 100");
    s.top_k = static_cast<size_t>(*k);
    auto age = millis(decl, "max_age");
    if (!age)
      return age.error();
    s.max_age_ms = *age;
    auto window = millis(decl, "trending_window");
    if (!window)
      return window.error();
    s.trending_window_ms = *window;
    g = rank::make_group(decl.name, instances, s);
    if (decl.fallback != "trending")
      g.fallback = nullptr;
  } else if (decl.domain == "websocket-broadcaster") {
    ws::broadcaster_settings s;
    s.kafka = ctx.kafka;
    s.articles_topic = setting(decl, "articles_topic");
    s.alerts_topic = setting(decl, "alerts_topic");
    s.dead_letter_topic = setting(decl, "dead_letter_topic");
    s.consumer_group = "troupe." + decl.name;
    s.gw = ctx.gateway;
    s.hub = ctx.hub;
    s.router_of = ctx.router_of;
    s.log = ctx.log.with_group(decl.name);
    g = ws::make_group(decl.name, instances, s);
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
  g.log = ctx.log.with_group(decl.name);
  if (decl.routing == "key_hash") {
    // Messages carry their key first: a string (a user id) or a number.
    g.route = routing::key_hash;
    g.key = [](const caf::message& m) -> uint64_t {
      // The key is the first element, or the second after a leading atom.
      size_t i = !m.empty() && m.match_element<caf::atom_value>(0) ? 1 : 0;
      if (m.size() <= i)
        return 0;
      if (m.match_element<std::string>(i))
        return std::hash<std::string>{}(m.get_as<std::string>(i));
      if (m.match_element<uint64_t>(i))
        return m.get_as<uint64_t>(i);
      return 0;
    };
  }
  return g;
}

} // namespace troupe::actors
