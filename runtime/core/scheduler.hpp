#pragma once

#include <atomic>
#include <cstddef>

#include <caf/actor_system_config.hpp>
#include <caf/policy/work_stealing.hpp>

namespace troupe {

/// CAF's work stealing, with one change: work queued on a busy thread wakes
/// a sleeping thread to steal it.
///
/// CAF 0.17's work stealing puts an actor woken by another actor at the
/// front of the sending thread's own queue and tells no one. A thread that
/// has gone to sleep (after its brief spin) steals only when its sleep times
/// out, so the new job waits for the sending thread to finish what it runs
/// or for that timeout (1 ms here, `configure_scheduler`): a chain of actors
/// runs on one core while the other sleeps. Here a thread that queues a job
/// while another sleeps wakes that one, which steals the job, as
/// Go's and Tokio's schedulers wake an idle worker when work arrives. A job
/// from outside the scheduler (a detached actor, the I/O loop, a Kafka
/// thread) goes to a thread round-robin as before, and wakes a sleeping
/// one if that thread is busy.
///
/// The cost is one relaxed atomic load per queued job while no thread
/// sleeps, and one wake-up per sleep.
class waking_stealing : public caf::policy::work_stealing {
public:
  using super = caf::policy::work_stealing;

  struct coordinator_data : super::coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator* p)
      : super::coordinator_data(p) {
    }
    /// Threads asleep (or about to be) in `dequeue`.
    std::atomic<size_t> sleepers{0};
    /// Wake-ups sent by `wake_one`, for tests and benchmarks.
    std::atomic<uint64_t> wakeups{0};
  };

  struct worker_data : super::worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator* p) : super::worker_data(p) {
    }
    worker_data(const worker_data& other) : super::worker_data(other) {
    }
    /// Set (under `waitdata.lock`) by the thread that wakes this one.
    bool woken = false;
  };

  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    auto w = self->worker_by_id(d(self).next_worker++ % self->num_workers());
    w->external_enqueue(job);
  }

  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    d(self).queue.append(job);
    bool notified = false;
    {
      std::unique_lock<std::mutex> guard{d(self).waitdata.lock};
      if (d(self).waitdata.sleeping) {
        d(self).woken = true;
        d(self).waitdata.cv.notify_one();
        notified = true;
      }
    }
    if (!notified)
      wake_one(self);
  }

  template <class Worker>
  void internal_enqueue(Worker* self, caf::resumable* job) {
    d(self).queue.prepend(job);
    wake_one(self);
  }

  template <class Worker>
  void resume_job_later(Worker* self, caf::resumable* job) {
    d(self).queue.append(job);
    wake_one(self);
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& spin = d(self).strategies[0];
    auto& relaxed = d(self).strategies[2];
    auto& sleepers = d(self->parent()).sleepers;
    for (;;) {
      // Spin briefly: under load the next job comes within microseconds.
      for (size_t i = 0; i < spin.attempts; ++i) {
        if (auto job = d(self).queue.take_head())
          return job;
        if (i % spin.steal_interval == 0)
          if (auto job = steal_any(self))
            return job;
      }
      // Sleep until woken, a job arrives in this queue, or the timeout.
      // Marked asleep before the last look, and counted after it is marked:
      // a thread that queues a job after that look sees the mark and wakes
      // us (`wake_one` loads the count after its push, both fenced), and
      // a job queued before it is found by the look.
      {
        std::unique_lock<std::mutex> guard{d(self).waitdata.lock};
        d(self).waitdata.sleeping = true;
      }
      sleepers.fetch_add(1, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      auto job = d(self).queue.take_head();
      if (job == nullptr)
        job = steal_any(self);
      {
        std::unique_lock<std::mutex> guard{d(self).waitdata.lock};
        if (job == nullptr)
          d(self).waitdata.cv.wait_for(guard, relaxed.sleep_duration, [&] {
            return d(self).woken || !d(self).queue.empty();
          });
        d(self).waitdata.sleeping = false;
        d(self).woken = false;
      }
      sleepers.fetch_sub(1, std::memory_order_seq_cst);
      if (job == nullptr)
        job = d(self).queue.take_head();
      if (job == nullptr)
        job = steal_any(self);
      if (job != nullptr)
        return job;
    }
  }

private:
  /// Wakes one sleeping thread other than `self`, if any sleeps.
  template <class Worker>
  void wake_one(Worker* self) {
    auto p = self->parent();
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (d(p).sleepers.load(std::memory_order_relaxed) == 0)
      return;
    auto n = p->num_workers();
    for (size_t k = 1; k < n; ++k) {
      auto other = p->worker_by_id((self->id() + k) % n);
      std::unique_lock<std::mutex> guard{d(other).waitdata.lock};
      if (d(other).waitdata.sleeping && !d(other).woken) {
        d(other).woken = true;
        d(other).waitdata.cv.notify_one();
        d(p).wakeups.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }

  /// Takes the oldest job of the first other thread that has one.
  template <class Worker>
  caf::resumable* steal_any(Worker* self) {
    auto p = self->parent();
    auto n = p->num_workers();
    for (size_t k = 1; k < n; ++k)
      if (auto job = d(p->worker_by_id((self->id() + k) % n)).queue.take_tail())
        return job;
    return nullptr;
  }
};

/// Makes `cfg`'s actor system run on `waking_stealing` (see above) instead
/// of CAF's work stealing. The thread count and the spin and sleep settings
/// stay CAF's (`configure_scheduler` sets them).
void use_waking_scheduler(caf::actor_system_config& cfg);

/// Wake-ups `waking_stealing` sent in `sys` so far (0 under another scheduler).
uint64_t scheduler_wakeups(caf::actor_system& sys);

} // namespace troupe
