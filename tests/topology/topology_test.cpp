#include "topology/topology.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <unistd.h>

#include <doctest/doctest.h>

#include "runtime/core/error.hpp"
#include "tests/support/domains.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::topology;
using troupe::test::load;
using troupe::test::parse;

namespace {

const std::string header = R"([cluster]
name = "test"
secret = "0123456789"

[[node]]
name = "n1"
cluster_port = 7001
http_port = 8001

[[node]]
name = "n2"
cluster_port = 7002
http_port = 8002
)";

/// The problem `text` is refused with, or "" if it is accepted.
std::string problem(const std::string& text) {
  auto t = parse(text, "test.conf");
  if (t)
    return {};
  CHECK(t.error() == ec::invalid_topology);
  return render(t.error());
}

} // namespace

TEST_CASE("the default cluster.conf is valid: three nodes hosting the six domain groups, the model's monitor and trainer") {
  auto t = load(std::string{TROUPE_SOURCE_DIR} + "/cluster.conf");
  REQUIRE_MESSAGE(t, render(t.error()));
  CHECK(t->cluster.name == "troupe-local");
  CHECK(t->cluster.heartbeat_interval == caf::timespan{100ms});
  CHECK(t->cluster.failure_timeout == caf::timespan{500ms});
  CHECK(t->cluster.takeover_delay == t->cluster.failure_timeout);
  CHECK(t->cluster.kafka == "embedded");
  CHECK(t->cluster.kafka_fetch_wait == caf::timespan{1ms});
  CHECK(t->cluster.trace_sample == doctest::Approx(0.01));
  CHECK(t->cluster.redis == "embedded");
  CHECK(t->cluster.redis_nice == -10);
  REQUIRE(t->nodes.size() == 3);
  for (auto& n : t->nodes)
    CHECK(n.host == "127.0.0.1");
  std::set<std::string> domains_used;
  for (auto& g : t->groups)
    domains_used.insert(g.domain);
  CHECK(domains_used
        == std::set<std::string>{"ingestor", "feature-enricher", "fraud-detector", "alerter",
                                 "model-monitor", "model-trainer", "ranker",
                                 "websocket-broadcaster"});
  auto fd = t->group("fraud-detector");
  REQUIRE(fd);
  CHECK(fd->nodes == std::vector<std::string>{"n2", "n3", "n1"});
  REQUIRE(fd->backoff);
  CHECK(fd->backoff->max == caf::timespan{2s});
  CHECK(fd->settings.at("model") == "actors/fraud_detector/model/fraud.json");
  auto ranker = t->group("ranker");
  REQUIRE(ranker);
  CHECK(ranker->fallback == "trending");
  CHECK(ranker->routing == "key_hash");
  CHECK(ranker->key == "user");
  // Omitted nodes mean every node, in file order.
  CHECK(t->group("websocket-broadcaster")->nodes == std::vector<std::string>{"n1", "n2", "n3"});
  CHECK(t->group("alerter")->settings.at("threshold") == "0.500000");
}

TEST_CASE("a minimal file gets every default") {
  auto t = parse(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\n", "test.conf");
  REQUIRE_MESSAGE(t, render(t.error()));
  auto& g = t->groups.at(0);
  CHECK(g.instances == 1);
  CHECK(g.strat == strategy::one_for_one);
  CHECK(g.intensity == 5);
  CHECK(g.period == caf::timespan{5s});
  CHECK(!g.backoff);
  CHECK(g.routing == "round_robin");
  CHECK(g.fallback == "none");
  CHECK(g.restart_delay == caf::timespan{1s});
  CHECK(t->nodes[0].host == "127.0.0.1");
}

TEST_CASE("an unknown key is refused with its file, line and key") {
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\ninstanses = 2\n")
        == "invalid_topology: test.conf:17: group[0].instanses: unknown key (known: backoff, "
           "domain, fallback, instances, intensity, key, name, nodes, period, restart_delay, "
           "routing, settings, strategy)");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nbogus = 1\n").find(
          "test.conf:4: cluster.bogus: unknown key")
        != std::string::npos);
  CHECK(problem(header + "[extra]\n").find("test.conf:14: extra: unknown key") != std::string::npos);
}

TEST_CASE("a value of the wrong type is refused with its line and key") {
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\ninstances = \"two\"\n")
        == "invalid_topology: test.conf:17: group[0].instances: expected an integer, got a "
           "string");
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\nnodes = \"n1\"\n")
        == "invalid_topology: test.conf:17: group[0].nodes: expected an array of strings, got a "
           "string");
}

TEST_CASE("a node declared twice is refused") {
  CHECK(problem(header + "[[node]]\nname = \"n1\"\ncluster_port = 7003\nhttp_port = 8003\n")
        == "invalid_topology: test.conf:15: node[2].name: node 'n1' is declared twice (first "
           "at line 5)");
}

