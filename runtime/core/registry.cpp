#include "runtime/core/registry.hpp"

#include <algorithm>

namespace troupe {

registry& registry::instance() {
  static registry r;
  return r;
}

std::atomic<uint64_t>& registry::counter(const std::string& name, const char* help,
                                         const labels& ls) {
  std::lock_guard<std::mutex> guard{mtx_};
  helps_.emplace(name, help);
  auto& cell = counters_[key{name, ls}];
  if (!cell)
    cell = std::make_unique<std::atomic<uint64_t>>(0);
  return *cell;
}

void registry::set_gauge(const std::string& name, const char* help, const labels& ls,
                         double value, const void* owner) {
  std::lock_guard<std::mutex> guard{mtx_};
  helps_.emplace(name, help);
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
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& [k, cell] : counters_)
      result.push_back({k.first, k.second, static_cast<double>(cell->load()), true,
                        helps_.at(k.first)});
    for (auto& [k, g] : gauges_)
      result.push_back({k.first, k.second, g.value, false, helps_.at(k.first)});
  }
  std::sort(result.begin(), result.end(), [](const sample& a, const sample& b) {
    return std::tie(a.name, a.ls) < std::tie(b.name, b.ls);
  });
  return result;
}

} // namespace troupe
