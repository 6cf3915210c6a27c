#include "runtime/core/histogram.hpp"

#include <algorithm>
#include <cstdio>

namespace troupe {

constexpr std::array<double, 24> histogram::bounds_ms;

void histogram::record(duration d) {
  record_ms(std::chrono::duration<double, std::milli>(d).count());
}

void histogram::record_ms(double ms) {
  auto i = std::lower_bound(bounds_ms.begin(), bounds_ms.end(), ms) - bounds_ms.begin();
  ++buckets_[static_cast<size_t>(i)];
  ++count_;
  sum_ms_ += ms;
}

uint64_t histogram::cumulative(size_t i) const {
  uint64_t n = 0;
  for (size_t j = 0; j <= i && j < buckets_.size(); ++j)
    n += buckets_[j];
  return n;
}

double histogram::quantile_ms(double q) const {
  if (count_ == 0)
    return 0;
  auto rank = q * static_cast<double>(count_);
  uint64_t below = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (buckets_[i] == 0)
      continue;
    if (static_cast<double>(below + buckets_[i]) >= rank) {
      auto lo = i == 0 ? 0.0 : bounds_ms[i - 1];
      if (i == bounds_ms.size())
        return lo; // +Inf: the largest finite bound is all we know
      auto hi = bounds_ms[i];
      auto within = (rank - static_cast<double>(below)) / static_cast<double>(buckets_[i]);
      return lo + (hi - lo) * std::clamp(within, 0.0, 1.0);
    }
    below += buckets_[i];
  }
  return bounds_ms.back();
}

void histogram::merge(const histogram& other) {
  for (size_t i = 0; i < buckets_.size(); ++i)
    buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ms_ += other.sum_ms_;
}

histogram histogram::from_raw(const std::vector<uint64_t>& counts, double sum_ms) {
  histogram h;
  for (size_t i = 0; i < counts.size() && i < h.buckets_.size(); ++i) {
    h.buckets_[i] = counts[i];
    h.count_ += counts[i];
  }
  h.sum_ms_ = sum_ms;
  return h;
}

std::string histogram::summary() const {
  if (count_ == 0)
    return "none";
  char buf[96];
  std::snprintf(buf, sizeof(buf), "p50 %.2f ms, p99 %.2f ms", quantile_ms(0.5), quantile_ms(0.99));
  return buf;
}

} // namespace troupe
