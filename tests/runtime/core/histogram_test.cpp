#include "runtime/core/histogram.hpp"

#include <algorithm>

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using troupe::histogram;

TEST_CASE("an empty histogram has no quantiles and says so") {
  histogram h;
  CHECK(h.count() == 0);
  CHECK(h.quantile_ms(0.5) == 0);
  CHECK(h.summary() == "none");
}

TEST_CASE("quantiles fall inside the bucket that holds them") {
  histogram h;
  // 98 fast observations (0.3 ms, bucket (0.25, 0.5]) and 2 slow ones (40 ms, (25, 50]).
  for (int i = 0; i < 98; ++i)
    h.record(300us);
  h.record_ms(40);
  h.record_ms(40);
  CHECK(h.count() == 100);
  CHECK(h.sum_ms() == doctest::Approx(98 * 0.3 + 80));
  auto p50 = h.quantile_ms(0.5);
  CHECK(p50 > 0.25);
  CHECK(p50 <= 0.5);
  auto p99 = h.quantile_ms(0.99);
  CHECK(p99 > 25);
  CHECK(p99 <= 50);
}

TEST_CASE("cumulative counts are Prometheus's le buckets") {
  histogram h;
  h.record_ms(0.01); // <= 0.05
  h.record_ms(1);    // <= 1 (bounds are inclusive, as `le`)
  h.record_ms(70000); // above the last bound: +Inf only
  CHECK(h.cumulative(0) == 1);
  auto one = std::find(histogram::bounds_ms.begin(), histogram::bounds_ms.end(), 1.0)
             - histogram::bounds_ms.begin();
  CHECK(h.cumulative(static_cast<size_t>(one)) == 2);
  CHECK(h.cumulative(histogram::bounds_ms.size() - 1) == 2);
  CHECK(h.cumulative(histogram::bounds_ms.size()) == 3);
  CHECK(h.quantile_ms(1.0) == histogram::bounds_ms.back());
}

TEST_CASE("merging adds the observations of both") {
  histogram a, b;
  a.record_ms(1);
  b.record_ms(2);
  b.record_ms(3);
  a.merge(b);
  CHECK(a.count() == 3);
  CHECK(a.sum_ms() == doctest::Approx(6));
  a.clear();
  CHECK(a.count() == 0);
}
