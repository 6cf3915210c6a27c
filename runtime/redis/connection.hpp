#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

namespace troupe::redis {

/// One Redis reply.
struct reply {
  enum kind_t { nil, integer, string, status, error, array };
  kind_t kind = nil;
  int64_t number = 0;
  /// The text of a string, status or error reply.
  std::string text;
  std::vector<reply> elements;
};

/// `redis://host:port` -> (host, port).
caf::expected<std::pair<std::string, uint16_t>> parse_url(const std::string& url);

/// A blocking connection to Redis (hiredis 0.14).
///
/// Blocking: use it from a detached actor or a thread of its own, never from
/// a CAF scheduler thread. Built by `make()`, which fails when the server
/// cannot be reached within the timeout. After an I/O error the connection
/// is dead (`alive()` is false) and every call fails at once: make a new one.
///
/// Counts, under the label `client` (the group that uses it), its round
/// trips and its failures in the process's registry
/// (`troupe_redis_commands_total`, `troupe_redis_errors_total` with kind
/// `connect`, `io` or `reply`), which the node serves at `/metrics`.
class connection {
public:
  /// Connects, and authenticates with the process's Redis password when one
  /// is set (`set_password`): a refused password fails like an unreachable
  /// server (kind `connect`), naming the reason.
  static caf::expected<std::unique_ptr<connection>>
  make(const std::string& url, caf::timespan timeout, const std::string& client = "troupe");

  /// The password every later connection of this process presents (`AUTH`);
  /// empty: none. Set once at start, from `redis_password_file` (or the
  /// embedded Redis's generated one).
  static void set_password(std::string password);

  ~connection();

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  bool alive() const;

  /// How long each later reply may take before it counts as an I/O error
  /// (the connection is then dead): a large pipeline gets longer than a
  /// ping.
  void set_timeout(caf::timespan timeout);

  /// Sends every command, then reads every reply: one round trip for all.
  /// A Redis error reply is a reply (kind `error`), not a failure; failures
  /// are I/O errors and timeouts.
  caf::expected<std::vector<reply>> pipeline(const std::vector<std::vector<std::string>>& commands);

  /// One command, one round trip.
  caf::expected<reply> command(const std::vector<std::string>& args);

private:
  connection(void* ctx, const std::string& client);
  caf::expected<std::vector<reply>> round_trip(const std::vector<std::vector<std::string>>& cmds);

  void* ctx_;
  std::atomic<uint64_t>* commands_;
  std::atomic<uint64_t>* io_errors_;
  std::atomic<uint64_t>* reply_errors_;
};

} // namespace troupe::redis
