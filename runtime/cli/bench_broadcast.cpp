// `troupe bench broadcast` and `troupe bench feed`: WebSocket clients for
// scripts/bench-broadcast (Boost.Beast, one I/O thread).
//
// broadcast: N subscribers connect to --url; each of --count messages is
// published (to Kafka's `articles` topic with --kafka, else sent over one
// more WebSocket to a raw broadcast server with --raw) and timed until the
// last subscriber received it. One message at a time.
//
// feed: --count feed requests over one WebSocket, one at a time, timed.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "runtime/cli/bench.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"

namespace troupe::cli {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto i = static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(i, xs.size() - 1)];
}

std::string article_text(uint64_t i) {
  return R"({"schema":1,"id":"bench-)" + std::to_string(i)
         + R"(","headline":"Benchmark headline number )" + std::to_string(i)
         + R"( for the broadcast measurement of Troupe's gateway","category":"bench",)"
         + R"("bias":0.5,"published_at":)" + std::to_string(unix_ms()) + R"(,"breaking":true})";
}

/// What all subscribers share: the message being waited for.
struct fanout {
  std::mutex mtx;
  std::condition_variable cv;
  size_t subscribed = 0;
  size_t connected = 0;
  size_t failed = 0;
  int64_t current = -1;
  size_t received = 0;
  clock_type::time_point last;
};

class subscriber : public std::enable_shared_from_this<subscriber> {
public:
  subscriber(net::io_context& ioc, fanout& f, const url_parts& u, bool subscribe)
    : ws_(ioc), f_(f), u_(u), subscribe_(subscribe) {
  }

  void start(const tcp::endpoint& ep) {
    beast::get_lowest_layer(ws_).async_connect(ep, [self = shared_from_this()](
                                                     beast::error_code ec) {
      if (ec)
        return self->fail();
      beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true));
      self->ws_.async_handshake(self->u_.host + ":" + self->u_.port, self->u_.target,
                                [self](beast::error_code ec) {
                                  if (ec)
                                    return self->fail();
                                  self->on_open();
                                });
    });
  }

private:
  void fail() {
    std::lock_guard<std::mutex> guard{f_.mtx};
    ++f_.failed;
    f_.cv.notify_all();
  }

  void on_open() {
    {
      std::lock_guard<std::mutex> guard{f_.mtx};
      ++f_.connected;
      if (!subscribe_)
        ++f_.subscribed;
      f_.cv.notify_all();
    }
    if (subscribe_) {
      sub_ = std::make_shared<std::string>(
        R"({"op":"subscribe","channel":"breaking:bench","id":"s"})");
      ws_.async_write(net::buffer(*sub_), [self = shared_from_this()](beast::error_code ec,
                                                                     size_t) {
        if (ec)
          self->fail();
      });
    }
    read();
  }

  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec)
        return self->fail();
      auto text = beast::buffers_to_string(self->buf_.data());
      self->buf_.consume(self->buf_.size());
      self->on_message(text);
      self->read();
    });
  }

  void on_message(const std::string& text) {
    auto now = clock_type::now();
    std::lock_guard<std::mutex> guard{f_.mtx};
    if (text.find(R"("type":"subscribed")") != std::string::npos) {
      ++f_.subscribed;
      f_.cv.notify_all();
      return;
    }
    if (bench_id(text) == f_.current) {
      f_.last = now;
      if (++f_.received >= f_.connected)
        f_.cv.notify_all();
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  fanout& f_;
  url_parts u_;
  bool subscribe_;
  std::shared_ptr<std::string> sub_;
};

tcp::endpoint endpoint_of(const url_parts& u) {
  return {net::ip::make_address(u.host), static_cast<uint16_t>(std::stoi(u.port))};
}

} // namespace

bool parse_url(const std::string& url, url_parts& out) {
  auto rest = url.rfind("ws://", 0) == 0 ? url.substr(5) : std::string{};
  auto slash = rest.find('/');
  auto hostport = rest.substr(0, slash);
  auto colon = hostport.rfind(':');
  if (rest.empty() || colon == std::string::npos)
    return false;
  out.host = hostport.substr(0, colon);
  out.port = hostport.substr(colon + 1);
  out.target = slash == std::string::npos ? "/" : rest.substr(slash);
  return true;
}

