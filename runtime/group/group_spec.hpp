#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/response_promise.hpp>
#include <caf/timespan.hpp>

#include "runtime/supervision/spec.hpp"

namespace troupe {

/// How a group's router picks a worker.
enum class routing : uint8_t {
  /// The next worker with room, in turn.
  round_robin,
  /// `key(message) % instances`: per-key state stays with one worker, and
  /// messages of one key keep their order.
  key_hash,
};

/// Builds the behaviour of worker `index` (0-based); called again for each
/// restart, so state captured in the behaviour starts afresh (as in OTP).
/// The value a handler returns is the answer; a handler that answers later
/// takes the request with `answer_later::take` and returns
/// `caf::delegated<T...>{}`.
using worker_fn = std::function<caf::behavior(caf::event_based_actor* self, size_t index)>;

/// A request a worker answers later, as a gen_server returns `{noreply, S}`
/// and calls `gen_server:reply/2` when the answer is ready (for example once
/// Kafka confirmed a delivery): the worker takes other messages meanwhile.
/// Deliver exactly once, from the worker's own handlers. A worker that dies
/// first never answers; the group's call timeout and restart deal with it.
class answer_later {
public:
  answer_later() = default;

  /// Takes the request being handled (inside a worker's handler only).
  static answer_later take(caf::event_based_actor* self);

  template <class... Ts>
  void deliver(Ts&&... xs) {
    deliver_message(caf::make_message(std::forward<Ts>(xs)...));
  }

  void deliver(caf::error err);

  bool pending() const {
    return routed_ ? !*done_ : rp_.pending();
  }

private:
  void deliver_message(caf::message msg);

  /// A request made to the worker directly.
  caf::response_promise rp_;
  /// A message its group's router handed over: answered by acknowledging
  /// `seq_` to `router_`, sent by `self_` (the worker).
  bool routed_ = false;
  caf::event_based_actor* self_ = nullptr;
  caf::actor router_;
  uint64_t seq_ = 0;
  /// Shared by copies, so that only one delivers.
  std::shared_ptr<bool> done_;
};

/// The routing key's hash of a message (`routing::key_hash`).
using key_fn = std::function<uint64_t(const caf::message&)>;

/// The group's answer to a request while it cannot answer for real: its
/// supervisor gave up, or no worker answered within the call timeout. The
/// news platform's circuit-breaker fallback ("trending instead of personalised").
using fallback_fn = std::function<caf::expected<caf::message>(const caf::message&)>;

/// A supervised actor group: N workers under a supervisor, behind a router
/// with a stable address.
struct group_spec {
  std::string name;
  size_t instances = 1;
  worker_fn worker;
  routing route = routing::round_robin;
  key_fn key;

  // -- the workers' supervisor ---------------------------------------------------
  strategy strat = strategy::one_for_one;
  int intensity = 5;
  caf::timespan period = std::chrono::seconds(5);
  std::optional<backoff_spec> backoff;
  shutdown_spec worker_shutdown = shutdown_spec::after(std::chrono::seconds(5));
  /// The workers do blocking I/O (Redis, Kafka): each runs on a thread of
  /// its own (CAF's detached actors), never on a scheduler thread.
  bool detached = false;

  // -- degradation -----------------------------------------------------------------
  /// Optional; without it, requests get `ec::group_down` / `ec::call_timeout`.
  fallback_fn fallback;
  /// How long the group stays down after its supervisor gave up.
  caf::timespan restart_delay = std::chrono::seconds(1);

  // -- flow control and delivery ---------------------------------------------------
  /// Messages accepted and not yet answered; past it, `ec::group_saturated`.
  size_t max_in_flight = 10000;
  /// Messages at one worker at once.
  size_t worker_window = 64;
  /// A message that crashed its worker this often is a poison message.
  uint32_t poison_after = 3;
  /// How long a request may wait for its answer inside the group.
  caf::timespan call_timeout = std::chrono::seconds(5);
  /// Receives a `dead_letter` for each message the group gives up on (optional).
  caf::actor dead_letters;
  /// How many dead letters the router keeps for `dead_letters_atom`.
  size_t dead_letter_history = 64;

  // -- reports -----------------------------------------------------------------------
  /// The node's log with this group as the lines' group: the workers'
  /// supervisor reports crashes to it, and the router its dead letters (at
  /// most 20 lines a second) and the group going down and coming back.
  log_fn log;
};

/// Returns an error naming the problem if `x` makes no sense (zero instances,
/// no worker, key routing without a key, zero window, ...).
caf::error validate(const group_spec& x);

} // namespace troupe

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::group_spec)
