// The alerter's claims, on a real redis-server: one script run claims a
// whole batch, and answers each record by the state its claim was in.

#include "actors/alerter/alerter.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <doctest/doctest.h>

#include "runtime/core/error.hpp"
#include "tests/support/redis_server.hpp"

using namespace std::chrono_literals;
using namespace troupe;

namespace {

std::unique_ptr<redis::connection> connect(const test::redis_server& server) {
  auto c = redis::connection::make(server.url(), 2s, "alerter-test");
  REQUIRE_MESSAGE(c, render(c.error()));
  return std::move(*c);
}

std::string get(redis::connection& c, const std::string& key) {
  auto r = c.command({"GET", key});
  REQUIRE(r);
  return r->kind == redis::reply::string ? r->text : std::string{"(nil)"};
}

int64_t redis_now_ms(redis::connection& c) {
  auto r = c.command({"TIME"});
  REQUIRE(r);
  REQUIRE(r->elements.size() == 2);
  return std::stoll(r->elements[0].text) * 1000 + std::stoll(r->elements[1].text) / 1000;
}

/// `pending TOKEN LEASE_END PARTITION FROM`, parsed.
struct pending {
  std::string token;
  int64_t lease_end = -1;
  int32_t partition = -1;
  int64_t from = -1;
};

pending parse_pending(const std::string& v) {
  char token[128] = {0};
  long long lease = -1, from = -1;
  int p = -1;
  pending x;
  if (std::sscanf(v.c_str(), "pending %127s %lld %d %lld", token, &lease, &p, &from) == 4)
    x = {token, lease, p, from};
  return x;
}

} // namespace

TEST_CASE("one claim run answers each record of a batch by its claim: claimed, sent, busy, taken with where the earlier attempt wrote, taken without it") {
  test::redis_server server;
  auto c = connect(server);
  auto far = std::to_string(redis_now_ms(*c) + 3'600'000);
  REQUIRE(c->command({"SET", "alert:sent", "sent"}));
  REQUIRE(c->command({"SET", "alert:live", "pending other " + far + " 3 40"}));
  REQUIRE(c->command({"SET", "alert:ended", "pending other 0 5 17"}));
  REQUIRE(c->command({"SET", "alert:odd", "something else"}));
  std::vector<alert::claim_request> batch;
  for (auto key : {"alert:new", "alert:sent", "alert:live", "alert:ended", "alert:odd"})
    batch.push_back({key, 2, 100, "60"});
  auto before = redis_now_ms(*c);
  auto got = alert::claim_records(*c, "t1", 20s, batch);
  REQUIRE_MESSAGE(got, render(got.error()));
  CHECK(*got == std::vector<std::string>{"claimed", "sent", "busy", "taken 5 17", "taken -1 -1"});
  // What this attempt now holds: its token, a lease on Redis's clock, and
  // where it writes; what it may not touch is as it was.
  for (auto key : {"alert:new", "alert:ended", "alert:odd"}) {
    auto held = parse_pending(get(*c, key));
    CHECK(held.token == "t1");
    CHECK(held.partition == 2);
    CHECK(held.from == 100);
    CHECK(held.lease_end >= before + 20'000);
    CHECK(held.lease_end <= redis_now_ms(*c) + 20'000);
    auto ttl = c->command({"TTL", key});
    REQUIRE(ttl);
    CHECK(ttl->number > 0);
    CHECK(ttl->number <= 60);
  }
  CHECK(get(*c, "alert:sent") == "sent");
  CHECK(get(*c, "alert:live") == "pending other " + far + " 3 40");
}

TEST_CASE("a second attempt finds the first one's claim busy while its lease runs, then takes it over with where the first wrote") {
  test::redis_server server;
  auto c = connect(server);
  std::vector<alert::claim_request> first{{"scored:tx-1", 7, 1234, "900"}};
  auto got = alert::claim_records(*c, "first", 300ms, first);
  REQUIRE_MESSAGE(got, render(got.error()));
  REQUIRE(*got == std::vector<std::string>{"claimed"});
  std::vector<alert::claim_request> second{{"scored:tx-1", 7, 5000, "900"}};
  got = alert::claim_records(*c, "second", 20s, second);
  REQUIRE(got);
  CHECK(*got == std::vector<std::string>{"busy"});
  CHECK(parse_pending(get(*c, "scored:tx-1")).token == "first");
  // Past the first lease, the second attempt takes over and learns to read
  // partition 7 from offset 1234. The wait is on Redis's own clock, the one
  // the lease is on: a blocking pop of a list nobody fills, for as long as
  // the lease has left.
  auto left_ms = parse_pending(get(*c, "scored:tx-1")).lease_end - redis_now_ms(*c) + 1;
  REQUIRE(left_ms <= 301);
  if (left_ms > 0) {
    auto waited = c->command({"BLPOP", "claim-test-never-filled", std::to_string(left_ms / 1000.0)});
    REQUIRE(waited);
    REQUIRE(waited->kind == redis::reply::nil);
  }
  got = alert::claim_records(*c, "second", 20s, second);
  REQUIRE(got);
  CHECK(*got == std::vector<std::string>{"taken 7 1234"});
  auto held = parse_pending(get(*c, "scored:tx-1"));
  CHECK(held.token == "second");
  CHECK(held.from == 5000);
}

TEST_CASE("a batch of 2,000 records is claimed in one run, each by exactly one of two attempts") {
  test::redis_server server;
  auto c = connect(server);
  std::vector<alert::claim_request> a, b;
  for (int i = 0; i < 2000; ++i) {
    a.push_back({"alert:tx-" + std::to_string(i), i % 12, i, "60"});
    // The second attempt overlaps the first's second half.
    if (i >= 1000)
      b.push_back({"alert:tx-" + std::to_string(i), i % 12, i, "60"});
  }
  for (int i = 2000; i < 3000; ++i)
    b.push_back({"alert:tx-" + std::to_string(i), i % 12, i, "60"});
  auto first = alert::claim_records(*c, "a", 20s, a);
  REQUIRE_MESSAGE(first, render(first.error()));
  auto second = alert::claim_records(*c, "b", 20s, b);
  REQUIRE_MESSAGE(second, render(second.error()));
  REQUIRE(first->size() == a.size());
  REQUIRE(second->size() == b.size());
  CHECK(std::count(first->begin(), first->end(), "claimed") == 2000);
  CHECK(std::count(second->begin(), second->begin() + 1000, "busy") == 1000);
  CHECK(std::count(second->begin() + 1000, second->end(), "claimed") == 1000);
  auto empty = alert::claim_records(*c, "c", 20s, {});
  REQUIRE(empty);
  CHECK(empty->empty());
}

TEST_CASE("a claim against a Redis that died fails as an I/O error, and a claim on a new connection after its restart succeeds") {
  test::redis_server server;
  auto c = connect(server);
  server.stop();
  std::vector<alert::claim_request> batch{{"alert:tx-9", 1, 0, "60"}};
  auto got = alert::claim_records(*c, "t", 20s, batch);
  REQUIRE_FALSE(got);
  CHECK(render(got.error()).find("io_failure") != std::string::npos);
  CHECK_FALSE(c->alive());
  server.start();
  auto again = connect(server);
  got = alert::claim_records(*again, "t", 20s, batch);
  REQUIRE_MESSAGE(got, render(got.error()));
  CHECK(*got == std::vector<std::string>{"claimed"});
}
