#pragma once

// Runs one of the reference scripts of scripts/fraud/ with Debian's python3
// (python3-xgboost, python3-numpy) and returns the JSON it wrote.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace troupe::test {

/// `cd scripts/fraud && /usr/bin/python3 SCRIPT ARGS... OUT`, then OUT's JSON.
inline nlohmann::json python_reference(const std::string& script,
                                       const std::vector<std::string>& args) {
  char tmpl[] = "/tmp/troupe-reference-XXXXXX";
  auto fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  std::string out = tmpl;
  auto cmd = "cd " + std::string{TROUPE_SOURCE_DIR} + "/scripts/fraud && /usr/bin/python3 "
             + script;
  for (auto& a : args)
    cmd += " '" + a + "'";
  cmd += " " + out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in{out};
  auto j = nlohmann::json::parse(in);
  std::remove(out.c_str());
  return j;
}

} // namespace troupe::test
