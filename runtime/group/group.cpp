#include "runtime/group/group.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <vector>

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

namespace {

// -- the worker's side of routing -------------------------------------------------

/// What a worker knows about the routed message it is handling, for
/// `answer_later::take` and its exception handler. Set only while the
/// worker's handler runs, on the thread running it.
struct routed_context {
  caf::event_based_actor* self = nullptr;
  uint64_t seq = 0;
  caf::actor router;
  /// The handler took the message to answer later.
  bool taken = false;
};

thread_local routed_context* current_routed = nullptr;

} // namespace

answer_later answer_later::take(caf::event_based_actor* self) {
  answer_later a;
  if (current_routed != nullptr && current_routed->self == self) {
    current_routed->taken = true;
    a.routed_ = true;
    a.self_ = self;
    a.router_ = current_routed->router;
    a.seq_ = current_routed->seq;
    a.done_ = std::make_shared<bool>(false);
    return a;
  }
  a.rp_ = self->make_response_promise();
  return a;
}

void answer_later::deliver(caf::error err) {
  deliver_message(caf::make_message(std::move(err)));
}

void answer_later::deliver_message(caf::message msg) {
  if (!routed_) {
    if (rp_.pending())
      rp_.deliver(std::move(msg));
    return;
  }
  if (*done_)
    return;
  *done_ = true;
  routed_acks acks;
  acks.seqs.push_back(seq_);
  acks.answers.push_back(std::move(msg));
  self_->send(router_, std::move(acks));
}

namespace {

// -- workers -------------------------------------------------------------------

/// A handler slower than this on average (ns) has each answer sent at once.
constexpr double slow_handler_ns = 20000.0;

/// Acknowledgements a worker collected and has not sent yet.
struct worker_acks {
  caf::actor router;
  routed_acks batch;
  bool flush_armed = false;
  /// The routed message being handled (0: none), blamed if the handler throws.
  uint64_t current = 0;
  /// How long the handler takes, a moving average (ns): a worker whose
  /// handler is slow acknowledges each message at once, since a batch would
  /// hold earlier answers for the length of the next handler.
  double handler_ns = 0;
  /// Messages handled: the first of each delivery and every 16th are timed
  /// (two clock reads cost as much as a light handler).
  uint64_t handled = 0;

