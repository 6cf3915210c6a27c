#include "runtime/supervision/supervisor.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

namespace troupe {

namespace {

using clock_type = std::chrono::steady_clock;

enum class child_state { running, restarting, terminated };

const char* to_string(child_state x) {
  switch (x) {
    case child_state::running: return "running";
    case child_state::restarting: return "restarting";
    case child_state::terminated: return "terminated";
  }
  return "?";
}

/// A child as its supervisor tracks it.
struct child {
  explicit child(child_spec s) : spec(std::move(s)) {
    // nop
  }

  child_spec spec;
  caf::actor handle;
  child_state state = child_state::terminated;
  uint64_t restarts = 0;
  uint32_t backoff_attempt = 0;
  clock_type::time_point started_at;
};

/// Stops children one at a time, each within its shutdown spec, then runs
/// `then`. OTP stops siblings sequentially too: a later child may depend on
/// an earlier one until it is gone.
struct stop_job {
  std::vector<std::string> names;
  size_t pos = 0;
  std::string current;
  uint64_t token = 0;
  bool killed = false;
  std::function<void()> then;
};

struct supervisor_state;
using supervisor_actor = caf::stateful_actor<supervisor_state>;

/// The state of one supervisor. Owned by its actor; every member function runs
/// inside that actor's handlers.
struct supervisor_state {
  static inline const char* name = "troupe.supervisor";

  supervisor_actor* self = nullptr;
  supervisor_spec spec;
  std::vector<child> children;
  std::deque<clock_type::time_point> restart_times;
  std::deque<crash_record> history;
  std::optional<stop_job> job;
  /// Work that arrived while a stop job ran; done in order once it ends.
  std::deque<std::function<void()>> deferred;
  /// Pending delayed restarts: token -> children to restart, in start order.
  std::map<uint64_t, std::vector<std::string>> delayed;
  uint64_t next_token = 1;
  bool stopping = false;
  /// The running children, shared with the exit hook that takes them down
  /// when this supervisor dies (even by `kill`, which cannot be trapped).
  std::shared_ptr<std::vector<caf::actor>> live = std::make_shared<std::vector<caf::actor>>();
  std::minstd_rand rng{std::random_device{}()};

  // -- lookup ------------------------------------------------------------------

  child* find(const std::string& child_name) {
    for (auto& c : children)
      if (c.spec.name == child_name)
        return &c;
    return nullptr;
  }

  /// The child `name` if it exists and is terminated (OTP's precondition for
  /// `restart_child` and `delete_child`), else why not.
  caf::expected<child*> find_terminated(const std::string& child_name) {
    auto c = find(child_name);
    if (!c)
      return caf::make_error(ec::no_such_child, child_name);
    if (c->state != child_state::terminated)
      return caf::make_error(ec::child_running, child_name);
    return c;
  }

  std::optional<size_t> index_of(const caf::actor_addr& addr) {
    for (size_t i = 0; i < children.size(); ++i)
      if (children[i].handle && children[i].handle.address() == addr)
        return i;
    return std::nullopt;
  }

  // -- history -----------------------------------------------------------------

  void record(const std::string& who, const std::string& reason, const std::string& action) {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    history.push_back(crash_record{
      who, std::chrono::duration_cast<std::chrono::milliseconds>(now).count(), reason, action});
    while (history.size() > spec.crash_history)
      history.pop_front();
    if (!spec.log)
      return;
    auto level = action == "escalated" ? log_level::error : log_level::warning;
    auto log = spec.log.group().empty() ? spec.log.with_group(who.substr(0, who.find('/')))
                                        : spec.log;
    if (who == spec.name)
      log.write(level, "supervisor " + spec.name + ": " + reason + "; " + action);
    else
      log.write(level, "supervisor " + spec.name + ": " + who + " exited (" + reason + "); "
                         + action);
  }

  // -- starting ----------------------------------------------------------------