TEST_CASE("a port used twice on one host is refused") {
  CHECK(problem(header + "[[node]]\nname = \"n3\"\ncluster_port = 8001\nhttp_port = 8003\n")
        == "invalid_topology: test.conf:16: node[2].cluster_port: port 8001 on 127.0.0.1 is "
           "already used by node[0].http_port");
  // The same port on two hosts is fine.
  CHECK(problem(header
                + "[[node]]\nname = \"n3\"\nhost = \"10.0.0.3\"\ncluster_port = 7001\n"
                  "http_port = 8001\n")
          .empty());
}

TEST_CASE("a group no node may host is refused before anything starts") {
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\nnodes = []\n")
        == "invalid_topology: test.conf:17: group[0].nodes: no node may host this group (the "
           "list is empty)");
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\nnodes = [\"n9\"]\n")
        == "invalid_topology: test.conf:17: group[0].nodes: unknown node 'n9'");
}

TEST_CASE("a bad duration is refused with its line and key") {
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\nperiod = \"5 seconds\"\n")
        == "invalid_topology: test.conf:17: group[0].period: bad duration '5 seconds' (use e.g. "
           "250ms, 2s, 1m)");
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\nperiod = 5\n")
        == "invalid_topology: test.conf:17: group[0].period: expected a duration string such "
           "as \"500ms\", got an integer");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nheartbeat_interval = "
                "\"1s\"\nfailure_timeout = \"500ms\"\n")
          .find("cluster.failure_timeout: must be longer than heartbeat_interval (1s)")
        != std::string::npos);
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\ntakeover_delay = \"10ms\"\n")
          .find("cluster.takeover_delay: must be at least heartbeat_interval (100ms)")
        != std::string::npos);
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nkafka_fetch_wait = \"10s\"\n")
        == "invalid_topology: test.conf:4: cluster.kafka_fetch_wait: must be from 1ms to 5s");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nredis_nice = 30\n")
        == "invalid_topology: test.conf:4: cluster.redis_nice: 30 is out of range [-20, 19]");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nredis_nice = \"high\"\n")
        == "invalid_topology: test.conf:4: cluster.redis_nice: expected an integer, got a string");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nredis = "
                "\"redis://10.0.0.5:6379\"\nredis_nice = -5\n")
          .find("test.conf:5: cluster.redis_nice: only for the embedded Redis")
        != std::string::npos);
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\ntrace_sample = 1.5\n")
        == "invalid_topology: test.conf:4: cluster.trace_sample: must be from 0 to 1");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\ntrace_sample = \"all\"\n")
        == "invalid_topology: test.conf:4: cluster.trace_sample: expected a number, got a string");
  // Large numbers are refused, never wrapped around into a short or
  // negative duration.
  CHECK(problem(header + "[[group]]\nname = \"e\"\ndomain = \"echo\"\nperiod = \"999999999999h\"\n")
        == "invalid_topology: test.conf:17: group[0].period: duration '999999999999h' is too long "
           "(at most 100000h)");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nfailure_timeout = "
                "\"9223372036855ms\"\n")
          .find("cluster.failure_timeout: bad duration") != std::string::npos);
}

TEST_CASE("a Redis password file is for a production Redis, and must be readable") {
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nredis_password_file = "
                "\"pw\"\n")
          .find("cluster.redis_password_file: the embedded Redis generates its own password")
        != std::string::npos);
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nredis = "
                "\"redis://10.0.0.5:6379\"\nredis_password_file = \"/nonexistent/pw\"\n")
          .find("test.conf:5: cluster.redis_password_file: cannot read Redis password file "
                "'/nonexistent/pw'")
        != std::string::npos);
}

TEST_CASE("a client token key file must be readable and hold at least 32 bytes") {
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nclient_token_key_file = "
                "\"/nonexistent/key\"\n")
          .find("test.conf:4: cluster.client_token_key_file: cannot read client token key file "
                "'/nonexistent/key'")
        != std::string::npos);
  auto path = "/tmp/troupe-short-key-" + std::to_string(::getpid());
  std::ofstream{path} << "too-short\n";
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"0123456789\"\nclient_token_key_file = \""
                + path + "\"\n")
          .find("test.conf:4: cluster.client_token_key_file: the key in '" + path
                + "' is shorter than 32 bytes")
        != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("the secret is required once, inline or from a file") {
  CHECK(problem("[cluster]\nname = \"x\"\n[[node]]\nname=\"n1\"\ncluster_port=1\nhttp_port=2\n")
        == "invalid_topology: test.conf:1: cluster.secret: give exactly one of 'secret' and "
           "'secret_file'");
  CHECK(problem("[cluster]\nname = \"x\"\nsecret = \"short\"\n").find("at least 8 characters")
        != std::string::npos);
  char path_buf[] = "/tmp/troupe-secret-XXXXXX";
  auto fd = mkstemp(path_buf);
  REQUIRE(fd >= 0);
  close(fd);
  std::string path = path_buf;
  std::ofstream{path} << "a-secret-from-a-file\n";
  auto t = parse("[cluster]\nname = \"x\"\nsecret_file = \"" + path
                   + "\"\n[[node]]\nname=\"n1\"\ncluster_port=1\nhttp_port=2\n",
                 "test.conf");
  std::remove(path.c_str());
  REQUIRE_MESSAGE(t, render(t.error()));
  CHECK(t->cluster.secret == "a-secret-from-a-file");
}

