#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/histogram.hpp"

namespace troupe::metrics {

/// Label pairs of one sample, in order.
using labels = std::vector<std::pair<std::string, std::string>>;

/// Builds a Prometheus text-format exposition (version 0.0.4): each metric
/// family once, with its `# HELP` and `# TYPE`, then its samples. Families
/// are declared on first use, so callers may add samples of a family from
/// several places in any order of families; samples of one family must come
/// together (Prometheus rejects a family split in two).
class exposition {
public:
  /// A `counter` sample (`name` should end in `_total`).
  void counter(const std::string& name, const std::string& help, const labels& ls, double v);
  /// A `gauge` sample.
  void gauge(const std::string& name, const std::string& help, const labels& ls, double v);
  /// A `histogram` family member: `name_bucket{le=...}`, `name_sum` (in
  /// seconds) and `name_count`, from `h`'s millisecond buckets.
  void histogram(const std::string& name, const std::string& help, const labels& ls,
                 const troupe::histogram& h);
  /// The text, ending in a newline.
  const std::string& text() const {
    return out_;
  }

  /// `s` escaped for a label value (backslash, double quote, newline).
  static std::string escape(const std::string& s);

private:
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, const labels& ls, double v);

  std::string out_;
  std::vector<std::string> declared_;
};

} // namespace troupe::metrics
