#pragma once

#include <memory>

#include "actors/news/article_store.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::news {

/// A node service that holds the node's window of recent articles: what
/// the ranker ranks and the trending fallback counts. The
/// `websocket-broadcaster` domain's service (`ws::news_service`) is one;
/// other domains find it by name without depending on it.
class window_service : public node_service {
public:
  /// The name it is registered under.
  static constexpr const char* name = "news";

  /// The node's article window, for as long as the node runs.
  virtual std::shared_ptr<article_store> articles() const = 0;
};

} // namespace troupe::news
