// The hot path's JSON writer, read back by the parser every consumer uses.

#include "runtime/core/json_text.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace troupe;

TEST_CASE("a string written as JSON reads back byte for byte, whatever characters it holds") {
  std::vector<std::string> cases{"", "t-1", "quote \" and backslash \\", "line\nbreak\ttab\rreturn",
                                 std::string{"nul \0 inside", 13}, "\x01\x1f\x7f", "b\bf\f",
                                 "Zürich → 東京 😀", "</script>"};
  std::string every_byte;
  for (int c = 1; c < 0x80; ++c)
    every_byte += static_cast<char>(c);
  cases.push_back(every_byte);
  for (auto& s : cases) {
    std::string out;
    append_json_string(out, s);
    auto j = nlohmann::json::parse(out, nullptr, false);
    REQUIRE_MESSAGE(j.is_string(), out);
    CHECK(j.get<std::string>() == s);
    // What nlohmann writes for it, byte for byte.
    CHECK(out == nlohmann::json(s).dump());
  }
}

TEST_CASE("a number written as JSON reads back as exactly the same double, as a floating-point "
          "number") {
  std::mt19937_64 rng{4711};
  std::vector<double> xs{0.0, -0.0, 1.0, 3.0, -2.0, 0.1, 1e-300, 5e-324, 1e20, 1e300, 123456789012.0,
                         std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
                         0.01734112575650215, 3600.25};
  std::uniform_real_distribution<double> any{-1e6, 1e6};
  for (int i = 0; i < 10000; ++i) {
    xs.push_back(any(rng));
    double d;
    auto bits = rng();
    std::memcpy(&d, &bits, sizeof(d));
    xs.push_back(d);
  }
  for (auto x : xs) {
    std::string out;
    append_json_number(out, x);
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (!std::isfinite(x)) {
      CHECK(out == "null");
      continue;
    }
    REQUIRE_MESSAGE(j.is_number_float(), out);
    CHECK(std::signbit(j.get<double>()) == std::signbit(x));
    CHECK(j.get<double>() == x);
  }
  std::string out;
  append_json_number(out, std::nan(""));
  CHECK(out == "null");
}

TEST_CASE("an integer written as JSON reads back as the same integer") {
  for (int64_t x : {int64_t{0}, int64_t{-1}, int64_t{1767225600000}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    std::string out;
    append_json_number(out, x);
    auto j = nlohmann::json::parse(out);
    REQUIRE(j.is_number_integer());
    CHECK(j.get<int64_t>() == x);
  }
}
