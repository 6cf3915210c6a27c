#include "runtime/node/trace_service.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/registry.hpp"
#include "runtime/kafka/client.hpp"

using namespace std::chrono_literals;

namespace troupe {

namespace {

struct trace_service_state {
  trace_service_settings cfg;
  std::unique_ptr<kafka::producer> producer;
  std::string why_idle;
  std::atomic<uint64_t>* exported = nullptr;
  std::atomic<uint64_t>* failed = nullptr;
  std::atomic<uint64_t>* dropped = nullptr;
  uint64_t dropped_seen = 0;

  void flush_spans() {
    if (auto d = cfg.tracer->dropped(); d != dropped_seen) {
      dropped->fetch_add(d - dropped_seen, std::memory_order_relaxed);
      dropped_seen = d;
    }
    auto spans = cfg.tracer->take_exports(5000);
    if (spans.empty())
      return;
    if (!producer) {
      auto p = kafka::producer::make(kafka::defaults(cfg.kafka));
      if (!p) {
        failed->fetch_add(spans.size(), std::memory_order_relaxed);
        if (render(p.error()) != why_idle) {
          why_idle = render(p.error());
          cfg.log.write(log_level::warning, "traces: cannot write to " + cfg.topic + ": "
                                              + why_idle);
        }
        return;
      }
      producer = std::move(*p);
      why_idle.clear();
    }
    for (size_t at = 0; at < spans.size(); at += 500) {
      auto end = std::min(spans.size(), at + 500);
      std::vector<trace::span> part(std::make_move_iterator(spans.begin() + at),
                                    std::make_move_iterator(spans.begin() + end));
      auto n = part.size();
      auto text = cfg.tracer->to_otlp(part).dump();
      auto ok = exported;
      auto bad = failed;
      auto err = producer->produce(cfg.topic, cfg.tracer->node(), text,
                                   [ok, bad, n](const caf::error& e) {
                                     (e ? bad : ok)->fetch_add(n, std::memory_order_relaxed);
                                   });
      if (err)
        failed->fetch_add(n, std::memory_order_relaxed);
    }
  }
};

caf::behavior trace_service(caf::event_based_actor* self, trace_service_settings cfg) {
  auto st = std::make_shared<trace_service_state>();
  auto& reg = registry::instance();
  registry::labels l; // the collector adds the node's label
  st->exported = &reg.counter("troupe_traces_exported_total",
                              "Sampled spans Kafka confirmed on the traces topic.", l);
  st->failed = &reg.counter("troupe_traces_export_failed_total",
                            "Sampled spans Kafka did not take (not retried).", l);
  st->dropped = &reg.counter("troupe_traces_dropped_total",
                             "Sampled spans dropped because the export queue was full.", l);
  st->dropped_seen = cfg.tracer->dropped();
  st->cfg = std::move(cfg);
  st->cfg.directory->put("@traces", caf::actor{self});
  self->attach_functor([dir = st->cfg.directory, addr = self->address()] {
    dir->erase_if("@traces", addr);
  });
  self->delayed_send(self, 250ms, tick_atom::value);
  return {
    [self, st](tick_atom) {
      st->flush_spans();
      self->delayed_send(self, 250ms, tick_atom::value);
    },
    [st](trace_atom, const std::string& id) -> std::string {
      nlohmann::json spans = nlohmann::json::array();
      for (auto& s : st->cfg.tracer->find(id))
        spans.push_back(st->cfg.tracer->to_json(s));
      return nlohmann::json{{"node", st->cfg.tracer->node()}, {"spans", spans}}.dump();
    },
  };
}

} // namespace

caf::expected<caf::actor> spawn_trace_service(caf::actor_system& sys,
                                              trace_service_settings settings) {
  if (!settings.tracer || !settings.directory)
    return caf::make_error(ec::invalid_argument,
                           std::string{"the traces service needs a tracer and a directory"});
  return sys.spawn<caf::detached>(trace_service, std::move(settings));
}

} // namespace troupe
