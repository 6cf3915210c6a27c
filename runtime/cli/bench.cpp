#include "runtime/cli/bench.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <csignal>

#include "runtime/cluster/secure_transport.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/types.hpp"
#include "runtime/group/group.hpp"
#include "runtime/supervision/supervisor.hpp"

using namespace std::chrono_literals;

namespace troupe::cli {

namespace {

using clock_type = std::chrono::steady_clock;
using started_atom = caf::atom_constant<caf::atom("started")>;
using crash_atom = caf::atom_constant<caf::atom("crash")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using done_atom = caf::atom_constant<caf::atom("done")>;

double percentile(std::vector<double>& xs, double p) {
  std::sort(xs.begin(), xs.end());
  auto i = static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(i, xs.size() - 1)];
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// -- restart latency -------------------------------------------------------------

/// Crashes the child, waits for its replacement's start, pings it and times
/// crash to pong; `n` times, then sends the latencies (us) to `observer`.
caf::behavior restart_driver(caf::event_based_actor* self, uint64_t n, caf::actor observer) {
  auto lat = std::make_shared<std::vector<double>>();
  lat->reserve(n);
  auto t0 = std::make_shared<clock_type::time_point>();
  auto first = std::make_shared<bool>(true);
  return {
    [=](started_atom, caf::actor& child) {
      if (*first) {
        *first = false;
      } else {
        self->request(child, 5s, ping_atom::value).then([=]() {
          lat->push_back(
            std::chrono::duration<double, std::micro>(clock_type::now() - *t0).count());
          if (lat->size() == n) {
            self->send(observer, done_atom::value, *lat);
            self->quit();
          }
        });
        if (lat->size() + 1 == n)
          return;
      }
      *t0 = clock_type::now();
      self->send(child, crash_atom::value);
    },
  };
}

int bench_restart(const bench_options& opt) {
  config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto driver = sys.spawn(restart_driver, opt.count, caf::actor{self});
  supervisor_spec spec;
  spec.name = "bench";
  spec.intensity = static_cast<int>(opt.count + 10);
  spec.period = std::chrono::hours(1);
  child_spec c;
  c.name = "child";
  c.start = [driver](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto child = sys.spawn([](caf::event_based_actor* p) -> caf::behavior {
      report_exceptions(p);
      return {
        [](crash_atom) { throw std::runtime_error("crash"); },
        [](ping_atom) {},
      };
    });
    caf::anon_send(driver, started_atom::value, child);
    return child;
  };
  spec.children.push_back(c);
  auto sup = spawn_supervisor(sys, spec);
  if (!sup) {
    std::fprintf(stderr, "%s\n", render(sup.error()).c_str());
    return 1;
  }
  std::vector<double> lat;
  self->receive([&](done_atom, std::vector<double>& xs) { lat = std::move(xs); },
                caf::after(std::chrono::minutes(5)) >> [] {});
  self->send_exit(*sup, caf::exit_reason::user_shutdown);
  if (lat.size() != opt.count) {
    std::fprintf(stderr, "restart bench did not finish\n");
    return 1;
  }
  auto p50 = percentile(lat, 0.5);
  auto p99 = percentile(lat, 0.99);
  std::printf("troupe_restart_us_median %.2f\ntroupe_restart_us_p99 %.2f\ncrashes %zu\n", p50,
              p99, lat.size());
  return 0;
}

// -- throughput ------------------------------------------------------------------

/// Keeps `window` requests in flight to `dest` until `n` were answered.
caf::behavior windowed_driver(caf::event_based_actor* self, caf::actor dest, uint64_t n,
                              size_t window, caf::actor observer) {
  auto sent = std::make_shared<uint64_t>(0);
  auto done = std::make_shared<uint64_t>(0);
  auto failed = std::make_shared<uint64_t>(0);
  auto t0 = clock_type::now();
  std::shared_ptr<std::function<void()>> send_one = std::make_shared<std::function<void()>>();
  *send_one = [=] {
    auto seq = (*sent)++;
    self->request(dest, 30s, seq).then(
      [=](uint64_t) {
        if (++*done == n) {
          self->send(observer, done_atom::value, seconds_since(t0), *failed);
          self->quit();
        } else if (*sent < n) {
          (*send_one)();
        }
      },
      [=](caf::error&) {
        ++*failed;
        if (++*done == n) {
          self->send(observer, done_atom::value, seconds_since(t0), *failed);
          self->quit();
        } else if (*sent < n) {
          (*send_one)();
        }
      });
  };
  for (size_t i = 0; i < window && *sent < n; ++i)
    (*send_one)();
  return {[](int) {}};
}

int report_rate(const char* name, caf::scoped_actor& self, uint64_t n) {
  double secs = 0;
  uint64_t failed = 0;
  self->receive([&](done_atom, double s, uint64_t f) { secs = s; failed = f; },
                caf::after(std::chrono::minutes(5)) >> [] {});
  if (secs <= 0) {
    std::fprintf(stderr, "%s did not finish\n", name);
    return 1;
  }
  std::printf("%s_msgs_per_s %.0f\n", name, static_cast<double>(n) / secs);
  if (failed > 0) {
    std::fprintf(stderr, "%s: %llu requests failed\n", name, (unsigned long long) failed);
    return 1;
  }
  return 0;
}

/// Spins for `us` microseconds: the CPU-bound work of a worker.
void busy_work(double us) {
  if (us <= 0)
    return;
  auto until = clock_type::now() + std::chrono::nanoseconds(static_cast<int64_t>(us * 1000));
  while (clock_type::now() < until) {
  }
}

using credit_atom = caf::atom_constant<caf::atom("credit")>;
using go_atom = caf::atom_constant<caf::atom("go")>;

/// Completions shared by the receiving actors of a one-way measurement:
/// every 1,000 finished messages credit the producer, the `n`th ends it.
struct send_tally {
  std::atomic<uint64_t> seen{0};
  uint64_t n = 0;
  clock_type::time_point t0;
  caf::actor producer;
  caf::actor observer;

