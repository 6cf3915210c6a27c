// The hiredis connection against a real redis-server on a free port.

#include "runtime/redis/connection.hpp"

#include <doctest/doctest.h>

#include "runtime/core/error.hpp"
#include "runtime/core/registry.hpp"
#include "tests/support/redis_server.hpp"

using namespace std::chrono_literals;
using namespace troupe;

TEST_CASE("a pipeline sends every command and reads every reply in order") {
  test::redis_server server;
  auto c = redis::connection::make(server.url(), 1s);
  REQUIRE(c);
  auto r = (*c)->pipeline({{"SET", "k", "v"},
                           {"INCRBY", "n", "5"},
                           {"GET", "k"},
                           {"GET", "missing"},
                           {"RPUSH", "l", "a", "b"},
                           {"LRANGE", "l", "0", "-1"},
                           {"HSET", "k", "f", "x"}});
  REQUIRE(r);
  REQUIRE(r->size() == 7);
  CHECK((*r)[0].kind == redis::reply::status);
  CHECK((*r)[1].number == 5);
  CHECK((*r)[2].text == "v");
  CHECK((*r)[3].kind == redis::reply::nil);
  CHECK((*r)[4].number == 2);
  REQUIRE((*r)[5].elements.size() == 2);
  CHECK((*r)[5].elements[1].text == "b");
  // A Redis error is a reply, not a failure: the connection stays usable.
  CHECK((*r)[6].kind == redis::reply::error);
  CHECK((*r)[6].text.find("WRONGTYPE") == 0);
  auto again = (*c)->command({"GET", "k"});
  REQUIRE(again);
  CHECK(again->text == "v");
}

TEST_CASE("binary values survive the round trip") {
  test::redis_server server;
  auto c = redis::connection::make(server.url(), 1s);
  REQUIRE(c);
  std::string value{"a\0b\r\n\xff", 6};
  REQUIRE((*c)->command({"SET", "bin", value}));
  auto r = (*c)->command({"GET", "bin"});
  REQUIRE(r);
  CHECK(r->text == value);
}

TEST_CASE("a lost server fails the call, and a new connection works once it is back") {
  test::redis_server server;
  auto c = redis::connection::make(server.url(), 500ms);
  REQUIRE(c);
  REQUIRE((*c)->command({"PING"}));
  server.stop();
  auto r = (*c)->command({"PING"});
  CHECK(!r);
  CHECK(!(*c)->alive());
  CHECK(!redis::connection::make(server.url(), 200ms));
  server.start();
  auto fresh = redis::connection::make(server.url(), 1s);
  REQUIRE(fresh);
  auto pong = (*fresh)->command({"PING"});
  REQUIRE(pong);
  CHECK(pong->text == "PONG");
}

TEST_CASE("a bad URL is refused with the reason") {
  CHECK(render(redis::parse_url("http://x:1").error()).find("not a redis:// URL")
        != std::string::npos);
  CHECK(render(redis::parse_url("redis://host").error()).find("expected redis://host:port")
        != std::string::npos);
  CHECK(render(redis::parse_url("redis://host:99999").error()).find("bad port")
        != std::string::npos);
  auto ok = redis::parse_url("redis://127.0.0.1:6390");
  REQUIRE(ok);
  CHECK(ok->first == "127.0.0.1");
  CHECK(ok->second == 6390);
}

namespace {

uint64_t redis_errors(const std::string& client, const char* kind) {
  return registry::instance().counter("troupe_redis_errors_total", "",
                                      {{"client", client}, {"kind", kind}});
}

} // namespace

TEST_CASE("round trips and each kind of failure are counted per client for /metrics") {
  test::redis_server server;
  const std::string client = "counted-client";
  auto& commands = registry::instance().counter("troupe_redis_commands_total", "",
                                                {{"client", client}});
  auto c = redis::connection::make(server.url(), 500ms, client);
  REQUIRE(c);
  REQUIRE((*c)->command({"SET", "k", "v"}));
  // Two error replies in one pipeline: one round trip, two reply errors.
  REQUIRE((*c)->pipeline({{"INCR", "k"}, {"HGET", "k", "f"}, {"GET", "k"}}));
  CHECK(commands.load() == 2);
  CHECK(redis_errors(client, "reply") == 2);
  CHECK(redis_errors(client, "io") == 0);
  server.stop();
  CHECK(!(*c)->command({"PING"}));
  CHECK(redis_errors(client, "io") == 1);
  CHECK(!redis::connection::make(server.url(), 200ms, client));
  CHECK(redis_errors(client, "connect") == 1);
  // Every figure is in the registry's samples, under its labels.
  size_t found = 0;
  for (auto& s : registry::instance().samples())
    for (auto& [k, v] : s.ls)
      if (k == "client" && v == client) {
        ++found;
        CHECK(s.is_counter);
      }
  CHECK(found == 4); // commands, and errors of kind connect, io and reply
}

TEST_CASE("with a password set, connections authenticate, and a wrong password is refused "
          "with its reason") {
  test::redis_server server;
  // The server starts requiring a password (as the embedded one does).
  auto admin = redis::connection::make(server.url(), 1s);
  REQUIRE(admin);
  REQUIRE((*admin)->command({"CONFIG", "SET", "requirepass", "s3cret-pw"}));
  auto anonymous = redis::connection::make(server.url(), 1s);
  REQUIRE(anonymous);
  auto denied = (*anonymous)->command({"SET", "alert:tx-1", "sent"});
  REQUIRE(denied);
  CHECK(denied->text.find("NOAUTH") == 0);
  redis::connection::set_password("not-it");
  auto wrong = redis::connection::make(server.url(), 1s);
  REQUIRE(!wrong);
  CHECK(render(wrong.error()).find("refused the password") != std::string::npos);
  redis::connection::set_password("s3cret-pw");
  auto right = redis::connection::make(server.url(), 1s);
  redis::connection::set_password("");
  REQUIRE(right);
  auto ok = (*right)->command({"SET", "alert:tx-1", "sent"});
  REQUIRE(ok);
  CHECK(ok->kind == redis::reply::status);
}