int64_t bench_id(const std::string& text) {
  static const std::string key = "\"id\":\"bench-";
  auto i = text.find(key);
  if (i == std::string::npos)
    return -1;
  return std::strtoll(text.c_str() + i + key.size(), nullptr, 10);
}

int bench_broadcast(const bench_options& opt) {
  url_parts u;
  if (!parse_url(opt.url, u)) {
    std::fprintf(stderr, "troupe bench broadcast: --url must be ws://HOST:PORT/PATH\n");
    return 2;
  }
  bool raw = opt.kafka.empty();
  net::io_context ioc;
  auto guard = net::make_work_guard(ioc);
  std::thread io{[&] { ioc.run(); }};
  fanout f;
  auto ep = endpoint_of(u);
  // Connect in waves, so that the server's accept backlog never overflows.
  std::vector<std::shared_ptr<subscriber>> subs;
  for (size_t i = 0; i < opt.subscribers; ++i) {
    auto s = std::make_shared<subscriber>(ioc, f, u, !raw);
    subs.push_back(s);
    s->start(ep);
    if (i % 256 == 255) {
      std::unique_lock<std::mutex> lock{f.mtx};
      f.cv.wait_for(lock, std::chrono::seconds(30),
                    [&] { return f.subscribed + f.failed >= i + 1; });
    }
  }
  {
    std::unique_lock<std::mutex> lock{f.mtx};
    f.cv.wait_for(lock, std::chrono::seconds(60),
                  [&] { return f.subscribed + f.failed >= opt.subscribers; });
    std::printf("subscribers %zu (failed %zu)\n", f.subscribed, f.failed);
    if (f.subscribed < opt.subscribers) {
      std::fprintf(stderr, "troupe bench broadcast: only %zu of %zu subscribed\n", f.subscribed,
                   opt.subscribers);
      guard.reset();
      ioc.stop();
      io.join();
      return 1;
    }
  }
  std::fflush(stdout);
  // Hold here while the script reads the server's memory with idle clients.
  if (opt.hold_seconds > 0) {
    std::printf("idle\n");
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(opt.hold_seconds));
  }
  // The publisher: Kafka, or one more WebSocket to the raw server.
  net::io_context pub_ioc; // before the publisher, which uses it until its end
  std::unique_ptr<kafka::producer> producer;
  std::unique_ptr<websocket::stream<tcp::socket>> publisher;
  if (!raw) {
    auto conf = kafka::defaults(opt.kafka);
    conf["linger.ms"] = "0";
    auto p = kafka::producer::make(conf);
    if (!p) {
      std::fprintf(stderr, "troupe bench broadcast: %s\n", render(p.error()).c_str());
      return 1;
    }
    producer = std::move(*p);
  } else {
    publisher = std::make_unique<websocket::stream<tcp::socket>>(pub_ioc);
    publisher->next_layer().connect(ep);
    publisher->next_layer().set_option(tcp::no_delay(true));
    publisher->handshake(u.host + ":" + u.port, u.target);
  }
  std::vector<double> latencies_ms;
  size_t lost = 0;
  size_t warmup = 5;
  // Ids differ from run to run: the gateway pushes an article id only once.
  auto base = static_cast<uint64_t>(unix_ms() % 100000000) * 100000;
  for (uint64_t i = 0; i < opt.count + warmup; ++i) {
    auto text = article_text(base + i);
    clock_type::time_point t0;
    {
      std::lock_guard<std::mutex> lock{f.mtx};
      f.current = static_cast<int64_t>(base + i);
      f.received = 0;
      t0 = clock_type::now();
    }
    if (producer)
      producer->produce("articles", "bench-" + std::to_string(base + i), text);
    else
      publisher->write(net::buffer(text));
    std::unique_lock<std::mutex> lock{f.mtx};
    auto all = f.cv.wait_for(lock, std::chrono::seconds(10),
                             [&] { return f.received >= f.connected; });
    if (!all) {
      std::fprintf(stderr, "message %llu: %zu of %zu subscribers got it within 10 s\n",
                   static_cast<unsigned long long>(i), f.received, f.connected);
      ++lost;
      continue;
    }
    if (i >= warmup)
      latencies_ms.push_back(std::chrono::duration<double, std::milli>(f.last - t0).count());
  }
  std::printf("messages %zu lost %zu\n", latencies_ms.size(), lost);
  std::printf("last_subscriber_p50_ms %.2f\n", percentile(latencies_ms, 0.50));
  std::printf("last_subscriber_p99_ms %.2f\n", percentile(latencies_ms, 0.99));
  std::printf("last_subscriber_max_ms %.2f\n", percentile(latencies_ms, 1.0));
  std::fflush(stdout);
  if (publisher) {
    beast::error_code ignored;
    publisher->close(websocket::close_code::normal, ignored);
  }
  guard.reset();
  ioc.stop();
  io.join();
  return lost == 0 ? 0 : 1;
}

