#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace troupe {

/// Process-wide figures kept by the parts that have no actor to ask: Kafka
/// consumers (their lag) and Redis connections (their errors). A node's
/// metrics collector renders them at `/metrics`; the process is the node.
/// Thread-safe.
class registry {
public:
  using labels = std::vector<std::pair<std::string, std::string>>;

  /// One figure: a counter or a gauge, by name and labels, with its
  /// family's help text.
  struct sample {
    std::string name;
    labels ls;
    double value = 0;
    bool is_counter = false;
    std::string help;
  };

  /// The process's registry.
  static registry& instance();

  /// A counter's cell, created at 0 on first use and valid for the
  /// process's life: keep the reference and add to it without locking.
  /// `help` describes the family (the first one given is kept).
  std::atomic<uint64_t>& counter(const std::string& name, const char* help, const labels& ls);

  /// Sets a gauge on behalf of `owner` (who alone may change or erase it;
  /// a gauge another owner set is taken over).
  void set_gauge(const std::string& name, const char* help, const labels& ls, double value,
                 const void* owner);

  /// Erases the gauge if `owner` set it last.
  void erase_gauge(const std::string& name, const labels& ls, const void* owner);

  /// Erases every gauge `owner` set last (an owner that ends).
  void erase_gauges(const void* owner);

  /// Every figure, ordered by name, then labels.
  std::vector<sample> samples() const;

private:
  using key = std::pair<std::string, labels>;
  struct gauge {
    double value = 0;
    const void* owner = nullptr;
  };
  mutable std::mutex mtx_;
  std::map<std::string, std::string> helps_;
  std::map<key, std::unique_ptr<std::atomic<uint64_t>>> counters_;
  std::map<key, gauge> gauges_;
};

} // namespace troupe
