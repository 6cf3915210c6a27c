#include "actors/feature_enricher/feature_store.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "actors/feature_enricher/features_lua.hpp"
#include "runtime/core/error.hpp"

namespace troupe::enrich {

namespace {

constexpr int64_t hour_ms = 3600 * 1000;

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", x);
  return buf;
}

float category_code(const std::string& c) {
  auto& all = categories();
  auto i = std::find(all.begin(), all.end(), c);
  return i == all.end() ? -1.f : static_cast<float>(i - all.begin());
}

float hour_of_day(int64_t ts) {
  return static_cast<float>((ts / hour_ms) % 24);
}

} // namespace

const std::vector<std::string>& categories() {
  static const std::vector<std::string> names{
    "grocery", "restaurant",    "fuel",   "transport",   "clothing",   "pharmacy",
    "entertainment", "travel",  "electronics", "gift_cards", "jewelry", "crypto"};
  return names;
}

feature_store::feature_store(std::unique_ptr<redis::connection> conn, std::string sha,
                             int64_t ttl_seconds)
  : conn_(std::move(conn)), sha_(std::move(sha)), ttl_seconds_(ttl_seconds) {
}

caf::expected<std::unique_ptr<feature_store>>
feature_store::make(const std::string& url, caf::timespan timeout, caf::timespan ttl) {
  auto conn = redis::connection::make(url, timeout, "feature-enricher");
  if (!conn)
    return conn.error();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(ttl).count();
  std::unique_ptr<feature_store> store{new feature_store(std::move(*conn), "", std::max<int64_t>(secs, 1))};
  if (auto err = store->load_script())
    return err;
  return store;
}

caf::error feature_store::load_script() {
  auto r = conn_->command({"SCRIPT", "LOAD", features_lua});
  if (!r)
    return r.error();
  if (r->kind != redis::reply::string)
    return caf::make_error(ec::invalid_argument, "cannot load the feature script: " + r->text);
  sha_ = r->text;
  return caf::none;
}

caf::timespan feature_store::batch_timeout(size_t n) {
  return std::chrono::seconds(1) + std::chrono::milliseconds(2) * static_cast<int64_t>(n);
}

caf::expected<std::vector<std::vector<float>>>
feature_store::features(const std::vector<transaction>& batch) {
  std::vector<std::vector<std::string>> cmds;
  cmds.reserve(batch.size());
  auto ttl = std::to_string(ttl_seconds_);
  for (auto& tx : batch) {
    auto u = "u:{" + tx.user + "}:";
    cmds.push_back({"EVALSHA", sha_, "6", u + "tx", u + "stats", u + "merchants",
                    u + "countries", u + "devices", u + "f:" + tx.id, tx.id,
                    std::to_string(tx.timestamp), number(tx.amount), tx.merchant, tx.country,
                    tx.device, ttl});
  }
  conn_->set_timeout(batch_timeout(batch.size()));
  auto replies = conn_->pipeline(cmds);
  if (!replies)
    return replies.error();
  // A server that restarted forgot the script: load it and run the batch
  // again (the transactions that did run return their cached features).
  auto noscript = std::any_of(replies->begin(), replies->end(), [](const redis::reply& r) {
    return r.kind == redis::reply::error && r.text.rfind("NOSCRIPT", 0) == 0;
  });
  if (noscript) {
    if (auto err = load_script())
      return err;
    for (auto& c : cmds)
      c[1] = sha_;
    replies = conn_->pipeline(cmds);
    if (!replies)
      return replies.error();
  }
  std::vector<std::vector<float>> result;
  result.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& r = (*replies)[i];
    if (r.kind != redis::reply::string)
      return caf::make_error(ec::io_failure,
                             "feature script failed for " + batch[i].id + ": " + r.text);
    double v[8];
    if (std::sscanf(r.text.c_str(), "%lf %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2],
                    &v[3], &v[4], &v[5], &v[6], &v[7])
        != 8)
      return caf::make_error(ec::io_failure, "unexpected feature reply: " + r.text);
    auto& tx = batch[i];
    result.push_back({static_cast<float>(tx.amount), static_cast<float>(v[0]),
                      static_cast<float>(v[1]), static_cast<float>(v[2]),
                      static_cast<float>(v[3]), static_cast<float>(v[4]),
                      static_cast<float>(v[5]), static_cast<float>(v[6]),
                      static_cast<float>(v[7]), hour_of_day(tx.timestamp),
                      category_code(tx.category)});
  }
  return result;
}

std::vector<float> feature_store::degraded(const transaction& tx) {
  return {static_cast<float>(tx.amount), 0.f, 0.f, 0.f, 0.f, 604800.f, 0.f, 0.f, 0.f,
          hour_of_day(tx.timestamp), category_code(tx.category)};
}

} // namespace troupe::enrich
