#pragma once

// A topology file for tests that run real node processes: three (or more)
// nodes on free loopback ports, in a fresh temporary folder removed with it.

#include <filesystem>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include <doctest/doctest.h>

#include "tests/support/process.hpp"

namespace troupe::test {

struct cluster_file {
  std::string dir;
  std::string path;
  /// node -> (cluster port, http port)
  std::map<std::string, std::pair<uint16_t, uint16_t>> ports;

  /// `cluster_keys` go into [cluster] after name and secret (one per line);
  /// `groups` is appended as written.
  cluster_file(const std::string& name, const std::string& secret,
               const std::string& cluster_keys = "", const std::string& groups = "",
               const std::vector<std::string>& nodes = {"n1", "n2", "n3"}) {
    auto free = free_ports(2 * nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i)
      ports[nodes[i]] = {free[2 * i], free[2 * i + 1]};
    write(name, secret, cluster_keys, groups);
  }

  /// The same nodes and ports as `other`, with another secret or other
  /// cluster keys: a node started from it claims a place in `other`'s cluster.
  cluster_file(const cluster_file& other, const std::string& name, const std::string& secret,
               const std::string& cluster_keys = "", const std::string& groups = "")
    : ports(other.ports) {
    write(name, secret, cluster_keys, groups);
  }

  cluster_file(const cluster_file&) = delete;

  ~cluster_file() {
    // The file, and the state a cluster of it kept beside it.
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

private:
  void write(const std::string& name, const std::string& secret,
             const std::string& cluster_keys, const std::string& groups) {
    char tmpl[] = "/tmp/troupe-test-XXXXXX";
    dir = mkdtemp(tmpl);
    path = dir + "/cluster.conf";
    std::ofstream out{path};
    out << "[cluster]\nname = \"" << name << "\"\nsecret = \"" << secret << "\"\n"
        << cluster_keys;
    for (auto& [node, p] : ports)
      out << "[[node]]\nname = \"" << node << "\"\ncluster_port = " << p.first
          << "\nhttp_port = " << p.second << "\n";
    out << groups;
  }
};

/// Starts `troupe node --config f --name name` with `extra` arguments.
inline std::unique_ptr<child_process> start_node(const cluster_file& f, const std::string& name,
                                                 std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{TROUPE_BINARY, "node", "--config", f.path, "--name", name};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = child_process::start(argv);
  REQUIRE(p);
  return p;
}

} // namespace troupe::test