  caf::error start(child& c) {
    caf::expected<caf::actor> started{caf::actor{}};
    try {
      started = c.spec.start(self->system());
    } catch (std::exception& e) {
      return caf::make_error(caf::sec::runtime_error, std::string{e.what()});
    } catch (...) {
      return caf::make_error(caf::sec::runtime_error, std::string{"unknown exception"});
    }
    if (!started)
      return std::move(started.error());
    if (!*started)
      return caf::make_error(ec::invalid_spec,
                             "start function of '" + c.spec.name + "' returned no actor");
    c.handle = std::move(*started);
    c.state = child_state::running;
    c.started_at = clock_type::now();
    // A monitor, not a link: CAF 0.17 makes an exit_msg with reason `kill`
    // fatal even to an actor that traps exits, so a killed child would take a
    // linked supervisor with it. Monitoring an actor that died already
    // delivers its down message at once.
    self->monitor(c.handle);
    live->push_back(c.handle);
    return caf::none;
  }

  /// Forgets the instance of `c` after its down message.
  void gone(child& c) {
    auto addr = c.handle.address();
    live->erase(std::remove_if(live->begin(), live->end(),
                               [&](const caf::actor& a) { return a.address() == addr; }),
                live->end());
    c.handle = nullptr;
    c.state = child_state::terminated;
  }

  /// Starts every child in order at initialisation; false if one failed.
  bool start_all() {
    for (auto& c : children) {
      if (auto err = start(c)) {
        auto reason = render(err);
        record(c.spec.name, reason, "failed_to_start");
        stop_all_then_quit(caf::make_error(ec::failed_to_start_child, spec.name,
                                           c.spec.name, reason));
        return false;
      }
    }
    return true;
  }

  // -- restarting --------------------------------------------------------------

  /// Counts one restart; false when it exceeds the intensity.
  bool add_restart() {
    auto now = clock_type::now();
    restart_times.push_back(now);
    while (!restart_times.empty() && now - restart_times.front() > spec.period)
      restart_times.pop_front();
    return restart_times.size() <= static_cast<size_t>(spec.intensity);
  }

  caf::timespan delay_for(child& c) {
    if (!spec.backoff)
      return caf::timespan{0};
    if (clock_type::now() - c.started_at >= spec.backoff->reset_after)
      c.backoff_attempt = 0;
    std::uniform_real_distribution<double> unit{0.0, 1.0};
    return backoff_delay(*spec.backoff, c.backoff_attempt++, unit(rng));
  }

  void schedule_restart(std::vector<std::string> names, caf::timespan delay) {
    if (delay <= caf::timespan{0}) {
      restart_now(names);
      return;
    }
    for (auto& n : names)
      if (auto c = find(n); c && c->state != child_state::running)
        c->state = child_state::restarting;
    auto token = next_token++;
    delayed.emplace(token, std::move(names));
    self->delayed_send(self, delay, restart_atom::value, token);
  }

  /// Starts `names` in order; a start that fails counts as another crash of
  /// that child and retries it and the ones after it.
  void restart_now(const std::vector<std::string>& names) {
    for (size_t i = 0; i < names.size(); ++i) {
      auto c = find(names[i]);
      if (!c || c->state == child_state::running)
        continue;
      if (auto err = start(*c); !err) {
        ++c->restarts;
        continue;
      }
      else {
        c->state = child_state::restarting;
        auto reason = render(err);
        if (!add_restart()) {
          record(c->spec.name, "restart failed: " + reason, "escalated");
          escalate();
          return;
        }
        record(c->spec.name, "restart failed: " + reason, "restart_retried");
        std::vector<std::string> rest(names.begin() + i, names.end());
        auto delay = delay_for(*c);
        if (delay <= caf::timespan{0}) {
          // Retry through the mailbox so that a start function that always
          // fails cannot spin inside this handler.
          auto token = next_token++;
          delayed.emplace(token, std::move(rest));
          self->send(self, restart_atom::value, token);
        } else {
          schedule_restart(std::move(rest), delay);
        }
        return;
      }
    }
  }

