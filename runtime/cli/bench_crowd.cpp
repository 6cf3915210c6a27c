// `troupe bench crowd` and `troupe bench publish`: the load generator and
// the publisher of scripts/bench-scale (Boost.Beast, one I/O thread).
//
// crowd: --subscribers authenticated WebSocket clients, spread round-robin
// over the --url list (the nodes' gateways) and bound to the --source
// addresses in turn. Each client proves a token of its own (user
// `PREFIX-I`, signed with the cluster's client token key, --token-key) and
// subscribes to breaking news. Prints `ready CONNECTED FAILED` once every
// client is subscribed or has failed; then, for each benchmark article,
// `got ID COUNT LAST_NS FIRST_NS G...` once every ready client received it (LAST_NS: the
// CLOCK_MONOTONIC time the last one did, shared by every process on the
// machine whatever its network namespace; FIRST_NS when the first did; then
// FIRST_NS:LAST_NS through each gateway), or `partial ID COUNT LAST_NS
// FIRST_NS G...`
// when some still had not 10 s after the first did. `dropped N` when ready
// clients were disconnected. Ends when its standard input closes, or
// after --seconds.
//
// publish (--raw: to the --gateway raw broadcast servers over WebSocket,
// the floor, instead of Kafka): reads commands on standard input:
// `candidates N` produces N
// ordinary articles (feed candidates) and prints `candidates N` once Kafka
// has them; `send` produces one breaking article and prints
// `sent ID NOW_NS` (CLOCK_MONOTONIC, taken just before the record is
// queued).

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/resource.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "runtime/cli/bench.hpp"
#include "runtime/cluster/auth.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"

namespace troupe::cli {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;

int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

struct target {
  tcp::endpoint endpoint;
  std::string host; // HOST:PORT, for the handshake
  std::string path;
};

/// `url`'s parts (parse_url), its host an IP address.
bool parse_target(const std::string& url, target& out) {
  url_parts u;
  if (!parse_url(url, u))
    return false;
  boost::system::error_code ec;
  auto address = net::ip::make_address(u.host, ec);
  if (ec)
    return false;
  out.endpoint = {address, static_cast<uint16_t>(std::atoi(u.port.c_str()))};
  out.host = u.host + ":" + u.port;
  out.path = u.target;
  return true;
}

/// One benchmark article as the crowd saw it.
struct arrival {
  size_t count = 0;
  int64_t first_ns = 0;
  int64_t last_ns = 0;
  bool reported = false;
  /// First and last arrival through each gateway (0: none yet).
  std::vector<std::pair<int64_t, int64_t>> by_gateway;
};

/// `got` or `partial`, then ID COUNT LAST_NS FIRST_NS and, per gateway in
/// --gateway order, FIRST_NS:LAST_NS.
void report(const char* kind, int64_t id, const arrival& a) {
  std::printf("%s %lld %zu %lld %lld", kind, static_cast<long long>(id), a.count,
              static_cast<long long>(a.last_ns), static_cast<long long>(a.first_ns));
  for (auto& [first, last] : a.by_gateway)
    std::printf(" %lld:%lld", static_cast<long long>(first), static_cast<long long>(last));
  std::printf("\n");
  std::fflush(stdout);
}

/// The crowd's shared state: touched only on the one I/O thread.
struct crowd {
  size_t wanted = 0;
  size_t gateways = 0;
  size_t ready = 0;
  size_t failed = 0;
  size_t dropped = 0;
  size_t in_flight = 0;
  bool announced = false;
  std::map<int64_t, arrival> seen;
  std::function<void()> next; // starts the next connection, if any

  void settle() {
    if (!announced && ready + failed >= wanted) {
      announced = true;
      std::printf("ready %zu %zu\n", ready, failed);
      std::fflush(stdout);
    }
  }
};

class client : public std::enable_shared_from_this<client> {
public:
  /// With an empty `auth`, a client of a raw broadcast server: ready once
  /// connected.
  client(net::io_context& ioc, crowd& c, const target& t, size_t gateway, std::string auth)
    : ws_(ioc), c_(c), t_(t), gateway_(gateway), auth_(std::move(auth)) {
  }

  void start(const net::ip::address& source) {
    auto& sock = beast::get_lowest_layer(ws_).socket();
    beast::error_code ec;
    sock.open(t_.endpoint.protocol(), ec);
    if (!ec) {
      // The port is chosen at connect, per destination: one source address
      // may then hold more connections than its ephemeral ports.
      int one = 1;
      ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      if (!source.is_unspecified())
        sock.bind({source, 0}, ec);
    }
    if (ec)
      return fail();
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(ws_).async_connect(
      t_.endpoint, [self = shared_from_this()](beast::error_code ec) {
        if (ec)
          return self->fail();
        beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true));
        self->ws_.async_handshake(self->t_.host, self->t_.path, [self](beast::error_code ec) {
          if (ec)
            return self->fail();
          if (self->auth_.empty()) {
            self->on_ready();
            self->read();
            return;
          }
          self->ws_.async_write(net::buffer(self->auth_), [self](beast::error_code ec, size_t) {
            if (ec)
              return self->fail();
            self->ws_.async_write(net::buffer(subscribe_text()),
                                  [self](beast::error_code ec, size_t) {
                                    if (ec)
                                      self->fail();
                                  });
          });
          self->read();
        });
      });
  }

