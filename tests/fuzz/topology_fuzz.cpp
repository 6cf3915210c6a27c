// libFuzzer harness: the topology parser. Any text gets a topology or an
// error that names the file (`fuzz.conf:LINE: KEY: ...`), never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/core/error.hpp"
#include "topology/placement.hpp"
#include "topology/topology.hpp"

namespace {

/// A domain with a setting of every type, so that group settings are
/// checked as a real domain's are.
const troupe::topology::domain_schemas& schemas() {
  using troupe::topology::setting_type;
  static troupe::topology::domain_schemas xs = [] {
    troupe::topology::domain_schema d;
    d.name = "echo";
    d.fallbacks = {"trending"};
    d.settings = {
      {"topic", setting_type::string, "events", {}, {}, false, "a topic"},
      {"rate", setting_type::number, "20", 0.001, 1e6, false, "a number"},
      {"queue", setting_type::integer, "1024", 1, 1e6, false, "an integer"},
      {"wait", setting_type::duration, "5m", 1, {}, false, "a duration"},
      {"note", setting_type::string, "", {}, {}, true, "may be empty"},
    };
    return troupe::topology::domain_schemas{d};
  }();
  return xs;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  auto t = troupe::topology::parse(text, "fuzz.conf", schemas());
  if (!t) {
    if (troupe::render(t.error()).find("fuzz.conf") == std::string::npos)
      std::abort();
    return 0;
  }
  // A valid topology places its groups on any set of live nodes.
  std::set<std::string> alive;
  for (auto& n : t->nodes)
    alive.insert(n.name);
  troupe::topology::place(*t, alive);
  return 0;
}