  void on_restart_due(uint64_t token) {
    auto i = delayed.find(token);
    if (i == delayed.end() || stopping)
      return;
    auto names = std::move(i->second);
    delayed.erase(i);
    restart_now(names);
  }

  // -- exits -------------------------------------------------------------------

  /// An exit signal: children are monitored, not linked, so this comes from a
  /// parent's exit hook or an operator, and asks us to stop.
  void on_exit_signal(caf::exit_msg& msg) {
    if (!msg.reason || msg.reason == caf::exit_reason::normal)
      return;
    when_idle([this, reason = std::move(msg.reason)]() mutable {
      stop_all_then_quit(std::move(reason));
    });
  }

  void on_down(caf::down_msg& msg) {
    if (job) {
      on_down_during_job(msg);
      return;
    }
    handle_down(msg);
  }

  void on_down_during_job(caf::down_msg& msg) {
    auto idx = index_of(msg.source);
    if (idx && children[*idx].spec.name == job->current) {
      gone(children[*idx]);
      advance_job();
      return;
    }
    if (idx) {
      auto& name = children[*idx].spec.name;
      auto remaining = std::find(job->names.begin() + job->pos, job->names.end(), name);
      if (remaining != job->names.end()) {
        // It was about to be stopped anyway: nothing to restart on its account.
        if (!is_clean_exit(msg.reason))
          record(name, render(msg.reason), "exited_while_stopping");
        gone(children[*idx]);
        return;
      }
    }
    deferred.emplace_back([this, msg]() mutable { handle_down(msg); });
  }

  void handle_down(caf::down_msg& msg) {
    auto idx = index_of(msg.source);
    if (!idx)
      return; // an instance we stopped and forgot already
    auto& c = children[*idx];
    gone(c);
    auto clean = is_clean_exit(msg.reason);
    auto restart = c.spec.restart == restart_type::permanent
                   || (c.spec.restart == restart_type::transient && !clean);
    if (!restart) {
      if (!clean)
        record(c.spec.name, render(msg.reason),
               c.spec.restart == restart_type::temporary ? "removed" : "not_restarted");
      if (c.spec.restart == restart_type::temporary)
        children.erase(children.begin() + static_cast<ptrdiff_t>(*idx));
      return;
    }
    auto reason = msg.reason ? render(msg.reason) : std::string{"normal"};
    if (!add_restart()) {
      record(c.spec.name, reason, "escalated");
      escalate();
      return;
    }
    auto delay = delay_for(c);
    record(c.spec.name, reason, delay > caf::timespan{0} ? "restart_delayed" : "restarted");
    apply_strategy(*idx, delay);
  }

  void apply_strategy(size_t idx, caf::timespan delay) {
    if (spec.strat == strategy::one_for_one) {
      schedule_restart({children[idx].spec.name}, delay);
      return;
    }
    // one_for_all affects every child, rest_for_one those from idx on.
    size_t first = spec.strat == strategy::one_for_all ? 0 : idx;
    std::vector<std::string> to_stop;
    for (size_t i = children.size(); i-- > first;)
      if (children[i].handle)
        to_stop.push_back(children[i].spec.name);
    std::vector<std::string> affected;
    for (size_t i = first; i < children.size(); ++i)
      affected.push_back(children[i].spec.name);
    run_job(std::move(to_stop), [this, affected, delay] {
      // Temporary children are not restarted by their siblings' crashes.
      std::vector<std::string> to_start;
      for (auto& n : affected) {
        auto c = find(n);
        if (!c)
          continue;
        if (c->spec.restart == restart_type::temporary && !c->handle) {
          children.erase(children.begin() + (c - children.data()));
          continue;
        }
        c->state = child_state::restarting;
        to_start.push_back(n);
      }
      schedule_restart(std::move(to_start), delay);
    });
  }