  void finished(caf::event_based_actor* self) {
    auto k = seen.fetch_add(1, std::memory_order_relaxed) + 1;
    if (k % 1000 == 0)
      self->send(producer, credit_atom::value, uint64_t{1000});
    if (k == n)
      self->send(observer, done_atom::value, seconds_since(t0), uint64_t{0});
  }
};

/// Sends `n` one-way messages to `dest`, at most `window` unfinished
/// (credited back by the receivers every 1,000).
caf::behavior credit_producer(caf::event_based_actor* self, caf::actor dest, uint64_t n,
                              uint64_t window, std::shared_ptr<send_tally> tally) {
  auto sent = std::make_shared<uint64_t>(0);
  auto credited = std::make_shared<uint64_t>(0);
  auto fill = [=] {
    while (*sent < n && *sent - *credited < window)
      self->send(dest, (*sent)++);
    if (*sent == n)
      self->quit();
  };
  return {
    [=](go_atom) {
      tally->t0 = clock_type::now();
      fill();
    },
    [=](credit_atom, uint64_t k) {
      *credited += k;
      fill();
    },
  };
}

/// Waits until the group reports all its workers up.
void wait_until_up(caf::scoped_actor& self, const caf::actor& router) {
  for (int i = 0; i < 1000; ++i) {
    bool up = false;
    self->request(router, 1s, status_atom::value).receive(
      [&](group_status& st) { up = st.state == "up"; }, [](caf::error&) {});
    if (up)
      break;
    self->receive(caf::after(1ms) >> [] {});
  }
}

int bench_router(const bench_options& opt) {
  config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto tally = std::make_shared<send_tally>();
  tally->n = opt.count;
  tally->observer = caf::actor{self};
  group_spec g;
  g.name = "bench";
  g.instances = opt.workers;
  // One-way: the credit window bounds what the group holds.
  g.max_in_flight = opt.send ? std::max<size_t>(opt.window, 1000) * 2 : opt.window * 2;
  g.worker_window = opt.send ? std::max<size_t>(opt.window, 1000) : g.worker_window;
  auto work = opt.work_us;
  auto send = opt.send;
  g.worker = [work, send, tally](caf::event_based_actor* w, size_t) -> caf::behavior {
    // One-way messages are handled as raw CAF's receiver handles them, with
    // nothing to answer; requests are answered with their number.
    if (send)
      return {[work, tally, w](uint64_t) {
        busy_work(work);
        tally->finished(w);
      }};
    return {[work](uint64_t x) {
      busy_work(work);
      return x;
    }};
  };
  auto router = spawn_group(sys, g);
  if (!router) {
    std::fprintf(stderr, "%s\n", render(router.error()).c_str());
    return 1;
  }
  // Let the workers come up before timing.
  wait_until_up(self, *router);
  auto name = std::string{"router_"} + (opt.send ? "send_" : "") + std::to_string(opt.workers)
              + "w" + (opt.work_us > 0 ? "_work" : "");
  if (opt.send) {
    auto window = std::max<uint64_t>(opt.window, 1000);
    tally->producer = sys.spawn(credit_producer, *router, opt.count, window, tally);
    self->send(tally->producer, go_atom::value);
  } else {
    sys.spawn(windowed_driver, *router, opt.count, opt.window, caf::actor{self});
  }
  auto rc = report_rate(name.c_str(), self, opt.count);
  self->send_exit(*router, caf::exit_reason::user_shutdown);
  return rc;
}

int bench_raw(const bench_options& opt) {
  config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  // One-way sends: the baseline the issue names.
  auto n = opt.count;
  auto observer = caf::actor{self};
  auto sink = sys.spawn([n, observer](caf::event_based_actor* s) -> caf::behavior {
    auto seen = std::make_shared<uint64_t>(0);
    auto t0 = std::make_shared<clock_type::time_point>();
    return {
      [=](uint64_t) {
        if (*seen == 0)
          *t0 = clock_type::now();
        if (++*seen == n) {
          s->send(observer, done_atom::value, seconds_since(*t0), uint64_t{0});
          s->quit();
        }
      },
    };
  });
  sys.spawn([sink, n](caf::event_based_actor* s) {
    for (uint64_t i = 0; i < n; ++i)
      s->send(sink, i);
  });
  auto rc = report_rate("raw_send", self, n);
  {
    // One-way sends under the router bench's credit window, to one receiver
    // that does the same work per message.
    auto tally = std::make_shared<send_tally>();
    tally->n = n;
    tally->observer = caf::actor{self};
    auto work = opt.work_us;
    auto receiver = sys.spawn([tally, work](caf::event_based_actor* s) -> caf::behavior {
      return {[tally, work, s](uint64_t) {
        busy_work(work);
        tally->finished(s);
      }};
    });
    auto window = std::max<uint64_t>(opt.window, 1000);
    tally->producer = sys.spawn(credit_producer, receiver, n, window, tally);
    self->send(tally->producer, go_atom::value);
    rc |= report_rate(opt.work_us > 0 ? "raw_credited_send_work" : "raw_credited_send", self, n);
    self->send_exit(receiver, caf::exit_reason::user_shutdown);
  }
  // Request/response with the same window as the router bench.
  auto echo = sys.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](uint64_t x) { return x; }};
  });
  sys.spawn(windowed_driver, echo, n, opt.window, caf::actor{self});
  rc |= report_rate("raw_request", self, n);
  self->send_exit(echo, caf::exit_reason::user_shutdown);
  return rc;
}

