#include "runtime/core/registry.hpp"

namespace troupe {

registry& registry::instance() {
  static registry r;
  return r;
}

std::atomic<uint64_t>& registry::counter(const std::string& name, const labels& ls) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& cell = counters_[key{name, ls}];
  if (!cell)
    cell = std::make_unique<std::atomic<uint64_t>>(0);
  return *cell;
}

void registry::set_gauge(const std::string& name, const labels& ls, double value,
                         const void* owner) {
  std::lock_guard<std::mutex> guard{mtx_};
  gauges_[key{name, ls}] = gauge{value, owner};
}

void registry::erase_gauge(const std::string& name, const labels& ls, const void* owner) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = gauges_.find(key{name, ls});
  if (i != gauges_.end() && i->second.owner == owner)
    gauges_.erase(i);
}

void registry::erase_gauges(const void* owner) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto i = gauges_.begin(); i != gauges_.end();)
    i = i->second.owner == owner ? gauges_.erase(i) : std::next(i);
}

std::vector<registry::sample> registry::samples() const {
  std::vector<sample> result;
  std::lock_guard<std::mutex> guard{mtx_};
  auto c = counters_.begin();
  auto g = gauges_.begin();
  // Both maps are ordered by (name, labels): merge them.
  while (c != counters_.end() || g != gauges_.end()) {
    if (g == gauges_.end() || (c != counters_.end() && c->first < g->first)) {
      result.push_back({c->first.first, c->first.second, static_cast<double>(c->second->load()),
                        true});
      ++c;
    } else {
      result.push_back({g->first.first, g->first.second, g->second.value, false});
      ++g;
    }
  }
  return result;
}

const std::map<std::string, std::string>& registry::help() {
  static const std::map<std::string, std::string> texts{
    {"troupe_kafka_consumer_lag",
     "Records of a partition this consumer has not yet committed (high watermark minus the "
     "member's last commit; before one, its read position or where it starts)."},
    {"troupe_kafka_consumer_records_total", "Records a consumer group member read."},
    {"troupe_redis_commands_total", "Redis round trips by client (one per command or pipeline)."},
    {"troupe_redis_errors_total",
     "Redis failures by client and kind: connect, io (I/O error or timeout), reply (an error "
     "reply)."},
  };
  return texts;
}

} // namespace troupe