TEST_CASE("domains, strategies, routing, fallbacks and settings are checked against what exists") {
  auto group = [](const std::string& body) {
    return header + "[[group]]\nname = \"g\"\n" + body;
  };
  CHECK(problem(group("domain = \"fraud\"\n")).find("'fraud' is not a domain (known: ingestor")
        != std::string::npos);
  CHECK(problem(group("domain = \"echo\"\nstrategy = \"one_for_some\"\n"))
          .find("'one_for_some' is not one of one_for_one, one_for_all, rest_for_one")
        != std::string::npos);
  CHECK(problem(group("domain = \"echo\"\nrouting = \"key_hash\"\n"))
          .find("group[0].key: key_hash routing needs the key field")
        != std::string::npos);
  CHECK(problem(group("domain = \"echo\"\nfallback = \"trending\"\n"))
          .find("'trending' is not a fallback of echo (known: none)")
        != std::string::npos);
  CHECK(problem(group("domain = \"ranker\"\nfallback = \"trending\"\n")).empty());
  CHECK(problem(group("domain = \"alerter\"\nsettings = { treshold = 0.9 }\n"))
          .find("group[0].settings.treshold: unknown setting of alerter (known: crash_after_confirm_every, remember, scores_remember, scores_topic, threshold, topic)")
        != std::string::npos);
  // The ranker's A/B variants are checked together, with the line of the group's settings.
  CHECK(problem(group("domain = \"ranker\"\nsettings = { variants = "
                      "\"control:50:0.40/0.30/0.30, fresh:40:0/0/1\" }\n"))
        == "invalid_topology: test.conf:"
             + std::to_string(std::count(header.begin(), header.end(), '\n') + 4)
             + ": group[0].settings.variants: the variants' shares add up to 90, not 100");
  CHECK(problem(group("domain = \"ranker\"\nsettings = { variants = "
                      "\"control:50:0.40/0.30/0.30, fresh:50:0/0/1\" }\n")).empty());
  CHECK(problem(group("domain = \"echo\"\nbackoff = { min = \"1s\", max = \"10ms\" }\n"))
          .find("group[0].backoff.max: is below min")
        != std::string::npos);
  CHECK(problem(group("domain = \"echo\"\ninstances = 0\n"))
          .find("group[0].instances: 0 is out of range [1, 1024]")
        != std::string::npos);
}

TEST_CASE("a node's scheduler threads default to one per core and are range-checked") {
  auto t = parse(header, "test.conf");
  REQUIRE_MESSAGE(t, render(t.error()));
  CHECK(t->nodes[0].threads == 0);
  std::string with_threads = header;
  with_threads.replace(with_threads.find("http_port = 8001"), 16, "http_port = 8001\nthreads = 3");
  auto t3 = parse(with_threads, "test.conf");
  REQUIRE_MESSAGE(t3, render(t3.error()));
  CHECK(t3->nodes[0].threads == 3);
  with_threads.replace(with_threads.find("threads = 3"), 11, "threads = 999");
  CHECK(problem(with_threads).find("node[0].threads: 999 is out of range [0, 256]")
        != std::string::npos);
}

TEST_CASE("the log level and format are the cluster's, a node may log at its own level, and a bad name is refused with its line") {
  auto t = parse(header, "test.conf");
  REQUIRE_MESSAGE(t, render(t.error()));
  CHECK(t->cluster.log == log_level::info);
  CHECK(t->cluster.format == log_format::text);
  CHECK(!t->nodes[0].log);
  std::string with_log = header;
  with_log.replace(with_log.find("secret = "), 9, "log_level = \"warning\"\nlog_format = \"json\"\nsecret = ");
  with_log.replace(with_log.find("http_port = 8002"), 16, "http_port = 8002\nlog_level = \"debug\"");
  auto t2 = parse(with_log, "test.conf");
  REQUIRE_MESSAGE(t2, render(t2.error()));
  CHECK(t2->cluster.log == log_level::warning);
  CHECK(t2->cluster.format == log_format::json);
  CHECK(!t2->nodes[0].log);
  CHECK(t2->nodes[1].log == log_level::debug);
  auto bad_level = with_log;
  bad_level.replace(bad_level.find("\"debug\""), 7, "\"loud\"");
  CHECK(problem(bad_level)
        == "invalid_topology: test.conf:16: node[1].log_level: unknown log level 'loud' "
           "(expected error, warning, info, debug or trace)");
  auto bad_format = with_log;
  bad_format.replace(bad_format.find("\"json\""), 6, "\"xml\"");
  CHECK(problem(bad_format)
        == "invalid_topology: test.conf:4: cluster.log_format: unknown log format 'xml' "
           "(expected text or json)");
}

