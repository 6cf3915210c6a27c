#include "actors/feature_enricher/enricher.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <type_traits>

#include "actors/feature_enricher/feature_store.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/registry.hpp"

using namespace std::chrono_literals;

namespace troupe::enrich {

namespace {

/// One worker's connection and when it may try again.
struct worker_state {
  std::unique_ptr<feature_store> store;
  std::chrono::steady_clock::time_point next_try;
  /// Why the last connection failed or was lost, for the log.
  std::string why = "not connected yet";
  log_budget budget;
};

std::atomic<uint64_t>& degraded_counter(const std::string& group) {
  return registry::instance().counter(
    "troupe_enricher_degraded_events_total",
    "Transactions enriched with degraded features (Redis unreachable or too slow).",
    {{"group", group}});
}

} // namespace

group_spec make_group(const std::string& name, size_t instances, const std::string& redis_url,
                      caf::timespan retry, log_fn log, caf::timespan degrade_after,
                      trace::probe probe) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true;
  auto degraded = &degraded_counter(name);
  auto held = &registry::instance().counter(
    "troupe_enricher_held_batches_total",
    "Batches the enricher refused (to be tried again) because the feature store was "
    "unreachable for less than degrade_after.",
    {{"group", name}});
  // Since when this node's workers find the feature store unreachable
  // (steady nanoseconds; 0: reachable), shared by the group's workers.
  auto down_since = std::make_shared<std::atomic<int64_t>>(0);
  g.worker = [redis_url, retry, log, name, degraded, held, down_since, degrade_after,
              probe](caf::event_based_actor*, size_t index) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    auto place = probe.place(name, index);
    // Each transaction's enrich span, its parent the span that handed it
    // here; the next stage's parent is this one.
    auto spans = [tracer = probe.to, place](int64_t start, auto& xs, const char* error) {
      if (tracer)
        tracer->stage(place, "enrich", start, xs,
                      [](auto& x) {
                        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, transaction>)
                          return std::make_pair(&x.trace, &x.id);
                        else
                          return std::make_pair(&x.tx.trace, &x.tx.id);
                      },
                      error ? std::string_view{error} : std::string_view{}, true);
    };
    auto who = name + "/" + std::to_string(index);
    auto connect = [st, redis_url, retry] {
      auto now = std::chrono::steady_clock::now();
      if ((!st->store || !st->store->alive()) && now >= st->next_try) {
        st->store.reset();
        auto s = feature_store::make(redis_url, 200ms);
        if (s) {
          st->store = std::move(*s);
        } else {
          st->why = render(s.error());
          st->next_try = now + retry;
        }
      }
    };
    connect(); // now, so that the first batch does not wait for it
    return {
      [st, connect, retry, log, who, degraded, held, down_since, degrade_after,
       spans](enrich_atom,
                      std::vector<transaction>& batch) -> caf::result<std::vector<enriched_transaction>> {
        auto now = std::chrono::steady_clock::now();
        auto started = trace::unix_ns();
        connect();
        std::vector<enriched_transaction> out;
        out.reserve(batch.size());
        if (st->store) {
          auto features = st->store->features(batch);
          if (features) {
            for (size_t i = 0; i < batch.size(); ++i)
              out.push_back({std::move(batch[i]), std::move((*features)[i]), false});
            if (down_since->exchange(0) != 0 && log)
              log.info(who + ": the feature store is reachable again");
            spans(started, out, nullptr);
            return out;
          }
          // Lost mid-batch: try again later.
          st->why = render(features.error());
          st->store.reset();
          st->next_try = now + retry;
        }
        auto now_ns = now.time_since_epoch().count();
        int64_t since = 0;
        if (down_since->compare_exchange_strong(since, now_ns)) {
          since = now_ns;
          if (log)
            log.warning(who + ": the feature store is unreachable (" + st->why
                        + "); holding batches for up to " + to_duration_string(degrade_after)
                        + ", then scoring with degraded features");
        }
        if (now_ns - since < degrade_after.count()) {
          held->fetch_add(1, std::memory_order_relaxed);
          spans(started, batch, "held: the feature store is unreachable");
          return caf::make_error(ec::store_unavailable,
                                 "the feature store is unreachable (" + st->why + ")");
        }
        degraded->fetch_add(batch.size(), std::memory_order_relaxed);
        uint64_t held = 0;
        if (log && st->budget.take(held))
          log.warning(who + ": " + std::to_string(batch.size())
                        + " transactions with degraded features (" + st->why + ")"
                        + (held ? "; " + std::to_string(held) + " more lines held back" : ""),
                      batch.empty() ? std::string{} : batch.front().id);
        for (auto& tx : batch) {
          auto v = feature_store::degraded(tx);
          out.push_back({std::move(tx), std::move(v), true});
        }
        spans(started, out, nullptr);
        return out;
      },
    };
  };
  return g;
}

} // namespace troupe::enrich
