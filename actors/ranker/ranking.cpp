#include "actors/ranker/ranking.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace troupe::rank {

preferences default_preferences() {
  preferences p;
  p.other = 0.5;
  p.bias = 0.5;
  return p;
}

preferences parse_preferences(const std::vector<std::string>& kv) {
  preferences p;
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    auto& field = kv[i];
    char* end = nullptr;
    auto x = std::strtod(kv[i + 1].c_str(), &end);
    if (kv[i + 1].empty() || end != kv[i + 1].c_str() + kv[i + 1].size() || !std::isfinite(x))
      continue;
    x = std::clamp(x, 0.0, 1.0);
    if (field == "bias")
      p.bias = x;
    else if (field == "other")
      p.other = x;
    else if (field.rfind("category:", 0) == 0 && field.size() > 9)
      p.categories[field.substr(9)] = x;
  }
  return p;
}

ranked_article score(const article& a, const preferences& p, int64_t now_ms) {
  ranked_article r;
  r.item = a;
  auto i = p.categories.find(a.category);
  r.affinity = i != p.categories.end() ? i->second : p.other;
  r.bias_alignment = 1.0 - std::fabs(a.bias - p.bias);
  auto hours = std::max<int64_t>(0, now_ms - a.published_ms) / 3600000.0;
  r.recency = 1.0 / (1.0 + 0.1 * hours);
  r.score = 0.40 * r.affinity + 0.30 * r.bias_alignment + 0.30 * r.recency;
  return r;
}

std::vector<ranked_article> top_k(const std::vector<article>& candidates, const preferences& p,
                                  int64_t now_ms, size_t k, int64_t max_age_ms) {
  std::vector<ranked_article> xs;
  xs.reserve(candidates.size());
  for (auto& a : candidates)
    if (now_ms - a.published_ms <= max_age_ms)
      xs.push_back(score(a, p, now_ms));
  auto better = [](const ranked_article& x, const ranked_article& y) {
    if (x.score != y.score)
      return x.score > y.score;
    if (x.item.published_ms != y.item.published_ms)
      return x.item.published_ms > y.item.published_ms;
    return x.item.id < y.item.id;
  };
  auto n = std::min(k, xs.size());
  std::partial_sort(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(n), xs.end(), better);
  xs.resize(n);
  return xs;
}

} // namespace troupe::rank
