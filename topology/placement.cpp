#include "topology/placement.hpp"

#include <algorithm>
#include <map>
#include <sstream>

namespace troupe::topology {

std::vector<uint32_t> plan::instances_on(const std::string& group,
                                         const std::string& node) const {
  std::vector<uint32_t> result;
  for (auto& a : assignments)
    if (a.group == group && a.node == node)
      result.push_back(a.instance);
  return result;
}

plan place(const topology& t, const std::set<std::string>& alive) {
  plan result;
  for (auto& g : t.groups) {
    std::vector<std::string> live;
    for (auto& n : g.nodes)
      if (alive.count(n))
        live.push_back(n);
    if (live.empty()) {
      result.unplaced.push_back(g.name);
      continue;
    }
    std::map<std::string, uint32_t> load;
    std::vector<assignment> mine(g.instances);
    std::vector<uint32_t> homeless;
    for (uint32_t i = 0; i < g.instances; ++i) {
      auto& home = g.nodes[i % g.nodes.size()];
      mine[i] = assignment{g.name, i, home, true};
      if (alive.count(home))
        ++load[home];
      else
        homeless.push_back(i);
    }
    for (auto i : homeless) {
      // Fewest instances of this group first; `live` is in preference order
      // and min_element keeps the first of equals.
      auto best = *std::min_element(live.begin(), live.end(),
                                    [&](const std::string& a, const std::string& b) {
                                      return load[a] < load[b];
                                    });
      ++load[best];
      mine[i].node = best;
      mine[i].at_home = false;
    }
    result.assignments.insert(result.assignments.end(), mine.begin(), mine.end());
  }
  return result;
}

plan place(const topology& t) {
  std::set<std::string> all;
  for (auto& n : t.nodes)
    all.insert(n.name);
  return place(t, all);
}

std::string describe(const topology& t, const plan& p) {
  std::ostringstream out;
  for (auto& g : t.groups) {
    out << "  " << g.name << " (" << g.domain << ", " << g.instances << " instance"
        << (g.instances == 1 ? "" : "s") << "):";
    bool any = false;
    for (auto& a : p.assignments) {
      if (a.group != g.name)
        continue;
      out << (any ? ", " : " ") << "#" << a.instance << "@" << a.node
          << (a.at_home ? "" : " (moved)");
      any = true;
    }
    if (!any)
      out << " no live node allowed: answered by fallback '" << g.fallback << "'";
    out << "\n";
  }
  return out.str();
}

} // namespace troupe::topology