  void escalate() {
    record(spec.name, "reached max restart intensity (" + std::to_string(spec.intensity)
                        + " in " + std::to_string(spec.period.count() / 1000000) + " ms)",
           "escalated");
    stop_all_then_quit(caf::make_error(ec::max_restart_intensity, spec.name));
  }

  void stop_all_then_quit(caf::error reason) {
    if (stopping)
      return;
    stopping = true;
    delayed.clear();
    std::vector<std::string> order;
    for (size_t i = children.size(); i-- > 0;)
      if (children[i].handle)
        order.push_back(children[i].spec.name);
    run_job(std::move(order), [this, reason]() mutable { self->quit(std::move(reason)); });
  }

  // -- stop jobs ---------------------------------------------------------------

  void run_job(std::vector<std::string> names, std::function<void()> then) {
    job.emplace();
    job->names = std::move(names);
    job->then = std::move(then);
    advance_job();
  }

  void advance_job() {
    while (job->pos < job->names.size()) {
      auto c = find(job->names[job->pos++]);
      if (!c || !c->handle)
        continue;
      job->current = c->spec.name;
      job->token = next_token++;
      job->killed = c->spec.shutdown.brutal_kill;
      if (job->killed) {
        self->send_exit(c->handle, caf::exit_reason::kill);
      } else {
        self->send_exit(c->handle, caf::exit_reason::user_shutdown);
        if (!c->spec.shutdown.infinity)
          self->delayed_send(self, c->spec.shutdown.timeout, shutdown_timeout_atom::value,
                             job->token);
      }
      return;
    }
    auto then = std::move(job->then);
    job.reset();
    then();
    drain_deferred();
  }

  void on_shutdown_timeout(uint64_t token) {
    if (!job || job->token != token || job->killed)
      return;
    if (auto c = find(job->current); c && c->handle) {
      job->killed = true;
      self->send_exit(c->handle, caf::exit_reason::kill);
    }
  }

  void drain_deferred() {
    while (!job && !deferred.empty() && !stopping) {
      auto next = std::move(deferred.front());
      deferred.pop_front();
      next();
    }
    if (stopping && !job)
      deferred.clear();
  }

  /// Runs `f` now, or after the current stop job.
  void when_idle(std::function<void()> f) {
    if (job)
      deferred.push_back(std::move(f));
    else
      f();
  }

  // -- queries -----------------------------------------------------------------