  void flush(caf::event_based_actor* self) {
    if (batch.seqs.empty() || !router)
      return;
    self->send(router, std::move(batch));
    batch = routed_acks{};
  }
};

/// Wraps the user's behaviour: runs the handler on each routed message (one
/// `routed`, or a `routed_batch` from a busy router, in order) and
/// acknowledges it, with the handler's answer, to the router. Acknowledgements
/// go at once when nothing else waits in the mailbox, otherwise together once
/// the messages queued now are handled (or 256 of them), so a busy worker
/// sends one acknowledgement for many messages. A handler that throws ends the
/// worker; its exception handler first sends what it acknowledged and then
/// names the message it died on, which tells the router exactly which
/// message crashed it: the messages it held and had not finished go to its
/// replacement unblamed.
caf::behavior worker_impl(caf::event_based_actor* self, worker_fn fn, size_t index) {
  auto acks = std::make_shared<worker_acks>();
  self->set_exception_handler(
    [acks](caf::scheduled_actor* s, std::exception_ptr& eptr) -> caf::error {
      current_routed = nullptr;
      auto* me = static_cast<caf::event_based_actor*>(s);
      acks->flush(me);
      if (acks->current != 0 && acks->router)
        me->send(acks->router, crashed_on_atom::value, acks->current);
      return exception_reason(eptr);
    });
  auto inner = std::make_shared<caf::behavior>(fn(self, index));
  // What a worker sends itself (timers, its own polling loop) goes to its
  // behaviour directly; only the router's messages come as `routed`.
  self->set_default_handler(
    [inner](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      auto msg = x.move_content_to_message();
      if (auto result = (*inner)(msg))
        return std::move(*result);
      return caf::sec::unexpected_message;
    });
  // Runs the handler on one routed message and collects its acknowledgement.
  auto handle = [self, inner, acks](routed& r, bool first) {
    auto* element = self->current_mailbox_element();
    if (!acks->router)
      acks->router = caf::actor_cast<caf::actor>(element->sender);
    routed_context ctx{self, r.seq, acks->router, false};
    current_routed = &ctx;
    acks->current = r.seq;
    auto timed = first || acks->handled++ % 16 == 0;
    std::chrono::steady_clock::time_point started;
    if (timed)
      started = std::chrono::steady_clock::now();
    auto result = (*inner)(r.content);
    if (timed) {
      auto took = std::chrono::steady_clock::now() - started;
      acks->handler_ns = 0.8 * acks->handler_ns
                         + 0.2 * std::chrono::duration<double, std::nano>(took).count();
    }
    current_routed = nullptr;
    acks->current = 0;
    // A response promise of the handler's own takes the message's sender
    // with it: given back, for the next message of a batch.
    bool promised = !element->sender;
    if (promised)
      element->sender = caf::actor_cast<caf::strong_actor_ptr>(acks->router);
    // Answered later: taken with answer_later (delivered as an
    // acknowledgement), or with that promise, in which case no
    // acknowledgement comes and a request is answered at the call timeout.
    if (ctx.taken || promised)
      return;
    acks->batch.seqs.push_back(r.seq);
    if (result)
      acks->batch.answers.push_back(std::move(*result));
    else
      acks->batch.answers.push_back(
        caf::make_message(caf::make_error(caf::sec::unexpected_message)));
    // A slow handler's answer goes now, not after the rest of its batch.
    if (acks->handler_ns > slow_handler_ns)
      acks->flush(self);
  };
  // Sends the acknowledgements now if nothing else waits or the handler is
  // slow (over 20 us on average), else once the messages queued now are
  // handled (or 256 were collected).
  auto acknowledge = [self, acks] {
    if (acks->batch.seqs.empty())
      return;
    if (self->mailbox().empty() || acks->batch.seqs.size() >= 256
        || acks->handler_ns > slow_handler_ns) {
      acks->flush(self);
    } else if (!acks->flush_armed) {
      acks->flush_armed = true;
      self->send(self, ack_flush_atom::value);
    }
  };
  return {
    [handle, acknowledge](routed& r) {
      handle(r, true);
      acknowledge();
    },
    [handle, acknowledge](routed_batch& b) {
      bool first = true;
      for (auto& r : b.items) {
        handle(r, first);
        first = false;
      }
      acknowledge();
    },
    [self, acks](ack_flush_atom) {
      acks->flush_armed = false;
      acks->flush(self);
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
  /// The incarnation of the worker holding it (see `slot`); 0 while it
  /// waits in a queue.
  uint64_t held_by = 0;
  /// Its worker named it as the message it is dying on.
  bool blamed = false;
  /// The order the router accepted it in (what it is requeued by).
  uint64_t order = 0;
  std::string last_reason;

  /// Back to a default entry, releasing the message and the promise (cheaper
  /// than assigning a new one: a one-way message has no promise to reset).
  void reset() {
    content = caf::message{};
    if (is_request)
      rp = caf::response_promise{};
    is_request = false;
    wrapped = false;
    slot = 0;
    crashes = 0;
    dispatch = 0;
    held_by = 0;
    blamed = false;
    order = 0;
    if (!last_reason.empty())
      last_reason = std::string{};
  }
};

/// The messages a router holds, by ticket: a slab of cells reused through a
/// free list, so that accepting and finishing a message allocate nothing
/// once the slab has grown to the group's peak in flight. A ticket is its
/// cell's index (low 32 bits) and that cell's use (high 32 bits, never 0):
/// an acknowledgement for an earlier use of the cell finds nothing.
class entry_table {
public:
  /// `first`: the ticket (0 while the cell is free); `second`: the entry.
  struct cell {
    uint64_t first = 0;
    entry second;
  };

  /// Walks the cells in use.
  class iterator {
  public:
    iterator(std::deque<cell>* cells, size_t i) : cells_(cells), i_(i) {
      skip();
    }
    cell& operator*() const {
      return (*cells_)[i_];
    }
    cell* operator->() const {
      return &(*cells_)[i_];
    }
    iterator& operator++() {
      ++i_;
      skip();
      return *this;
    }
    bool operator!=(const iterator& other) const {
      return i_ != other.i_;
    }
    bool operator==(const iterator& other) const {
      return i_ == other.i_;
    }

  private:
    void skip() {
      while (i_ < cells_->size() && (*cells_)[i_].first == 0)
        ++i_;
    }
    std::deque<cell>* cells_;
    size_t i_;
  };

  /// A new entry's ticket.
  uint64_t add() {
    uint64_t idx;
    if (!free_.empty()) {
      idx = free_.back();
      free_.pop_back();
    } else {
      idx = cells_.size();
      cells_.emplace_back();
    }
    uses_ = uses_ == UINT32_MAX ? 1 : uses_ + 1;
    auto ticket = (uint64_t{uses_} << 32) | idx;
    cells_[idx].first = ticket;
    ++live_;
    return ticket;
  }

  /// The entry of `ticket`, or null when it is finished (or never was).
  entry* find(uint64_t ticket) {
    auto idx = ticket & UINT32_MAX;
    if (ticket == 0 || idx >= cells_.size() || cells_[idx].first != ticket)
      return nullptr;
    return &cells_[idx].second;
  }

  /// The entry of a ticket known to be held.
  entry& operator[](uint64_t ticket) {
    return cells_[ticket & UINT32_MAX].second;
  }

  /// Frees `ticket`'s cell (its entry is reset: the message and the
  /// promise go now).
  void erase(uint64_t ticket) {
    auto idx = ticket & UINT32_MAX;
    if (idx >= cells_.size() || cells_[idx].first != ticket)
      return;
    cells_[idx].first = 0;
    cells_[idx].second.reset();
    free_.push_back(static_cast<uint32_t>(idx));
    --live_;
  }

  iterator erase(iterator i) {
    erase(i->first);
    return ++i;
  }

  iterator begin() {
    return iterator{&cells_, 0};
  }

  iterator end() {
    return iterator{&cells_, cells_.size()};
  }

  size_t size() const {
    return live_;
  }

private:
  std::deque<cell> cells_;
  std::vector<uint32_t> free_;
  uint32_t uses_ = 0;
  size_t live_ = 0;
};

struct slot {
  caf::actor worker;
  /// Messages handed to this worker and not yet sent (see send_outboxes).
  std::vector<routed> outbox;
  /// Numbers each worker the slot had, never reused: what an entry records
  /// as the worker holding it (cheaper than a handle per message).
  uint64_t incarnation = 0;
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
  /// Every message accepted and not finished, by ticket (what `routed`,
  /// the acknowledgements and the queues carry as `seq`).
  entry_table pending;
  uint64_t next_order = 1;
  uint64_t next_incarnation = 1;
  /// True while a flush of the workers' outboxes is on its way.
  bool outbox_flush_armed = false;
  /// Most messages in one batch to a worker.
  static constexpr size_t max_batch = 256;
  /// Workers started and not yet seen down, with their incarnations: a
  /// replacement may be up before its predecessor's down message arrives.
  std::vector<std::pair<caf::actor_addr, uint64_t>> incarnations;
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
    s.outbox.clear();
    s.incarnation = next_incarnation++;
    incarnations.emplace_back(w.address(), s.incarnation);
    s.in_flight = 0;
    self->monitor(w);
    pump();
  }

  void on_down(caf::down_msg& msg) {
    if (sup && msg.source == sup.address()) {
      on_supervisor_down(msg.reason);
      return;
    }
    auto dead = incarnation_of(msg.source);
    if (dead == 0)
      return;
    incarnations.erase(std::find_if(incarnations.begin(), incarnations.end(),
                                    [&](auto& x) { return x.second == dead; }));
    for (auto& s : slots) {
      if (s.incarnation == dead) {
        s.worker = nullptr;
        s.outbox.clear();
        s.in_flight = 0;
      }
    }
    // Everything the dead worker held and had not acknowledged: its
    // acknowledgements and the name of the message it died on (sent from its
    // exception handler) came before this down message. The blamed message
    // is sent again (or dead-lettered as poison); the rest, never finished,
    // go to the replacement in their order, unblamed.
    std::vector<uint64_t> held;
    for (auto& [seq, e] : pending)
      if (e.held_by == dead)
        held.push_back(seq);
    std::sort(held.begin(), held.end(),
              [this](uint64_t a, uint64_t b) { return pending[a].order > pending[b].order; });
    for (auto seq : held) {
      auto& e = pending[seq];
      e.held_by = 0;
      ++e.dispatch;
      if (e.blamed) {
        e.blamed = false;
        on_crash(seq, e, msg.reason);
      } else {
        ++stats.requeued;
        requeue(seq, true);
      }
    }
    sweep_dead();
    pump();
  }

  void on_supervisor_down(const caf::error& reason) {
    sup = nullptr;
    *sup_ref = nullptr;
    for (auto& s : slots) {
      s.worker = nullptr;
      s.outbox.clear();
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
      if (e.held_by != 0) {
        e.held_by = 0;
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
    // Only a request has someone to answer.
    caf::response_promise rp;
    if (is_request)
      rp = self->make_response_promise();
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
    auto seq = pending.add();
    auto& e = pending[seq];
    e.order = next_order++;
    e.content = std::move(content);
    e.is_request = is_request;
    e.wrapped = wrapped;
    if (is_request) {
      e.accepted_at = std::chrono::steady_clock::now();
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
    // Delegated: CAF makes no response promise for a one-way message.
    return caf::delegated<caf::message>{};
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
    auto* found = pending.find(seq);
    if (found == nullptr)
      return;
    auto e = std::move(*found);
    forget(seq, e);
    pending.erase(seq);
    if (e.is_request)
      answer(e.rp, e.wrapped, fallback_for(e.content, std::move(otherwise)));
  }

  // -- dispatching ---------------------------------------------------------------

  /// Hands queued messages to workers with room, then sends what that put
  /// in the workers' outboxes (see `send_outboxes`).
  void pump() {
    fill_slots();
    send_outboxes();
  }

  void pump_slot(size_t i) {
    fill_slot(i);
    send_outboxes();
  }

  void fill_slots() {
    if (spec.route == routing::key_hash) {
      for (size_t i = 0; i < slots.size(); ++i)
        fill_slot(i);
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

  void fill_slot(size_t i) {
    auto& s = slots[i];
    while (s.worker && s.in_flight < spec.worker_window && !s.queue.empty()) {
      auto seq = s.queue.front();
      s.queue.pop_front();
      dispatch(seq, i);
    }
  }

  void dispatch(uint64_t seq, size_t i) {
    auto* found = pending.find(seq);
    if (found == nullptr)
      return;
    auto& e = *found;
    auto& s = slots[i];
    e.slot = i;
    e.held_by = s.incarnation;
    ++e.dispatch;
    ++s.in_flight;
    // Into the worker's outbox: sent as plain messages, many in one while
    // this router is busy (the worker acknowledges in batches likewise); the
    // sweep enforces call_timeout for every request.
    // A worker with nothing else outstanding gets it at once, so that a
    // lone message never waits for company.
    s.outbox.push_back(routed{seq, e.content});
    if (s.outbox.size() >= max_batch || s.in_flight == s.outbox.size())
      flush_outbox(i);
  }

  /// Sends the outboxes now if nothing waits in this router's mailbox, else
  /// once the messages queued now are handled (or an outbox is full): under
  /// load a worker gets one message for many.
  void send_outboxes() {
    bool any = false;
    for (auto& s : slots)
      any = any || !s.outbox.empty();
    if (!any)
      return;
    if (self->mailbox().empty()) {
      for (size_t i = 0; i < slots.size(); ++i)
        flush_outbox(i);
    } else if (!outbox_flush_armed) {
      outbox_flush_armed = true;
      self->send(self, dispatch_flush_atom::value);
    }
  }

  void flush_outboxes() {
    outbox_flush_armed = false;
    for (size_t i = 0; i < slots.size(); ++i)
      flush_outbox(i);
  }

  void flush_outbox(size_t i) {
    auto& s = slots[i];
    if (s.outbox.empty())
      return;
    if (s.worker) {
      if (s.outbox.size() == 1)
        self->send(s.worker, std::move(s.outbox.front()));
      else
        self->send(s.worker, routed_batch{std::move(s.outbox)});
    }
    // Without a worker, what it held is moved on by the down message.
    s.outbox.clear();
  }

  /// Releases the worker window a dispatched entry holds.
  void release(const entry& e) {
    if (e.held_by == 0)
      return;
    auto& s = slots[e.slot];
    if (s.worker && s.incarnation == e.held_by && s.in_flight > 0)
      --s.in_flight;
  }

  /// A worker's acknowledgements: each finished message is answered (a
  /// request) and forgotten. An acknowledgement from a worker that no longer
  /// holds the message (its call timed out, it was moved) is ignored.
  void on_acks(routed_acks& acks) {
    auto from = sender_incarnation();
    if (from == 0)
      return;
    auto now = std::chrono::steady_clock::now();
    for (size_t k = 0; k < acks.seqs.size(); ++k) {
      auto seq = acks.seqs[k];
      auto* found = pending.find(seq);
      if (found == nullptr || found->held_by != from)
        continue;
      auto& e = *found;
      release(e);
      ++stats.completed;
      if (e.is_request)
        latency.record(now - e.accepted_at);
      if (e.is_request && k < acks.answers.size()) {
        auto& content = acks.answers[k];
        if (content.match_elements<caf::error>())
          e.rp.deliver(content.get_mutable_as<caf::error>(0));
        else
          answer(e.rp, e.wrapped, std::move(content));
      }
      pending.erase(seq);
    }
    pump();
  }

  /// A worker names the message it is dying on (from its exception handler).
  void on_crashed_on(uint64_t seq) {
    auto* found = pending.find(seq);
    auto from = sender_incarnation();
    if (found != nullptr && from != 0 && found->held_by == from)
      found->blamed = true;
  }

  /// The incarnation of a worker not yet seen down; 0 for anyone else.
  uint64_t incarnation_of(const caf::actor_addr& addr) const {
    for (auto& [a, n] : incarnations)
      if (a == addr)
        return n;
    return 0;
  }

  uint64_t sender_incarnation() const {
    auto& from = self->current_sender();
    return from ? incarnation_of(from->address()) : 0;
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
    [self](routed_acks& acks) { self->state.on_acks(acks); },
    [self](dispatch_flush_atom) { self->state.flush_outboxes(); },
    [self](crashed_on_atom, uint64_t seq) { self->state.on_crashed_on(seq); },
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