// -- raw CAF remote round trip (the baseline of scripts/bench-cluster) ---------------

std::atomic<bool> server_stop{false};

extern "C" void on_server_signal(int) {
  server_stop = true;
}

/// With `--secure SECRET`: the cluster transport's middleman actor, keyed
/// by SECRET (else CAF's own).
caf::expected<caf::io::middleman_actor> bench_transport(caf::actor_system& sys,
                                                        const bench_options& opt) {
  if (opt.secure.empty())
    return sys.middleman().actor_handle();
  topology::cluster_settings c;
  c.name = "bench";
  c.secret = opt.secure;
  auto log = log_fn{logger::make("bench", log_level::warning, log_format::text, stderr)};
  auto t = cluster::tls_tunnel::make(c, std::chrono::seconds(5), log);
  if (!t)
    return t.error();
  return cluster::spawn_secure_middleman(sys, std::shared_ptr<cluster::tls_tunnel>{std::move(*t)},
                                         log);
}

/// `troupe bench remote-server --port P [--secure SECRET]`: publishes an echo
/// actor on 127.0.0.1:P (plain BASP, or the cluster transport), until SIGTERM
/// or SIGINT.
int bench_remote_server(const bench_options& opt) {
  config cfg;
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto echo = sys.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](uint64_t x) { return x; }};
  });
  auto mm = bench_transport(sys, opt);
  if (!mm) {
    std::fprintf(stderr, "troupe bench: %s\n", render(mm.error()).c_str());
    return 1;
  }
  caf::expected<uint16_t> port{caf::make_error(caf::sec::request_timeout)};
  {
    caf::scoped_actor self{sys};
    self
      ->request(*mm, std::chrono::seconds(10), caf::publish_atom::value, opt.port,
                caf::actor_cast<caf::strong_actor_ptr>(echo), std::set<std::string>{},
                std::string{"127.0.0.1"}, true)
      .receive([&](uint16_t p) { port = p; }, [&](caf::error& e) { port = e; });
  }
  if (!port) {
    std::fprintf(stderr, "troupe bench: cannot publish: %s\n", render(port.error()).c_str());
    caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
    return 1;
  }
  std::signal(SIGTERM, on_server_signal);
  std::signal(SIGINT, on_server_signal);
  std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(*port));
  std::fflush(stdout);
  caf::scoped_actor self{sys};
  while (!server_stop)
    self->receive(caf::after(50ms) >> [] {});
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  return 0;
}

