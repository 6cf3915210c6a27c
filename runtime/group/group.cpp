#include "runtime/group/group.hpp"

#include <deque>
#include <unordered_map>

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/histogram.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/supervision/supervisor.hpp"

namespace troupe {

// -- answers given later ---------------------------------------------------------

answer_later answer_later::take(caf::event_based_actor* self) {
  answer_later a;
  a.wrapped_ = self->current_mailbox_element()->content().match_elements<envelope>();
  a.rp_ = self->make_response_promise();
  return a;
}

void answer_later::deliver(caf::error err) {
  if (rp_.pending())
    rp_.deliver(std::move(err));
}

void answer_later::deliver_message(caf::message msg) {
  if (!rp_.pending())
    return;
  if (wrapped_)
    rp_.deliver(reply{std::move(msg)});
  else
    rp_.deliver(std::move(msg));
}

namespace {

// -- workers -------------------------------------------------------------------

/// Wraps the user's behaviour: opens the envelope, runs the handler and
/// returns its answer as a `reply`, the router's acknowledgement. A handler
/// that throws ends the worker; CAF answers the envelope with the error, which
/// tells the router exactly which message crashed it.
caf::behavior worker_impl(caf::event_based_actor* self, worker_fn fn, size_t index) {
  report_exceptions(self);
  auto inner = std::make_shared<caf::behavior>(fn(self, index));
  // What a worker sends itself (timers, its own polling loop) goes to its
  // behaviour directly; only the router's messages come in envelopes.
  self->set_default_handler(
    [inner](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      auto msg = x.move_content_to_message();
      if (auto result = (*inner)(msg))
        return std::move(*result);
      return caf::sec::unexpected_message;
    });
  return {
    [self, inner](envelope& e) -> caf::result<reply> {
      auto result = (*inner)(e.content);
      if (!result)
        return caf::make_error(caf::sec::unexpected_message);
      // The handler took the request to answer it later (answer_later).
      if (self->current_mailbox_element()->mid.is_answered())
        return caf::delegated<reply>{};
      return reply{std::move(*result)};
    },
  };
}


// -- the router ------------------------------------------------------------------

/// A message the group accepted and has not answered.
struct entry {
  caf::message content;
  caf::response_promise rp;
  bool is_request = false;
  /// Came as an `envelope` (from a cluster router): answered with a `reply`.
  bool wrapped = false;
  /// The worker slot (key_hash), or the slot it was last sent to.
  size_t slot = 0;
  uint32_t crashes = 0;
  /// When a requester stops waiting: `call_timeout` after acceptance.
  std::chrono::steady_clock::time_point deadline;
  std::chrono::steady_clock::time_point accepted_at;
  /// Bumped on every dispatch, so a late answer to an earlier one is ignored.
  uint32_t dispatch = 0;
  /// The worker holding it; invalid while it waits in a queue.
  caf::actor_addr worker;
  std::string last_reason;
};

struct slot {
  caf::actor worker;
  size_t in_flight = 0;
  bool started_before = false;
  /// Messages waiting for this worker (key_hash routing only).
  std::deque<uint64_t> queue;
};

struct router_state;
using router_actor = caf::stateful_actor<router_state>;

/// The state of a group's router. Owned by the router actor.
struct router_state {
  static inline const char* name = "troupe.group";

  router_actor* self = nullptr;
  group_spec spec;
  caf::actor sup;
  /// Shared with the exit hook that stops the supervisor if the router dies.
  std::shared_ptr<caf::actor> sup_ref = std::make_shared<caf::actor>();
  uint64_t generation = 0;
  bool down = false;
  bool stopping = false;
  caf::error stop_reason;
  std::vector<slot> slots;
  /// Messages waiting for any worker (round_robin routing only).
  std::deque<uint64_t> shared_queue;
  std::unordered_map<uint64_t, entry> pending;
  uint64_t next_seq = 1;
  size_t next_rr = 0;
  /// True while a sweep for call timeouts is scheduled.
  bool sweep_armed = false;
  group_status stats;
  /// Acceptance to answer of completed requests.
  histogram latency;
  std::deque<dead_letter> recent_dead;
  log_budget dead_budget;

  // -- the worker supervisor ---------------------------------------------------

