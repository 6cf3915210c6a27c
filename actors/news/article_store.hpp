#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/core/messages.hpp"

namespace troupe::news {

/// A node's window of recent articles: the ranker's candidates and the
/// trending fallback's material. Bounded in count and age; the newest
/// articles stay. Thread-safe: the news hub writes, ranker workers and the
/// ranker's fallback read.
class article_store {
public:
  struct limits {
    /// At most this many articles (the oldest go first).
    size_t max_articles = 10000;
    /// Articles published longer ago than this are dropped (ms).
    int64_t max_age_ms = 72LL * 3600 * 1000;
  };

  article_store() = default;
  explicit article_store(limits lim) : lim_(lim) {
  }

  /// Adds `a`; false when its id is known already or it is too old.
  bool add(const article& a, int64_t now_ms);

  /// Counts one read of article `id`. A read of an id not (yet) in the
  /// window is kept for it, in a bounded table.
  void record_read(const std::string& id);

  /// The window, newest first. Immutable: readers keep it as long as they
  /// like, while the store moves on.
  std::shared_ptr<const std::vector<article>> snapshot() const;

  /// The `k` most read articles published within `window_ms` before
  /// `now_ms`, most read first (ties: newest first), with their reads.
  std::vector<ranked_article> trending(size_t k, int64_t now_ms, int64_t window_ms) const;

  size_t size() const;

private:
  void expire(int64_t now_ms);

  limits lim_;
  mutable std::mutex mtx_;
  /// Sorted by publication time, oldest first.
  std::deque<article> window_;
  std::unordered_map<std::string, uint64_t> reads_;
  std::unordered_map<std::string, uint64_t> early_reads_;
  static constexpr size_t max_early_reads = 10000;
  mutable std::shared_ptr<const std::vector<article>> snapshot_;
};

} // namespace troupe::news