/// Keeps `window` requests in flight to `dest` until `n` were answered, and
/// sends the round trips (us) and the elapsed seconds to `observer`.
caf::behavior timed_driver(caf::event_based_actor* self, caf::actor dest, uint64_t n,
                           size_t window, caf::actor observer) {
  auto rtt = std::make_shared<std::vector<double>>();
  rtt->reserve(n);
  auto sent = std::make_shared<uint64_t>(0);
  auto t0 = clock_type::now();
  auto send_one = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> again = send_one;
  *send_one = [=] {
    auto seq = (*sent)++;
    auto at = clock_type::now();
    auto next = [=] {
      if (rtt->size() == n) {
        self->send(observer, done_atom::value, seconds_since(t0), *rtt);
        self->quit();
      } else if (*sent < n) {
        if (auto f = again.lock())
          (*f)();
      }
    };
    self->request(dest, 30s, seq).then(
      [=](uint64_t) {
        rtt->push_back(std::chrono::duration<double, std::micro>(clock_type::now() - at).count());
        next();
      },
      [=](caf::error& err) {
        std::fprintf(stderr, "request failed: %s\n", render(err).c_str());
        rtt->push_back(1e9);
        next();
      });
  };
  for (size_t i = 0; i < window && *sent < n; ++i)
    (*send_one)();
  return {[send_one](int) {}};
}

/// `troupe bench remote --port P`: round trips to the echo actor of
/// `remote-server`, one at a time and with `--window` in flight.
int bench_remote(const bench_options& opt) {
  config cfg;
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto mm = bench_transport(sys, opt);
  if (!mm) {
    std::fprintf(stderr, "troupe bench: %s\n", render(mm.error()).c_str());
    return 1;
  }
  caf::expected<caf::actor> echo{caf::make_error(caf::sec::request_timeout)};
  {
    caf::scoped_actor self{sys};
    self->request(*mm, std::chrono::seconds(10), caf::connect_atom::value, std::string{"127.0.0.1"},
                  opt.port)
      .receive(
        [&](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
          echo = caf::actor_cast<caf::actor>(ptr);
        },
        [&](caf::error& e) { echo = e; });
  }
  if (!echo || !*echo) {
    std::fprintf(stderr, "troupe bench: cannot reach 127.0.0.1:%u: %s\n",
                 static_cast<unsigned>(opt.port),
                 echo ? "no actor published" : render(echo.error()).c_str());
    return 1;
  }
  caf::scoped_actor self{sys};
  for (auto window : {size_t{1}, opt.window}) {
    sys.spawn(timed_driver, *echo, opt.count, window, caf::actor{self});
    bool ok = false;
    self->receive(
      [&](done_atom, double secs, std::vector<double>& rtt) {
        auto name = (opt.secure.empty() ? "raw_remote_w" : "secure_remote_w")
                    + std::to_string(window);
        std::printf("%s_p50_us %.1f\n", name.c_str(), percentile(rtt, 0.5));
        std::printf("%s_p99_us %.1f\n", name.c_str(), percentile(rtt, 0.99));
        std::printf("%s_msgs_per_s %.0f\n", name.c_str(), static_cast<double>(rtt.size()) / secs);
        ok = rtt.back() < 1e9;
      },
      caf::after(std::chrono::minutes(5)) >> [] {});
    if (!ok)
      return 1;
  }
  return 0;
}