int bench_feed(const bench_options& opt) {
  url_parts u;
  if (!parse_url(opt.url, u)) {
    std::fprintf(stderr, "troupe bench feed: --url must be ws://HOST:PORT/PATH\n");
    return 2;
  }
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::error_code ec;
  ws.next_layer().connect(endpoint_of(u), ec);
  if (!ec)
    ws.next_layer().set_option(tcp::no_delay(true));
  if (!ec)
    ws.handshake(u.host + ":" + u.port, u.target, ec);
  if (ec) {
    std::fprintf(stderr, "troupe bench feed: %s\n", ec.message().c_str());
    return 1;
  }
  beast::flat_buffer buf;
  // The token goes in the first message, never in the URL.
  nlohmann::json auth{{"op", "auth"}, {"token", opt.token}};
  ws.write(net::buffer(auth.dump()));
  ws.read(buf, ec);
  auto answer = beast::buffers_to_string(buf.data());
  buf.consume(buf.size());
  if (ec || answer.find(R"("ok":true)") == std::string::npos) {
    std::fprintf(stderr, "troupe bench feed: not authenticated: %s\n",
                 ec ? ec.message().c_str() : answer.c_str());
    return 1;
  }
  std::vector<double> ms;
  std::string last;
  size_t failed = 0;
  auto paced_from = clock_type::now();
  for (uint64_t i = 0; i < opt.count + 10; ++i) {
    // With --rate, requests are spaced (a client's rate limit holds).
    if (opt.rate > 0)
      std::this_thread::sleep_until(
        paced_from + std::chrono::duration_cast<clock_type::duration>(
                       std::chrono::duration<double>(static_cast<double>(i) / opt.rate)));
    auto req = R"({"op":"feed","k":10,"id":)" + std::to_string(i) + "}";
    auto t0 = clock_type::now();
    ws.write(net::buffer(req));
    ws.read(buf);
    auto t1 = clock_type::now();
    last = beast::buffers_to_string(buf.data());
    buf.consume(buf.size());
    if (last.find(R"("type":"feed")") == std::string::npos) {
      ++failed;
      continue;
    }
    if (i >= 10) {
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      if (opt.each)
        std::printf("feed_ms %.3f\n", ms.back());
    }
  }
  auto candidates = last.find(R"("candidates":)");
  std::printf("feeds %zu failed %zu candidates %lld\n", ms.size(), failed,
              candidates == std::string::npos
                ? -1LL
                : std::strtoll(last.c_str() + candidates + 13, nullptr, 10));
  std::printf("feed_p50_ms %.2f\n", percentile(ms, 0.50));
  std::printf("feed_p95_ms %.2f\n", percentile(ms, 0.95));
  std::printf("feed_p99_ms %.2f\n", percentile(ms, 0.99));
  ws.close(websocket::close_code::normal, ec);
  return failed == 0 ? 0 : 1;
}

} // namespace troupe::cli