  caf::error start_supervisor() {
    ++generation;
    supervisor_spec s;
    s.name = spec.name + ".workers";
    s.strat = spec.strat;
    s.intensity = spec.intensity;
    s.period = spec.period;
    s.backoff = spec.backoff;
    s.log = spec.log;
    auto router = self->address();
    for (size_t i = 0; i < spec.instances; ++i) {
      child_spec c;
      c.name = spec.name + "/" + std::to_string(i);
      c.shutdown = spec.worker_shutdown;
      c.start = [fn = spec.worker, i, router, gen = generation,
                 detached = spec.detached](caf::actor_system& sys) -> caf::expected<caf::actor> {
        auto w = detached ? sys.spawn<caf::detached>(worker_impl, fn, i)
                          : sys.spawn(worker_impl, fn, i);
        caf::anon_send(caf::actor_cast<caf::actor>(router), worker_up_atom::value, gen,
                       static_cast<uint64_t>(i), w);
        return w;
      };
      s.children.push_back(std::move(c));
    }
    auto started = spawn_supervisor(self->system(), std::move(s));
    if (!started)
      return started.error();
    sup = *started;
    *sup_ref = sup;
    self->monitor(sup);
    down = false;
    return caf::none;
  }

  void on_worker_up(uint64_t gen, uint64_t idx, caf::actor& w) {
    if (gen != generation || stopping || idx >= slots.size())
      return;
    auto& s = slots[idx];
    if (s.started_before)
      ++stats.worker_restarts;
    s.started_before = true;
    s.worker = w;
    s.in_flight = 0;
    self->monitor(w);
    pump();
  }

  void on_down(caf::down_msg& msg) {
    if (sup && msg.source == sup.address()) {
      on_supervisor_down(msg.reason);
      return;
    }
    for (auto& s : slots) {
      if (s.worker && s.worker.address() == msg.source) {
        s.worker = nullptr;
        s.in_flight = 0;
      }
    }
    // Nothing to blame here: every message sent to the dead worker gets its
    // own answer from CAF, the one it crashed on `runtime_error` and the rest
    // `request_receiver_down`, even those sent after it died, whose bounces
    // arrive after this down message.
    pump();
  }

  void on_supervisor_down(const caf::error& reason) {
    sup = nullptr;
    *sup_ref = nullptr;
    for (auto& s : slots) {
      s.worker = nullptr;
      s.in_flight = 0;
    }
    if (stopping) {
      self->quit(stop_reason);
      return;
    }
    down = true;
    spec.log.error("group " + spec.name + " down (" + render(reason) + "): "
                   + (spec.fallback ? "its fallback answers" : "requests fail")
                   + "; restarting in " + to_duration_string(spec.restart_delay));
    // Callers waiting for an answer get the fallback now; fire-and-forget
    // messages wait (bounded by max_in_flight) for the group to return.
    std::vector<uint64_t> requests;
    for (auto& [seq, e] : pending)
      if (e.is_request)
        requests.push_back(seq);
    for (auto seq : requests)
      answer_degraded(seq, caf::make_error(ec::group_down, spec.name, render(reason)));
    for (auto& [seq, e] : pending) {
      if (e.worker) {
        e.worker = nullptr;
        ++e.dispatch;
        requeue(seq, false);
      }
    }
    self->delayed_send(self, spec.restart_delay, restart_atom::value, generation);
  }

  void on_restart_due(uint64_t gen) {
    if (gen != generation || !down || stopping)
      return;
    ++stats.group_restarts;
    if (auto err = start_supervisor()) {
      // Could not even spawn: try again after the same delay.
      spec.log.error("group " + spec.name + " cannot restart (" + render(err) + "), trying again in "
                     + to_duration_string(spec.restart_delay));
      self->delayed_send(self, spec.restart_delay, restart_atom::value, generation);
      return;
    }
    spec.log.warning("group " + spec.name + " restarted");
  }

  // -- accepting -----------------------------------------------------------------

  /// Delivers an answer, wrapped in a `reply` for a cluster router.
  static void answer(caf::response_promise& rp, bool wrapped, caf::message content) {
    if (wrapped)
      rp.deliver(reply{std::move(content)});
    else
      rp.deliver(std::move(content));
  }

