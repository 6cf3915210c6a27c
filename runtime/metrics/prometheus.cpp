#include "runtime/metrics/prometheus.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace troupe::metrics {

std::string exposition::escape(const std::string& s) {
  std::string r;
  r.reserve(s.size());
  for (char c : s) {
    if (c == '\\')
      r += "\\\\";
    else if (c == '"')
      r += "\\\"";
    else if (c == '\n')
      r += "\\n";
    else
      r += c;
  }
  return r;
}

void exposition::family(const std::string& name, const std::string& type,
                        const std::string& help) {
  if (std::find(declared_.begin(), declared_.end(), name) != declared_.end())
    return;
  declared_.push_back(name);
  out_ += "# HELP " + name + " " + help + "\n";
  out_ += "# TYPE " + name + " " + type + "\n";
}

void exposition::sample(const std::string& name, const labels& ls, double v) {
  out_ += name;
  if (!ls.empty()) {
    out_ += '{';
    for (size_t i = 0; i < ls.size(); ++i) {
      if (i > 0)
        out_ += ',';
      out_ += ls[i].first + "=\"" + escape(ls[i].second) + "\"";
    }
    out_ += '}';
  }
  char buf[40];
  if (std::isinf(v))
    std::snprintf(buf, sizeof(buf), " %s\n", v > 0 ? "+Inf" : "-Inf");
  else if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof(buf), " %.0f\n", v);
  else
    std::snprintf(buf, sizeof(buf), " %.15g\n", v);
  out_ += buf;
}

void exposition::counter(const std::string& name, const std::string& help, const labels& ls,
                         double v) {
  family(name, "counter", help);
  sample(name, ls, v);
}

void exposition::gauge(const std::string& name, const std::string& help, const labels& ls,
                       double v) {
  family(name, "gauge", help);
  sample(name, ls, v);
}

void exposition::histogram(const std::string& name, const std::string& help, const labels& ls,
                           const troupe::histogram& h) {
  family(name, "histogram", help);
  auto with_le = [&](const std::string& le) {
    auto x = ls;
    x.emplace_back("le", le);
    return x;
  };
  char buf[32];
  for (size_t i = 0; i < troupe::histogram::bounds_ms.size(); ++i) {
    std::snprintf(buf, sizeof(buf), "%g", troupe::histogram::bounds_ms[i] / 1000.0);
    sample(name + "_bucket", with_le(buf), static_cast<double>(h.cumulative(i)));
  }
  sample(name + "_bucket", with_le("+Inf"), static_cast<double>(h.count()));
  sample(name + "_sum", ls, h.sum_ms() / 1000.0);
  sample(name + "_count", ls, static_cast<double>(h.count()));
}

} // namespace troupe::metrics