TEST_CASE("a syntax error names its line") {
  CHECK(problem("[cluster]\nname = \"x\nsecret = 1\n").find("invalid_topology: test.conf:2: syntax:")
        == 0);
}

TEST_CASE("a missing file is reported, not thrown") {
  auto t = load("/nonexistent/cluster.conf");
  REQUIRE(!t);
  CHECK(render(t.error()) == "invalid_topology: /nonexistent/cluster.conf: cannot open the topology file");
}

namespace {

/// A file whose only group is of `domain` with `key = value` in its
/// settings table, and the line that key is on.
std::pair<std::string, int> with_setting(const std::string& domain, const std::string& key,
                                         const std::string& value) {
  auto text = header + "\n[[group]]\nname = \"g\"\ndomain = \"" + domain
              + "\"\n\n[group.settings]\n";
  auto line = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  return {text + key + " = " + value + "\n", line};
}

/// What a TOML value of the wrong type for `type` looks like.
std::string wrong_type_for(setting_type type) {
  switch (type) {
    case setting_type::string:
    case setting_type::duration: return "12";
    case setting_type::boolean: return "\"yes\"";
    default: return "\"twelve\"";
  }
}

/// A value below `spec`'s minimum and one above its maximum (where it has them).
std::vector<std::string> out_of_bounds(const setting_spec& spec) {
  std::vector<std::string> result;
  if (spec.type == setting_type::duration) {
    if (spec.min && *spec.min >= 1)
      result.push_back("\"" + std::to_string(static_cast<int64_t>(*spec.min) - 1) + "ms\"");
    if (spec.max)
      result.push_back("\"" + std::to_string(static_cast<int64_t>(*spec.max) + 1) + "ms\"");
    return result;
  }
  if (spec.type != setting_type::integer && spec.type != setting_type::number)
    return result;
  if (spec.min)
    result.push_back(std::to_string(static_cast<int64_t>(std::floor(*spec.min)) - 1));
  if (spec.max)
    result.push_back(std::to_string(static_cast<int64_t>(std::ceil(*spec.max)) + 1));
  return result;
}

} // namespace

TEST_CASE("every domain's settings refuse a wrong type, an out-of-range value and an unknown key, "
          "with file and line") {
  size_t refused = 0;
  for (auto& d : troupe::actors::domains()) {
    auto& schema = d.schema;
    auto expect_refused = [&](const std::string& key, const std::string& value,
                              const std::string& why) {
      auto [text, line] = with_setting(schema.name, key, value);
      auto p = problem(text);
      auto where = "test.conf:" + std::to_string(line) + ": group[0].settings." + key + ": ";
      auto at = p.find(where);
      CHECK_MESSAGE((at != std::string::npos && p.find(why, at) != std::string::npos),
                    schema.name << " " << key << " = " << value << ": " << p);
      ++refused;
    };
    for (auto& spec : schema.settings) {
      CHECK_MESSAGE(!spec.doc.empty(), schema.name << "." << spec.key << " has no documentation");
      CHECK_MESSAGE(!check(spec, spec.fallback), schema.name << "." << spec.key
                                                             << ": the default is invalid");
      expect_refused(spec.key, wrong_type_for(spec.type), "expected ");
      for (auto& v : out_of_bounds(spec))
        expect_refused(spec.key, v, "out of range");
      if (spec.type == setting_type::string && !spec.may_be_empty)
        expect_refused(spec.key, "\"\"", "must not be empty");
      // The default, written out, is accepted.
      auto [text, line] = with_setting(schema.name, spec.key,
                                       spec.type == setting_type::string
                                           || spec.type == setting_type::duration
                                         ? "\"" + spec.fallback + "\""
                                         : spec.fallback);
      CHECK_MESSAGE(problem(text).empty(), schema.name << "." << spec.key << ": " << problem(text));
    }
    expect_refused("no_such_setting", "1", "unknown setting of " + schema.name);
  }
  CHECK(refused > 20);
}
