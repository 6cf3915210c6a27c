#include "actors/feature_enricher/enricher.hpp"

#include <chrono>
#include <memory>

#include "actors/feature_enricher/feature_store.hpp"
#include "runtime/core/messages.hpp"

using namespace std::chrono_literals;

namespace troupe::enrich {

namespace {

/// One worker's connection and when it may try again.
struct worker_state {
  std::unique_ptr<feature_store> store;
  std::chrono::steady_clock::time_point next_try;
};

} // namespace

group_spec make_group(const std::string& name, size_t instances, const std::string& redis_url,
                      caf::timespan retry) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true;
  g.worker = [redis_url, retry](caf::event_based_actor*, size_t) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    auto connect = [st, redis_url, retry] {
      auto now = std::chrono::steady_clock::now();
      if ((!st->store || !st->store->alive()) && now >= st->next_try) {
        st->store.reset();
        auto s = feature_store::make(redis_url, 200ms);
        if (s)
          st->store = std::move(*s);
        else
          st->next_try = now + retry;
      }
    };
    connect(); // now, so that the first batch does not wait for it
    return {
      [st, connect, retry](enrich_atom, std::vector<transaction>& batch) {
        auto now = std::chrono::steady_clock::now();
        connect();
        std::vector<enriched_transaction> out;
        out.reserve(batch.size());
        if (st->store) {
          auto features = st->store->features(batch);
          if (features) {
            for (size_t i = 0; i < batch.size(); ++i)
              out.push_back({std::move(batch[i]), std::move((*features)[i]), false});
            return out;
          }
          // Lost mid-batch: degrade this batch, retry later.
          st->store.reset();
          st->next_try = now + retry;
        }
        for (auto& tx : batch) {
          auto v = feature_store::degraded(tx);
          out.push_back({std::move(tx), std::move(v), true});
        }
        return out;
      },
    };
  };
  return g;
}

} // namespace troupe::enrich