  caf::result<caf::message> accept(caf::message content, bool is_request, bool wrapped) {
    auto rp = self->make_response_promise();
    if (stopping) {
      refuse(rp, is_request, std::move(content), caf::make_error(ec::group_stopping, spec.name));
      return rp;
    }
    if (down && is_request) {
      ++stats.accepted;
      answer(rp, wrapped, fallback_for(content, caf::make_error(ec::group_down, spec.name)));
      return rp;
    }
    if (pending.size() >= spec.max_in_flight) {
      ++stats.rejected;
      refuse(rp, is_request, std::move(content),
             caf::make_error(ec::group_saturated, spec.name));
      return rp;
    }
    ++stats.accepted;
    auto seq = next_seq++;
    auto& e = pending[seq];
    e.content = std::move(content);
    e.is_request = is_request;
    e.wrapped = wrapped;
    e.accepted_at = std::chrono::steady_clock::now();
    if (is_request) {
      e.rp = std::move(rp);
      e.deadline = e.accepted_at + spec.call_timeout;
      arm_sweep();
    }
    if (spec.route == routing::key_hash) {
      uint64_t key = 0;
      try {
        key = spec.key(e.content);
      } catch (...) {
        key = 0; // a key function that throws must not end the router
      }
      e.slot = key % spec.instances;
      slots[e.slot].queue.push_back(seq);
      pump_slot(e.slot);
    } else {
      shared_queue.push_back(seq);
      pump();
    }
    return caf::message{};
  }

  /// Tells a requester why not, or dead-letters a fire-and-forget message.
  void refuse(caf::response_promise& rp, bool is_request, caf::message content,
              caf::error why) {
    if (is_request)
      rp.deliver(std::move(why));
    else
      dead(std::move(content), render(why), 0);
  }

  caf::message fallback_for(const caf::message& content, caf::error otherwise) {
    if (!spec.fallback)
      return caf::make_message(std::move(otherwise));
    ++stats.fallbacks;
    try {
      auto answer = spec.fallback(content);
      if (answer)
        return std::move(*answer);
      return caf::make_message(std::move(answer.error()));
    } catch (std::exception& ex) {
      return caf::make_message(caf::make_error(ec::fallback_failed, spec.name, ex.what()));
    }
  }

  void answer_degraded(uint64_t seq, caf::error otherwise) {
    auto i = pending.find(seq);
    if (i == pending.end())
      return;
    auto e = std::move(i->second);
    forget(seq, e);
    pending.erase(i);
    if (e.is_request)
      answer(e.rp, e.wrapped, fallback_for(e.content, std::move(otherwise)));
  }

  // -- dispatching ---------------------------------------------------------------

  void pump() {
    if (spec.route == routing::key_hash) {
      for (size_t i = 0; i < slots.size(); ++i)
        pump_slot(i);
      return;
    }
    while (!shared_queue.empty()) {
      auto n = slots.size();
      size_t chosen = n;
      for (size_t k = 0; k < n; ++k) {
        auto i = (next_rr + k) % n;
        if (slots[i].worker && slots[i].in_flight < spec.worker_window) {
          chosen = i;
          break;
        }
      }
      if (chosen == n)
        return;
      next_rr = (chosen + 1) % n;
      auto seq = shared_queue.front();
      shared_queue.pop_front();
      dispatch(seq, chosen);
    }
  }

  void pump_slot(size_t i) {
    auto& s = slots[i];
    while (s.worker && s.in_flight < spec.worker_window && !s.queue.empty()) {
      auto seq = s.queue.front();
      s.queue.pop_front();
      dispatch(seq, i);
    }
  }

  void dispatch(uint64_t seq, size_t i) {
    auto it = pending.find(seq);
    if (it == pending.end())
      return;
    auto& e = it->second;
    auto& s = slots[i];
    e.slot = i;
    e.worker = s.worker.address();
    auto d = ++e.dispatch;
    ++s.in_flight;
    // No per-request timer (CAF arms one per timed request): the sweep
    // enforces call_timeout for all of them.
    self->request(s.worker, caf::infinite, envelope{e.content})
      .then([this, seq, d](reply& r) { on_reply(seq, d, r); },
            [this, seq, d](caf::error& err) { on_failure(seq, d, err); });
  }

  /// Releases the worker window a dispatched entry holds.
  void release(const entry& e) {
    if (!e.worker)
      return;
    auto& s = slots[e.slot];
    if (s.worker && s.worker.address() == e.worker && s.in_flight > 0)
      --s.in_flight;
  }

