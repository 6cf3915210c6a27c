#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace troupe {

/// A latency histogram with fixed, roughly logarithmic bucket bounds from
/// 50 µs to 60 s (Prometheus's cumulative `le` buckets can be read off it).
/// Cheap to record into (a search over 32 bounds), never allocates, and
/// gives quantiles to within one bucket (the bucket's upper bound is
/// reported, as Prometheus's `histogram_quantile` would interpolate inside
/// it).
class histogram {
public:
  using duration = std::chrono::steady_clock::duration;

  /// Upper bounds of the buckets in milliseconds; one more bucket, +Inf,
  /// holds the rest.
  static constexpr std::array<double, 24> bounds_ms = {
    0.05, 0.1, 0.25, 0.5, 1,    2,    3,    5,    7.5,   10,    15,    25,
    50,   75,  100,  250, 500,  1000, 2500, 5000, 10000, 20000, 30000, 60000};

  void record(duration d);

  void record_ms(double ms);

  uint64_t count() const {
    return count_;
  }

  double sum_ms() const {
    return sum_ms_;
  }

  /// Observations at or below `bounds_ms[i]` (cumulative, as Prometheus
  /// counts them); `i == bounds_ms.size()` gives the total.
  uint64_t cumulative(size_t i) const;

  /// The `q` quantile (0..1) in milliseconds, linearly interpolated inside
  /// its bucket; 0 when empty.
  double quantile_ms(double q) const;

  /// Adds `other`'s observations to this one's.
  void merge(const histogram& other);

  void clear() {
    *this = histogram{};
  }

  /// `p50 X ms, p99 Y ms` (or `none` when empty).
  std::string summary() const;
  /// The per-bucket counts (not cumulative), to send it to another node.
  std::vector<uint64_t> raw() const {
    return {buckets_.begin(), buckets_.end()};
  }
  /// A histogram from `raw()` and `sum_ms()`; extra counts are ignored.
  static histogram from_raw(const std::vector<uint64_t>& counts, double sum_ms);

private:
  std::array<uint64_t, bounds_ms.size() + 1> buckets_{};
  uint64_t count_ = 0;
  double sum_ms_ = 0;
};

} // namespace troupe