// -- logging -----------------------------------------------------------------------

/// Lines per second through `write`, from `threads` threads at once.
template <class Write>
double lines_per_s(size_t threads, uint64_t count, Write write) {
  auto t0 = clock_type::now();
  std::vector<std::thread> ts;
  for (size_t t = 0; t < threads; ++t)
    ts.emplace_back([&write, count, t] {
      for (uint64_t i = 0; i < count; ++i)
        write(t, i);
    });
  for (auto& t : ts)
    t.join();
  return static_cast<double>(count * threads) / seconds_since(t0);
}

/// The node's log against the plain `printf` + `fflush` under a mutex that
/// nodes logged with before (the baseline), all into /dev/null: lines per
/// second in each format from `workers` threads, and the cost of a line
/// below the level.
int bench_log(const bench_options& opt) {
  auto* sink = std::fopen("/dev/null", "w");
  if (!sink) {
    std::fprintf(stderr, "troupe bench log: cannot open /dev/null\n");
    return 1;
  }
  const std::string msg = "ingestor/0: dead letter (invalid_argument: missing field 'user') for "
                          "transactions/3@118";
  std::mutex mtx;
  auto raw = lines_per_s(opt.workers, opt.count, [&](size_t, uint64_t i) {
    auto event = "tx-" + std::to_string(i);
    std::lock_guard<std::mutex> guard{mtx};
    std::fprintf(sink, "[%s] %s %s\n", "n1", msg.c_str(), event.c_str());
    std::fflush(sink);
  });
  double per_format[2];
  for (auto format : {log_format::text, log_format::json}) {
    auto log = log_fn{logger::make("n1", log_level::info, format, sink), "ingestor"};
    per_format[static_cast<int>(format)]
      = lines_per_s(opt.workers, opt.count, [&](size_t, uint64_t i) {
          log.warning(msg, "tx-" + std::to_string(i));
        });
  }
  // Below the level: the per-event lines test `enabled` first, as the
  // actors do, so nothing is built.
  auto log = log_fn{logger::make("n1", log_level::info, log_format::text, sink), "ingestor"};
  uint64_t built = 0;
  auto t0 = clock_type::now();
  for (uint64_t i = 0; i < opt.count * 10; ++i)
    if (log.enabled(log_level::debug)) {
      log.debug(msg, "tx-" + std::to_string(i));
      ++built;
    }
  auto disabled_ns = seconds_since(t0) * 1e9 / static_cast<double>(opt.count * 10);
  std::fclose(sink);
  std::printf("log_raw_printf_lines_per_s %.0f\n", raw);
  std::printf("log_text_lines_per_s %.0f\n", per_format[0]);
  std::printf("log_json_lines_per_s %.0f\n", per_format[1]);
  std::printf("log_disabled_ns %.2f\n", disabled_ns);
  std::printf("log_disabled_built %llu\n", static_cast<unsigned long long>(built));
  return 0;
}

} // namespace

int run_bench(const bench_options& opt) {
  if (opt.count == 0 || opt.workers == 0 || opt.window == 0) {
    std::fprintf(stderr, "troupe bench: --count, --workers and --window must be positive\n");
    return 2;
  }
  if (opt.what == "restart")
    return bench_restart(opt);
  if (opt.what == "router")
    return bench_router(opt);
  if (opt.what == "remote-server")
    return bench_remote_server(opt);
  if (opt.what == "remote")
    return bench_remote(opt);
  if (opt.what == "kafka-consume")
    return bench_kafka_consume(opt);
  if (opt.what == "kafka-latency")
    return bench_kafka_latency(opt);
  if (opt.what == "redis-features")
    return bench_redis_features(opt);
  if (opt.what == "pipeline")
    return bench_pipeline(opt);
  if (opt.what == "broadcast")
    return bench_broadcast(opt);
  if (opt.what == "feed")
    return bench_feed(opt);
  if (opt.what == "crowd")
    return bench_crowd(opt);
  if (opt.what == "publish")
    return bench_publish(opt);
  if (opt.what == "log")
    return bench_log(opt);
  if (opt.what != "raw") {
    std::fprintf(stderr, "troupe bench: unknown measurement '%s'\n", opt.what.c_str());
    return 2;
  }
  return bench_raw(opt);
}

} // namespace troupe::cli
