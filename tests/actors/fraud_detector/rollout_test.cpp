// The model roll-out's record and the canary's split by user.

#include "actors/fraud_detector/rollout.hpp"

#include <string>

#include <caf/message.hpp>
#include <doctest/doctest.h>

using namespace troupe::fraud;

TEST_CASE("a roll-out with a candidate on trial reads back as it was written") {
  rollout r;
  r.generation = 7;
  r.current_model = "fraud-a";
  r.current_path = "/models/a/model.json";
  r.previous_model = "fraud-v1";
  r.previous_path = "";
  r.candidate_model = "fraud-b";
  r.candidate_path = "/models/b/model.json";
  r.share = 20;
  r.mode = canary_mode::split;
  r.started_at = 1234;
  auto back = rollout::from_json(nlohmann::json::parse(r.to_json().dump()));
  REQUIRE(back);
  CHECK(back->generation == 7);
  CHECK(back->current_model == "fraud-a");
  CHECK(back->current_path == "/models/a/model.json");
  CHECK(back->previous_model == "fraud-v1");
  CHECK(back->candidate_model == "fraud-b");
  CHECK(back->candidate_path == "/models/b/model.json");
  CHECK(back->share == 20);
  CHECK(back->mode == canary_mode::split);
  CHECK(back->started_at == 1234);
  CHECK(back->has_candidate());
  r.candidate_path.clear();
  auto none = rollout::from_json(r.to_json());
  REQUIRE(none);
  CHECK_FALSE(none->has_candidate());
  CHECK(r.to_json()["candidate"].is_null());
}

TEST_CASE("a roll-out record that makes no sense is refused with its reason") {
  auto bad = [](const char* text) {
    auto r = rollout::from_json(nlohmann::json::parse(text));
    REQUIRE_FALSE(r);
    return r.error().context().get_as<std::string>(0);
  };
  CHECK(bad("[1]").find("not a JSON object") != std::string::npos);
  CHECK(bad(R"({"schema":2,"generation":1})").find("schema") != std::string::npos);
  CHECK(bad(R"({"schema":1})").find("generation") != std::string::npos);
  CHECK(bad(R"({"schema":1,"generation":-1})").find("generation") != std::string::npos);
  CHECK(bad(R"({"schema":1,"generation":1,"candidate":{"model":"x"}})").find("path")
        != std::string::npos);
  CHECK(bad(R"({"schema":1,"generation":1,"candidate":{"path":"p","share":101,"mode":"split"}})")
          .find("share") != std::string::npos);
  CHECK(bad(R"({"schema":1,"generation":1,"candidate":{"path":"p","share":5,"mode":"half"}})")
          .find("half") != std::string::npos);
}

TEST_CASE("the canary's users are a fixed hash of the user id, its share of them") {
  // The same users as FNV-1a 64 of "model-canary:" + user, mod 100, in
  // Python (tests/actors/model_monitor/rollout_test.py computes it so).
  CHECK(in_canary("u1", 40));
  CHECK_FALSE(in_canary("u1", 39));
  CHECK(in_canary("user-42", 52));
  CHECK_FALSE(in_canary("user-42", 51));
  CHECK(in_canary("alice", 4));
  CHECK_FALSE(in_canary("alice", 3));
  for (uint32_t share : {0u, 10u, 30u, 100u}) {
    int in = 0;
    for (int i = 0; i < 100000; ++i)
      in += in_canary("user-" + std::to_string(i), share) ? 1 : 0;
    CHECK(std::abs(in - static_cast<int>(share) * 1000) <= 1000); // within a point
  }
}

TEST_CASE("canary modes parse by name and anything else is refused") {
  CHECK(*parse_canary_mode("split") == canary_mode::split);
  CHECK(*parse_canary_mode("shadow") == canary_mode::shadow);
  CHECK_FALSE(parse_canary_mode("Shadow"));
  CHECK(std::string{to_string(canary_mode::shadow)} == "shadow");
}