private:
  static const std::string& subscribe_text() {
    static const std::string text = R"({"op":"subscribe","channel":"breaking:bench","id":"s"})";
    return text;
  }

  void fail() {
    if (done_)
      return;
    done_ = true;
    if (ready_) {
      --c_.ready;
      ++c_.dropped;
      std::printf("dropped %zu\n", c_.dropped);
      std::fflush(stdout);
      return;
    }
    ++c_.failed;
    finish_opening();
  }

  void finish_opening() {
    --c_.in_flight;
    c_.settle();
    if (c_.next)
      c_.next();
  }

  void on_ready() {
    ready_ = true;
    // Idle clients stay open: no deadline once subscribed.
    beast::get_lowest_layer(ws_).expires_never();
    ++c_.ready;
    finish_opening();
  }

  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec)
        return self->fail();
      self->on_message(beast::buffers_to_string(self->buf_.data()));
      self->buf_.consume(self->buf_.size());
      self->read();
    });
  }

  void on_message(const std::string& text) {
    auto now = monotonic_ns();
    if (!ready_) {
      if (text.find(R"("type":"subscribed")") != std::string::npos) {
        on_ready();
      } else if (text.find(R"("type":"error")") != std::string::npos) {
        std::fprintf(stderr, "troupe bench crowd: refused: %s\n", text.c_str());
        fail();
      }
      return;
    }
    auto id = bench_id(text);
    if (id < 0)
      return;
    auto& a = c_.seen[id];
    if (a.count++ == 0) {
      a.first_ns = now;
      a.by_gateway.resize(c_.gateways);
    }
    a.last_ns = now;
    auto& g = a.by_gateway[gateway_];
    if (g.first == 0)
      g.first = now;
    g.second = now;
    if (!a.reported && a.count >= c_.ready) {
      a.reported = true;
      report("got", id, a);
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  crowd& c_;
  const target& t_;
  size_t gateway_;
  std::string auth_;
  bool ready_ = false;
  bool done_ = false;
};

/// Raises this process's open-files limit to its hard limit.
void raise_nofile() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

} // namespace

int bench_crowd(const bench_options& opt) {
  std::vector<target> targets;
  for (auto& u : opt.urls) {
    target t;
    if (!parse_target(u, t)) {
      std::fprintf(stderr, "troupe bench crowd: --url %s is not ws://ADDRESS:PORT/PATH\n",
                   u.c_str());
      return 2;
    }
    targets.push_back(t);
  }
  std::vector<net::ip::address> sources;
  for (auto& s : opt.sources) {
    boost::system::error_code ec;
    sources.push_back(net::ip::make_address(s, ec));
    if (ec) {
      std::fprintf(stderr, "troupe bench crowd: --source %s is not an address\n", s.c_str());
      return 2;
    }
  }
  if (sources.empty())
    sources.emplace_back();
  if (targets.empty()) {
    std::fprintf(stderr, "troupe bench crowd: at least one --url\n");
    return 2;
  }
  auto key = opt.raw ? caf::expected<std::string>{std::string{}}
                     : cluster::load_client_token_key(opt.token_key, false);
  if (!key) {
    std::fprintf(stderr, "troupe bench crowd: %s\n", render(key.error()).c_str());
    return 2;
  }
  raise_nofile();
  net::io_context ioc{1};
  crowd c;
  c.wanted = opt.subscribers;
  c.gateways = targets.size();
  std::vector<std::shared_ptr<client>> clients;
  clients.reserve(opt.subscribers);
  size_t started = 0;
  auto now_s = unix_ms() / 1000;
  // At most 256 clients opening at once: the gateways' accept queues never
  // overflow, and a refused client is a failure, not a retry.
  c.next = [&] {
    while (started < opt.subscribers && c.in_flight < 256) {
      cluster::client_claims claims;
      claims.issuer = opt.cluster;
      claims.user = opt.user_prefix + "-" + std::to_string(started);
      claims.issued_at = now_s;
      claims.expires_at = now_s + 3600;
      auto auth = opt.raw ? std::string{}
                          : R"({"op":"auth","token":")"
                              + cluster::sign_client_token(*key, claims) + R"(","id":"a"})";
      auto cl = std::make_shared<client>(ioc, c, targets[started % targets.size()],
                                         started % targets.size(),
                                         std::move(auth));
      clients.push_back(cl);
      ++c.in_flight;
      auto& source = sources[(started / targets.size()) % sources.size()];
      ++started;
      cl->start(source);
    }
  };
  net::post(ioc, [&] { c.next(); });
  // Reports articles some clients never got, and the lifetime bound.
  net::steady_timer tick{ioc};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opt.seconds);
  std::function<void()> on_tick = [&] {
    auto now = monotonic_ns();
    for (auto& [id, a] : c.seen) {
      if (!a.reported && now - a.first_ns > 10'000'000'000LL) {
        a.reported = true;
        report("partial", id, a);
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "troupe bench crowd: --seconds %d over, stopping\n", opt.seconds);
      ioc.stop();
      return;
    }
    tick.expires_after(std::chrono::milliseconds(200));
    tick.async_wait([&](beast::error_code ec) {
      if (!ec)
        on_tick();
    });
  };
  on_tick();
  // Standard input closed: the end.
  std::thread input{[&] {
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    net::post(ioc, [&] { ioc.stop(); });
  }};
  input.detach();
  ioc.run();
  std::fflush(stdout);
  // Not unwound: 100,000 sockets are closed by the process's end at once.
  std::_Exit(0);
}