  void on_reply(uint64_t seq, uint32_t d, reply& r) {
    auto i = pending.find(seq);
    if (i == pending.end() || i->second.dispatch != d)
      return;
    auto& e = i->second;
    release(e);
    ++stats.completed;
    latency.record(std::chrono::steady_clock::now() - e.accepted_at);
    if (e.is_request)
      answer(e.rp, e.wrapped, std::move(r.content));
    auto slot_index = e.slot;
    pending.erase(i);
    if (spec.route == routing::key_hash)
      pump_slot(slot_index);
    else
      pump();
  }

  void on_failure(uint64_t seq, uint32_t d, caf::error& err) {
    auto i = pending.find(seq);
    if (i == pending.end() || i->second.dispatch != d)
      return;
    auto& e = i->second;
    release(e);
    e.worker = nullptr;
    if (is(err, caf::sec::request_receiver_down)) {
      // The worker died before it started this one: move it on, no blame.
      ++stats.requeued;
      requeue(seq, true);
    } else if (is(err, caf::sec::runtime_error)) {
      // CAF answers the message being handled when the handler throws:
      // this message crashed its worker.
      on_crash(seq, e, err);
    } else {
      // Any other error is the answer (for example an unexpected message).
      ++stats.completed;
      if (e.is_request)
        e.rp.deliver(std::move(err));
      pending.erase(i);
    }
    sweep_dead();
    pump();
  }

  void on_crash(uint64_t seq, entry& e, const caf::error& reason) {
    ++e.crashes;
    e.last_reason = render(reason);
    if (e.crashes >= spec.poison_after) {
      e.dispatch = UINT32_MAX; // marks it for sweep_dead()
      return;
    }
    ++stats.redelivered;
    requeue(seq, true);
  }

  /// Dead-letters the entries `on_crash` found to be poison.
  void sweep_dead() {
    for (auto i = pending.begin(); i != pending.end();) {
      if (i->second.dispatch != UINT32_MAX) {
        ++i;
        continue;
      }
      auto e = std::move(i->second);
      forget(i->first, e);
      i = pending.erase(i);
      auto why = "poison message: crashed its worker " + std::to_string(e.crashes)
                 + " times, last: " + e.last_reason;
      if (e.is_request)
        e.rp.deliver(caf::make_error(ec::poison_message, spec.name, why));
      dead(std::move(e.content), why, e.crashes);
    }
  }

  /// Puts `seq` back in line; at the front when it was in line before, so
  /// that per-key order holds across a restart.
  void requeue(uint64_t seq, bool front) {
    auto& e = pending[seq];
    auto& q = spec.route == routing::key_hash ? slots[e.slot].queue : shared_queue;
    if (front)
      q.push_front(seq);
    else
      q.push_back(seq);
  }

  /// Removes `seq` from whichever queue holds it.
  void forget(uint64_t seq, const entry& e) {
    auto& q = spec.route == routing::key_hash ? slots[e.slot].queue : shared_queue;
    for (auto i = q.begin(); i != q.end(); ++i) {
      if (*i == seq) {
        q.erase(i);
        return;
      }
    }
  }

  void dead(caf::message content, std::string why, uint32_t crashes) {
    ++stats.dead_letters;
    uint64_t held = 0;
    if (dead_budget.take(held))
      spec.log.warning("dead letter: " + why
                       + (held ? " (" + std::to_string(held) + " more were not logged)" : ""));
    dead_letter letter{spec.name, std::move(why), std::move(content), crashes};
    if (spec.dead_letters)
      self->send(spec.dead_letters, letter);
    recent_dead.push_back(std::move(letter));
    while (recent_dead.size() > spec.dead_letter_history)
      recent_dead.pop_front();
  }

  // -- call timeouts ---------------------------------------------------------------

  caf::timespan sweep_period() const {
    return std::max(caf::timespan{spec.call_timeout / 4},
                    caf::timespan{std::chrono::milliseconds(5)});
  }

  void arm_sweep() {
    if (sweep_armed)
      return;
    sweep_armed = true;
    self->delayed_send(self, sweep_period(), sweep_atom::value);
  }