  std::vector<child_info> which_children() const {
    std::vector<child_info> result;
    result.reserve(children.size());
    for (auto& c : children)
      result.push_back(child_info{c.spec.name, c.handle, to_string(c.state),
                                  troupe::to_string(c.spec.restart), c.spec.is_supervisor,
                                  c.restarts});
    return result;
  }
};

caf::behavior supervisor_impl(supervisor_actor* self, supervisor_spec spec) {
  auto& st = self->state;
  st.self = self;
  for (auto& c : spec.children)
    st.children.push_back(child{c});
  spec.children.clear();
  st.spec = std::move(spec);
  self->set_exit_handler([self](caf::exit_msg& msg) { self->state.on_exit_signal(msg); });
  self->set_down_handler([self](caf::down_msg& msg) { self->state.on_down(msg); });
  // OTP links a supervisor to its children so that they die with it. Here the
  // hook does it: whatever ends this supervisor (a kill included) ends them.
  self->attach_functor([live = st.live](const caf::error& reason) {
    auto why = is_clean_exit(reason) ? caf::error{caf::exit_reason::user_shutdown} : reason;
    for (auto& child : *live)
      caf::anon_send(child, caf::exit_msg{caf::actor_addr{}, why});
  });
  st.start_all();
  using caf::result;
  return {
    [self](which_children_atom) { return self->state.which_children(); },
    // A group router answers this with its workers' supervisor; a
    // supervisor has none above its own children (a tree walk asks both).
    [](supervisor_atom) { return caf::actor{}; },
    [self](crashes_atom) {
      auto& h = self->state.history;
      return std::vector<crash_record>(h.begin(), h.end());
    },
    [self](start_child_atom, child_spec& cs) -> result<caf::actor> {
      auto rp = self->make_response_promise<caf::actor>();
      self->state.when_idle([self, rp, cs]() mutable {
        auto& st = self->state;
        if (auto err = validate(cs)) {
          rp.deliver(std::move(err));
          return;
        }
        if (st.find(cs.name)) {
          rp.deliver(caf::make_error(ec::child_exists, cs.name));
          return;
        }
        st.children.push_back(child{cs});
        if (auto err = st.start(st.children.back())) {
          st.children.pop_back();
          rp.deliver(std::move(err));
          return;
        }
        rp.deliver(st.children.back().handle);
      });
      return rp;
    },
    [self](terminate_child_atom, std::string& name) -> caf::response_promise {
      auto rp = self->make_response_promise();
      self->state.when_idle([self, rp, name]() mutable {
        auto& st = self->state;
        auto c = st.find(name);
        if (!c) {
          rp.deliver(caf::make_error(ec::no_such_child, name));
          return;
        }
        st.run_job({name}, [self, rp, name]() mutable {
          auto& st = self->state;
          if (auto c = st.find(name)) {
            c->state = child_state::terminated;
            if (c->spec.restart == restart_type::temporary)
              st.children.erase(st.children.begin() + (c - st.children.data()));
          }
          rp.deliver(caf::unit);
        });
      });
      return rp;
    },
    [self](restart_child_atom, std::string& name) -> result<caf::actor> {
      auto rp = self->make_response_promise<caf::actor>();
      self->state.when_idle([self, rp, name]() mutable {
        auto& st = self->state;
        auto c = st.find_terminated(name);
        if (!c) {
          rp.deliver(std::move(c.error()));
          return;
        }
        if (auto err = st.start(**c)) {
          rp.deliver(std::move(err));
          return;
        }
        rp.deliver((*c)->handle);
      });
      return rp;
    },
    [self](delete_child_atom, std::string& name) -> caf::response_promise {
      auto rp = self->make_response_promise();
      self->state.when_idle([self, rp, name]() mutable {
        auto& st = self->state;
        auto c = st.find_terminated(name);
        if (!c) {
          rp.deliver(std::move(c.error()));
          return;
        }
        st.children.erase(st.children.begin() + (*c - st.children.data()));
        rp.deliver(caf::unit);
      });
      return rp;
    },
    [self](restart_atom, uint64_t token) {
      self->state.when_idle([self, token] { self->state.on_restart_due(token); });
    },
    [self](shutdown_timeout_atom, uint64_t token) { self->state.on_shutdown_timeout(token); },
  };
}

} // namespace

bool is_clean_exit(const caf::error& reason) {
  return !reason || reason == caf::exit_reason::normal
         || reason == caf::exit_reason::user_shutdown;
}

caf::error exception_reason(std::exception_ptr eptr) {
  try {
    std::rethrow_exception(eptr);
  } catch (std::exception& e) {
    return caf::make_error(caf::sec::runtime_error, std::string{e.what()});
  } catch (...) {
    return caf::make_error(caf::sec::runtime_error, std::string{"unknown exception"});
  }
}

void report_exceptions(caf::scheduled_actor* self) {
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& eptr) { return exception_reason(eptr); });
}

caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys, supervisor_spec spec) {
  if (auto err = validate(spec))
    return err;
  return sys.spawn(supervisor_impl, std::move(spec));
}

caf::expected<child_spec> supervisor_child(supervisor_spec spec, restart_type restart) {
  if (auto err = validate(spec))
    return err;
  child_spec result;
  result.name = spec.name;
  result.restart = restart;
  result.shutdown = shutdown_spec::wait();
  result.is_supervisor = true;
  result.start = [spec](caf::actor_system& sys) -> caf::expected<caf::actor> {
    return sys.spawn(supervisor_impl, spec);
  };
  return result;
}

} // namespace troupe