int bench_publish(const bench_options& opt) {
  // The floor: one WebSocket to each raw broadcast server.
  net::io_context ioc{1};
  std::vector<std::unique_ptr<websocket::stream<tcp::socket>>> raw;
  for (auto& u : opt.raw ? opt.urls : std::vector<std::string>{}) {
    target t;
    beast::error_code ec;
    if (!parse_target(u, t)) {
      std::fprintf(stderr, "troupe bench publish: --gateway %s is not ws://ADDRESS:PORT/PATH\n",
                   u.c_str());
      return 2;
    }
    auto ws = std::make_unique<websocket::stream<tcp::socket>>(ioc);
    ws->next_layer().connect(t.endpoint, ec);
    if (!ec)
      ws->next_layer().set_option(tcp::no_delay(true), ec);
    if (!ec)
      ws->handshake(t.host, t.path, ec);
    if (ec) {
      std::fprintf(stderr, "troupe bench publish: %s: %s\n", u.c_str(), ec.message().c_str());
      return 1;
    }
    ws->text(true);
    raw.push_back(std::move(ws));
  }
  std::unique_ptr<kafka::producer> kafka_producer;
  if (!opt.raw) {
    auto conf = kafka::defaults(opt.kafka);
    conf["linger.ms"] = "0";
    auto p = kafka::producer::make(conf);
    if (!p) {
      std::fprintf(stderr, "troupe bench publish: %s\n", render(p.error()).c_str());
      return 1;
    }
    kafka_producer = std::move(*p);
  }
  // Ids differ from run to run: a gateway pushes an article id only once.
  auto base = static_cast<uint64_t>(unix_ms() % 100000000) * 100000;
  uint64_t sent = 0;
  static const char* categories[] = {"politics", "sports", "science",
                                     "business", "culture", "world"};
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.rfind("candidates ", 0) == 0 && kafka_producer) {
      auto& producer = *kafka_producer;
      auto n = std::strtoull(line.c_str() + 11, nullptr, 10);
      auto now = unix_ms();
      for (uint64_t i = 0; i < n; ++i) {
        auto text = R"({"schema":1,"id":"cand-)" + std::to_string(i)
                    + R"(","headline":"Candidate )" + std::to_string(i) + R"(","category":")"
                    + categories[i % 6] + R"(","bias":)" + std::to_string((i % 11) / 10.0)
                    + R"(,"published_at":)" + std::to_string(now - int64_t(i) * 60000) + "}";
        if (auto err = producer.produce("articles", "cand-" + std::to_string(i), text)) {
          std::fprintf(stderr, "troupe bench publish: %s\n", render(err).c_str());
          return 1;
        }
      }
      if (auto err = producer.flush(std::chrono::seconds(30))) {
        std::fprintf(stderr, "troupe bench publish: %s\n", render(err).c_str());
        return 1;
      }
      std::printf("candidates %llu\n", static_cast<unsigned long long>(n));
    } else if (line == "send") {
      auto id = base + sent++;
      auto text = R"({"schema":1,"id":"bench-)" + std::to_string(id)
                  + R"(","headline":"Breaking benchmark headline )" + std::to_string(id)
                  + R"(","category":"bench","bias":0.5,"published_at":)"
                  + std::to_string(unix_ms()) + R"(,"breaking":true})";
      auto t0 = monotonic_ns();
      for (auto& ws : raw) {
        beast::error_code ec;
        ws->write(net::buffer(text), ec);
        if (ec) {
          std::fprintf(stderr, "troupe bench publish: %s\n", ec.message().c_str());
          return 1;
        }
      }
      if (kafka_producer) {
        if (auto err = kafka_producer->produce("articles", "bench-" + std::to_string(id), text)) {
          std::fprintf(stderr, "troupe bench publish: %s\n", render(err).c_str());
          return 1;
        }
      }
      std::printf("sent %llu %lld\n", static_cast<unsigned long long>(id),
                  static_cast<long long>(t0));
    } else if (!line.empty()) {
      std::fprintf(stderr, "troupe bench publish: unknown command '%s'\n", line.c_str());
    }
    std::fflush(stdout);
  }
  if (kafka_producer)
    kafka_producer->flush(std::chrono::seconds(5));
  for (auto& ws : raw) {
    beast::error_code ignored;
    ws->close(websocket::close_code::normal, ignored);
  }
  return 0;
}

} // namespace troupe::cli