  /// Answers every request past its deadline, queued or at a worker (whose
  /// late answer is then ignored), and re-arms while requests remain.
  void on_sweep() {
    sweep_armed = false;
    auto now = std::chrono::steady_clock::now();
    std::vector<uint64_t> expired;
    bool requests_left = false;
    for (auto& [seq, e] : pending) {
      if (!e.is_request)
        continue;
      if (e.deadline <= now)
        expired.push_back(seq);
      else
        requests_left = true;
    }
    for (auto seq : expired) {
      auto& e = pending[seq];
      release(e);
      ++e.dispatch;
      answer_degraded(seq, caf::make_error(ec::call_timeout, spec.name));
    }
    if (requests_left)
      arm_sweep();
    if (!expired.empty())
      pump();
  }

  // -- stopping ------------------------------------------------------------------

  void on_exit_signal(caf::exit_msg& msg) {
    if (!msg.reason || msg.reason == caf::exit_reason::normal || stopping)
      return;
    stopping = true;
    stop_reason = msg.reason;
    std::vector<uint64_t> all;
    for (auto& kv : pending)
      all.push_back(kv.first);
    for (auto seq : all) {
      auto e = std::move(pending[seq]);
      pending.erase(seq);
      if (e.is_request)
        e.rp.deliver(caf::make_error(ec::group_stopping, spec.name));
      else
        dead(std::move(e.content), "group stopped before the message was handled", e.crashes);
    }
    if (sup)
      self->send_exit(sup, caf::exit_reason::user_shutdown);
    else
      self->quit(stop_reason);
  }

  // -- status --------------------------------------------------------------------

  group_status status() const {
    auto result = stats;
    result.name = spec.name;
    result.instances = static_cast<uint32_t>(spec.instances);
    result.live_workers = 0;
    for (auto& s : slots)
      if (s.worker)
        ++result.live_workers;
    result.state = down ? "down" : result.live_workers == spec.instances ? "up" : "degraded";
    result.in_flight = pending.size();
    result.queued = shared_queue.size();
    for (auto& s : slots)
      result.queued += s.queue.size();
    result.latency_buckets = latency.raw();
    result.latency_sum_ms = latency.sum_ms();
    return result;
  }
};

caf::behavior router_impl(router_actor* self, group_spec spec) {
  auto& st = self->state;
  st.self = self;
  st.spec = std::move(spec);
  st.slots.resize(st.spec.instances);
  self->set_exit_handler([self](caf::exit_msg& msg) { self->state.on_exit_signal(msg); });
  self->set_down_handler([self](caf::down_msg& msg) { self->state.on_down(msg); });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& x) {
    auto is_request = self->current_mailbox_element()->mid.is_request();
    return self->state.accept(x.move_content_to_message(), is_request, false);
  });
  self->attach_functor([sup = st.sup_ref](const caf::error&) {
    if (*sup)
      caf::anon_send_exit(*sup, caf::exit_reason::user_shutdown);
  });
  if (auto err = st.start_supervisor())
    self->quit(std::move(err));
  return {
    // A message a cluster router forwards from another node (or this one).
    [self](envelope& e) { return self->state.accept(std::move(e.content), true, true); },
    [self](status_atom) { return self->state.status(); },
    [self](dead_letters_atom) {
      auto& d = self->state.recent_dead;
      return std::vector<dead_letter>(d.begin(), d.end());
    },
    [self](supervisor_atom) { return self->state.sup; },
    [self](worker_up_atom, uint64_t gen, uint64_t idx, caf::actor& w) {
      self->state.on_worker_up(gen, idx, w);
    },
    [self](restart_atom, uint64_t gen) { self->state.on_restart_due(gen); },
    [self](sweep_atom) { self->state.on_sweep(); },
  };
}

} // namespace

caf::expected<caf::actor> spawn_group(caf::actor_system& sys, group_spec spec) {
  if (auto err = validate(spec))
    return err;
  return sys.spawn(router_impl, std::move(spec));
}

caf::expected<child_spec> group_child(group_spec spec,
                                      std::function<void(const caf::actor&)> on_start) {
  if (auto err = validate(spec))
    return err;
  child_spec result;
  result.name = spec.name;
  result.is_supervisor = true;
  result.shutdown = shutdown_spec::wait();
  result.start = [spec, on_start](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto router = spawn_group(sys, spec);
    if (router && on_start)
      on_start(*router);
    return router;
  };
  return result;
}

} // namespace troupe
