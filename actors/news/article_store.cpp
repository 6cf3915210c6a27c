#include "actors/news/article_store.hpp"

#include <algorithm>

namespace troupe::news {

bool article_store::add(const article& a, int64_t now_ms) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (now_ms - a.published_ms > lim_.max_age_ms || reads_.count(a.id) > 0)
    return false;
  auto pos = std::upper_bound(window_.begin(), window_.end(), a.published_ms,
                              [](int64_t t, const article& x) { return t < x.published_ms; });
  window_.insert(pos, a);
  uint64_t early = 0;
  if (auto i = early_reads_.find(a.id); i != early_reads_.end()) {
    early = i->second;
    early_reads_.erase(i);
  }
  reads_.emplace(a.id, early);
  expire(now_ms);
  snapshot_.reset();
  return true;
}

void article_store::expire(int64_t now_ms) {
  while (!window_.empty()
         && (window_.size() > lim_.max_articles
             || now_ms - window_.front().published_ms > lim_.max_age_ms)) {
    reads_.erase(window_.front().id);
    window_.pop_front();
  }
}

void article_store::record_read(const std::string& id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = reads_.find(id);
  if (i != reads_.end()) {
    ++i->second;
    return;
  }
  // A read relayed from another node may overtake the article's own relay:
  // keep it for the article (bounded; ids never seen are forgotten).
  if (early_reads_.size() >= max_early_reads && !early_reads_.count(id))
    early_reads_.clear();
  ++early_reads_[id];
}

std::shared_ptr<const std::vector<article>> article_store::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!snapshot_)
    snapshot_ = std::make_shared<const std::vector<article>>(window_.rbegin(), window_.rend());
  return snapshot_;
}

std::vector<ranked_article> article_store::trending(size_t k, int64_t now_ms,
                                                    int64_t window_ms) const {
  std::vector<ranked_article> xs;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto i = window_.rbegin(); i != window_.rend(); ++i) {
      if (now_ms - i->published_ms > window_ms)
        break;
      ranked_article r;
      r.item = *i;
      r.reads = reads_.at(i->id);
      xs.push_back(std::move(r));
    }
  }
  auto order = [](const ranked_article& x, const ranked_article& y) {
    if (x.reads != y.reads)
      return x.reads > y.reads;
    if (x.item.published_ms != y.item.published_ms)
      return x.item.published_ms > y.item.published_ms;
    return x.item.id < y.item.id;
  };
  auto n = std::min(k, xs.size());
  std::partial_sort(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(n), xs.end(), order);
  xs.resize(n);
  return xs;
}

size_t article_store::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return window_.size();
}

} // namespace troupe::news
