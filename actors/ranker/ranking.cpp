#include "actors/ranker/ranking.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "runtime/core/error.hpp"
#include "runtime/core/hash.hpp"

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

namespace {

std::string trim(const std::string& x) {
  auto b = x.find_first_not_of(" \t");
  if (b == std::string::npos)
    return {};
  return x.substr(b, x.find_last_not_of(" \t") - b + 1);
}

/// A number written out in full (no trailing text), finite.
bool number(const std::string& text, double& out) {
  if (text.empty())
    return false;
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && std::isfinite(out);
}

} // namespace

caf::expected<std::vector<variant>> parse_variants(const std::string& text) {
  std::vector<variant> result;
  std::set<std::string> names;
  uint32_t total = 0;
  size_t start = 0;
  auto bad = [](const std::string& why) { return caf::make_error(ec::invalid_argument, why); };
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto item = trim(text.substr(start, comma == std::string::npos ? std::string::npos
                                                                     : comma - start));
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    auto n = std::to_string(result.size() + 1);
    if (item.empty())
      return bad("variant " + n + " is empty: write NAME:SHARE:AFFINITY/BIAS/RECENCY, "
                 "comma-separated");
    if (result.size() == 8)
      return bad("at most 8 variants");
    auto c1 = item.find(':');
    auto c2 = c1 == std::string::npos ? c1 : item.find(':', c1 + 1);
    if (c2 == std::string::npos)
      return bad("variant " + n + " ('" + item + "') is not NAME:SHARE:AFFINITY/BIAS/RECENCY");
    variant v;
    v.name = item.substr(0, c1);
    if (v.name.empty() || v.name.size() > 32
        || v.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-")
             != std::string::npos)
      return bad("variant " + n + ": the name '" + v.name
                 + "' must be 1 to 32 characters of a-z, 0-9, _ and -");
    if (!names.insert(v.name).second)
      return bad("variant '" + v.name + "' is named twice");
    double share = 0;
    auto share_text = item.substr(c1 + 1, c2 - c1 - 1);
    if (!number(share_text, share) || share != std::floor(share) || share < 1 || share > 100)
      return bad("variant '" + v.name + "': the share '" + share_text
                 + "' must be a whole percent from 1 to 100");
    v.share = static_cast<uint32_t>(share);
    total += v.share;
    auto ws = item.substr(c2 + 1);
    double parts[3];
    size_t from = 0;
    for (int i = 0; i < 3; ++i) {
      auto slash = ws.find('/', from);
      if ((i < 2) == (slash == std::string::npos))
        return bad("variant '" + v.name + "': the weights '" + ws
                   + "' must be AFFINITY/BIAS/RECENCY");
      auto part = ws.substr(from, i < 2 ? slash - from : std::string::npos);
      if (!number(part, parts[i]) || parts[i] < 0)
        return bad("variant '" + v.name + "': the weight '" + part
                   + "' must be a number, at least 0");
      from = slash + 1;
    }
    if (std::fabs(parts[0] + parts[1] + parts[2] - 1.0) > 1e-9)
      return bad("variant '" + v.name + "': the weights " + ws + " must add up to 1");
    v.weights = {parts[0], parts[1], parts[2]};
    result.push_back(std::move(v));
  }
  if (total != 100)
    return bad("the variants' shares add up to " + std::to_string(total) + ", not 100");
  return result;
}

uint32_t bucket_of(const std::string& user) {
  return static_cast<uint32_t>(fnv1a_64("ranking-variant:" + user) % 100);
}

const variant& variant_for(const std::vector<variant>& variants, const std::string& user) {
  auto b = bucket_of(user);
  uint32_t upto = 0;
  for (auto& v : variants) {
    upto += v.share;
    if (b < upto)
      return v;
  }
  return variants.back();
}

ranked_article score(const article& a, const preferences& p, int64_t now_ms, const weights& w) {
  ranked_article r;
  r.item = a;
  auto i = p.categories.find(a.category);
  r.affinity = i != p.categories.end() ? i->second : p.other;
  r.bias_alignment = 1.0 - std::fabs(a.bias - p.bias);
  auto hours = std::max<int64_t>(0, now_ms - a.published_ms) / 3600000.0;
  r.recency = 1.0 / (1.0 + 0.1 * hours);
  r.score = w.affinity * r.affinity + w.bias * r.bias_alignment + w.recency * r.recency;
  return r;
}

std::vector<ranked_article> top_k(const std::vector<article>& candidates, const preferences& p,
                                  int64_t now_ms, size_t k, int64_t max_age_ms,
                                  const weights& w) {
  std::vector<ranked_article> xs;
  xs.reserve(candidates.size());
  for (auto& a : candidates)
    if (now_ms - a.published_ms <= max_age_ms)
      xs.push_back(score(a, p, now_ms, w));
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
