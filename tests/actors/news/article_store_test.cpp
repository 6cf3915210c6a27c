// The node's article window: bounded, newest first, with reads for trending.

#include "actors/news/article_store.hpp"

#include <doctest/doctest.h>

using namespace troupe;

namespace {

constexpr int64_t hour = 3600 * 1000;
constexpr int64_t now = 1767225600000;

article make(const std::string& id, int64_t age_ms, const std::string& category = "world") {
  article a;
  a.id = id;
  a.headline = "headline " + id;
  a.category = category;
  a.published_ms = now - age_ms;
  return a;
}

} // namespace

TEST_CASE("the window keeps articles newest first and refuses known ids") {
  news::article_store store;
  CHECK(store.add(make("a", 3 * hour), now));
  CHECK(store.add(make("b", 1 * hour), now));
  CHECK(store.add(make("c", 2 * hour), now));
  CHECK(!store.add(make("b", 1 * hour), now));
  auto snap = store.snapshot();
  REQUIRE(snap->size() == 3);
  CHECK((*snap)[0].id == "b");
  CHECK((*snap)[1].id == "c");
  CHECK((*snap)[2].id == "a");
}

TEST_CASE("the window drops the oldest past its size and articles past its age") {
  news::article_store store{{3, 10 * hour}};
  CHECK(!store.add(make("too-old", 11 * hour), now));
  for (int i = 0; i < 5; ++i)
    store.add(make("a" + std::to_string(i), (5 - i) * hour), now);
  CHECK(store.size() == 3);
  auto snap = store.snapshot();
  CHECK(snap->back().id == "a2");
  CHECK(snap->front().id == "a4");
}

TEST_CASE("a snapshot stays as it was while the window moves on") {
  news::article_store store;
  store.add(make("a", hour), now);
  auto before = store.snapshot();
  store.add(make("b", 0), now);
  CHECK(before->size() == 1);
  CHECK(store.snapshot()->size() == 2);
}

TEST_CASE("trending orders recent articles by reads, then by recency") {
  news::article_store store;
  store.add(make("old-popular", 30 * hour), now);
  store.add(make("x", 3 * hour), now);
  store.add(make("y", 2 * hour), now);
  store.add(make("z", 1 * hour), now);
  auto before_late = store.trending(10, now, 24 * hour);
  for (int i = 0; i < 9; ++i)
    store.record_read("old-popular");
  store.record_read("x");
  store.record_read("x");
  store.record_read("y");
  store.record_read("unknown");
  store.record_read("z-late");
  auto top = store.trending(3, now, 24 * hour);
  REQUIRE(top.size() == 3);
  CHECK(top[0].item.id == "x");
  CHECK(top[0].reads == 2);
  CHECK(top[1].item.id == "y");
  CHECK(top[2].item.id == "z");
  CHECK(top[2].reads == 0);
  // A read that came before its article counts once the article is there.
  store.add(make("z-late", 30 * 60 * 1000), now);
  auto late = store.trending(10, now, 24 * hour);
  CHECK(late.size() == before_late.size() + 1);
  CHECK(late[1].item.id == "z-late");
  CHECK(late[1].reads == 1);
}
