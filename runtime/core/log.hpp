#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <caf/expected.hpp>

namespace troupe {

/// How much a node logs: each level includes the ones before it.
enum class log_level : uint8_t { error, warning, info, debug, trace };

/// `error`, `warning`, `info`, `debug` or `trace`.
const char* to_string(log_level x);

/// Parses a level's name (also `warn`); the error lists the names.
caf::expected<log_level> parse_log_level(const std::string& text);

/// How a log line is written.
enum class log_format : uint8_t {
  /// `2026-11-30T11:09:41.123Z WARN  [n1] message group=g event=e`: the
  /// time (UTC), the level, the node in brackets, the message, then the
  /// fields that are set, as `key=value` (quoted when they hold spaces).
  text,
  /// One JSON object per line: `ts`, `level`, `node`, `group` and `event`
  /// when set, `msg`.
  json,
};

/// `text` or `json`.
const char* to_string(log_format x);

/// Parses a format's name; the error lists the names.
caf::expected<log_format> parse_log_format(const std::string& text);

/// A node's log: structured lines (time, level, node, group, event id,
/// message) to one `FILE*`, whole lines only, from any thread. The level can
/// change while the node runs (`troupe shell`'s `log level`). Counts the
/// lines it wrote per level, for `/metrics`.
class logger {
public:
  /// A logger for node `node` writing to `out` (not owned; stdout for nodes).
  static std::shared_ptr<logger> make(std::string node, log_level level, log_format format,
                                      std::FILE* out = stdout);

  logger(std::string node, log_level level, log_format format, std::FILE* out);

  logger(const logger&) = delete;
  logger& operator=(const logger&) = delete;

  /// True if a line at `x` would be written: test it before building an
  /// expensive message.
  bool enabled(log_level x) const {
    return static_cast<uint8_t>(x) <= level_.load(std::memory_order_relaxed);
  }

  log_level level() const {
    return static_cast<log_level>(level_.load());
  }

  void set_level(log_level x) {
    level_.store(static_cast<uint8_t>(x));
  }

  log_format format() const {
    return format_;
  }

  const std::string& node() const {
    return node_;
  }

  /// Writes one line if `x` is enabled. `group` and `event` may be empty.
  void write(log_level x, const std::string& group, const std::string& event,
             const std::string& msg);

  /// The line `write` would produce at Unix time `ms`, without its newline.
  std::string format_line(int64_t ms, log_level x, const std::string& group,
                          const std::string& event, const std::string& msg) const;

  /// Lines written at `x` since the start.
  uint64_t lines(log_level x) const {
    return counts_[static_cast<size_t>(x)].load(std::memory_order_relaxed);
  }

private:
  std::string node_;
  std::atomic<uint8_t> level_;
  log_format format_;
  std::FILE* out_;
  std::mutex mtx_;
  std::array<std::atomic<uint64_t>, 5> counts_{};
};

/// What an actor logs through: the node's logger with the fields it fixes
/// (its group). Cheap to copy; an empty one (no logger) writes nothing.
/// `log("text")` writes at `info`, as the plain log functions did.
class log_fn {
public:
  log_fn() = default;

  explicit log_fn(std::shared_ptr<logger> l, std::string group = {})
    : logger_(std::move(l)), group_(std::move(group)) {
  }

  explicit operator bool() const {
    return logger_ != nullptr;
  }

  /// The same logger with `group` as the group of every line.
  log_fn with_group(std::string group) const {
    return log_fn{logger_, std::move(group)};
  }

  const std::string& group() const {
    return group_;
  }

  const std::shared_ptr<logger>& get() const {
    return logger_;
  }

  bool enabled(log_level x) const {
    return logger_ && logger_->enabled(x);
  }

  void write(log_level x, const std::string& msg, const std::string& event = {}) const {
    if (logger_)
      logger_->write(x, group_, event, msg);
  }

  void operator()(const std::string& msg) const {
    write(log_level::info, msg);
  }

  void error(const std::string& msg, const std::string& event = {}) const {
    write(log_level::error, msg, event);
  }

  void warning(const std::string& msg, const std::string& event = {}) const {
    write(log_level::warning, msg, event);
  }

  void info(const std::string& msg, const std::string& event = {}) const {
    write(log_level::info, msg, event);
  }

  void debug(const std::string& msg, const std::string& event = {}) const {
    write(log_level::debug, msg, event);
  }

  void trace(const std::string& msg, const std::string& event = {}) const {
    write(log_level::trace, msg, event);
  }

private:
  std::shared_ptr<logger> logger_;
  std::string group_;
};

/// Lets a busy source log the first `burst` lines of every second and
/// count the rest, so a flood of bad input cannot flood the log (OTP's
/// logger drops under overload the same way). Not thread-safe: one per
/// actor.
class log_budget {
public:
  explicit log_budget(uint32_t burst = 20) : burst_(burst) {
  }

  /// True if this line may be written now. When a new second starts after
  /// lines were held back, `held` tells how many (else it is 0).
  bool take(uint64_t& held);

  /// `take` at Unix second `second`.
  bool take_at(int64_t second, uint64_t& held);

private:
  uint32_t burst_;
  int64_t second_ = 0;
  uint32_t used_ = 0;
  uint64_t held_ = 0;
};

} // namespace troupe
