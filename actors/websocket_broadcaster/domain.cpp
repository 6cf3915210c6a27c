#include "actors/websocket_broadcaster/broadcaster.hpp"
#include "actors/websocket_broadcaster/news_service.hpp"

namespace troupe::ws {

troupe::domain domain_entry() {
  using topology::setting_type;
  troupe::domain d;
  d.schema.name = "websocket-broadcaster";
  d.schema.settings = {
    {"articles_topic", setting_type::string, "articles", {}, {}, false,
     "the Kafka topic of articles"},
    {"alerts_topic", setting_type::string, "fraud-alerts", {}, {}, false,
     "the Kafka topic of fraud alerts pushed to operators and their users"},
    {"dead_letter_topic", setting_type::string, "dead-letters", {}, {}, false,
     "where a malformed article goes, with its reason"},
    {"unauthenticated_idle_timeout", setting_type::duration, "5m", 1, {}, false,
     "how long a WebSocket client without a token may stay without making a request (ping "
     "does not count); then it is closed with 1008"},
    {"rate_limit", setting_type::number, "20", 0.001, 1e6, false,
     "requests per second per client (the burst is twice it)"},
    {"send_queue", setting_type::integer, "1024", 1, 1e6, false,
     "messages queued per client before a slow one is dropped"},
    {"max_message", setting_type::integer, "65536", 256, 16777216, false,
     "the largest WebSocket message a client may send, in bytes"},
    {"max_future_skew", setting_type::duration, "5m", 1, {}, false,
     "how far in the future an article may be dated; later ones go to the dead-letter topic"},
    {"max_connections", setting_type::integer, "16000", 1, 1e7, false,
     "open HTTP and WebSocket connections per node at once (lowered to what the node's "
     "open-files limit allows, keeping 2048 for Kafka, Redis, the cluster and models)"},
    {"max_connections_per_address", setting_type::integer, "1000", 1, 1e7, false,
     "open connections per node from one IP address at once"},
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    broadcaster_settings s;
    s.kafka = ctx.kafka;
    s.articles_topic = topology::setting(decl, "articles_topic");
    s.alerts_topic = topology::setting(decl, "alerts_topic");
    s.dead_letter_topic = topology::setting(decl, "dead_letter_topic");
    s.consumer_group = "troupe." + decl.name;
    s.max_future_skew = topology::duration(decl, "max_future_skew");
    if (auto news = ctx.service<news_service>(news_service::name)) {
      s.gw = news->gw();
      s.hub = [news] { return news->hub(); };
    }
    s.router_of = ctx.router_of;
    s.log = ctx.log.with_group(decl.name);
    return make_group(decl.name, instances, s);
  };
  d.service_name = news_service::name;
  d.make_service = news_service::make;
  return d;
}

} // namespace troupe::ws
