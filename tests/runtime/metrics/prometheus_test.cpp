#include "runtime/metrics/prometheus.hpp"

#include <doctest/doctest.h>

using namespace troupe;
using namespace troupe::metrics;

TEST_CASE("each family is declared once, with its help and type, before its samples") {
  exposition e;
  e.counter("x_total", "Things.", {{"node", "n1"}}, 3);
  e.counter("x_total", "Things.", {{"node", "n2"}}, 4);
  e.gauge("y", "Level.", {}, 0.5);
  CHECK(e.text()
        == "# HELP x_total Things.\n# TYPE x_total counter\n"
           "x_total{node=\"n1\"} 3\nx_total{node=\"n2\"} 4\n"
           "# HELP y Level.\n# TYPE y gauge\ny 0.5\n");
}

TEST_CASE("label values escape backslashes, quotes and newlines") {
  CHECK(exposition::escape("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  exposition e;
  e.gauge("z", "Z.", {{"reason", "said \"no\"\n"}}, 1);
  CHECK(e.text().find("z{reason=\"said \\\"no\\\"\\n\"} 1\n") != std::string::npos);
}

TEST_CASE("a histogram gives cumulative le buckets in seconds, +Inf, sum and count") {
  histogram h;
  h.record_ms(0.07); // <= 0.1 ms
  h.record_ms(4);    // <= 5 ms
  h.record_ms(4);
  h.record_ms(90000); // above every bound
  exposition e;
  e.histogram("lat_seconds", "Latency.", {{"g", "a"}}, h);
  auto& t = e.text();
  CHECK(t.find("# TYPE lat_seconds histogram\n") != std::string::npos);
  CHECK(t.find("lat_seconds_bucket{g=\"a\",le=\"5e-05\"} 0\n") != std::string::npos);
  CHECK(t.find("lat_seconds_bucket{g=\"a\",le=\"0.0001\"} 1\n") != std::string::npos);
  CHECK(t.find("lat_seconds_bucket{g=\"a\",le=\"0.003\"} 1\n") != std::string::npos);
  CHECK(t.find("lat_seconds_bucket{g=\"a\",le=\"0.005\"} 3\n") != std::string::npos);
  CHECK(t.find("lat_seconds_bucket{g=\"a\",le=\"60\"} 3\n") != std::string::npos);
  CHECK(t.find("lat_seconds_bucket{g=\"a\",le=\"+Inf\"} 4\n") != std::string::npos);
  CHECK(t.find("lat_seconds_count{g=\"a\"} 4\n") != std::string::npos);
  CHECK(t.find("lat_seconds_sum{g=\"a\"} 90.00807\n") != std::string::npos);
}

TEST_CASE("a histogram sent as raw buckets comes back the same") {
  histogram h;
  for (int i = 1; i <= 100; ++i)
    h.record_ms(i);
  auto back = histogram::from_raw(h.raw(), h.sum_ms());
  CHECK(back.count() == 100);
  CHECK(back.sum_ms() == doctest::Approx(5050));
  CHECK(back.quantile_ms(0.99) == doctest::Approx(h.quantile_ms(0.99)));
}
