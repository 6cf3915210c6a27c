// The HTTP server's broadcasts: many messages to more WebSocket clients
// than one turn of a thread serves, each client getting every one of them
// in the order they were published. Real Beast clients on loopback.

#include "runtime/http/server.hpp"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "runtime/core/error.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

using namespace std::chrono_literals;
using namespace troupe;

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;

/// Keeps every session that opens, and the server's deliver.
class collecting_handler : public http::ws_handler {
public:
  void set_deliver(http::deliver_fn fn) override {
    std::lock_guard<std::mutex> guard{mtx};
    deliver = std::move(fn);
  }

  bool accepting(std::string&) override {
    return true;
  }

  void on_open(const std::shared_ptr<http::ws_session>& s, const std::string&) override {
    std::lock_guard<std::mutex> guard{mtx};
    sessions.push_back(s);
    cv.notify_all();
  }

  void on_text(const std::shared_ptr<http::ws_session>&, std::string) override {
  }

  void on_close(const std::shared_ptr<http::ws_session>&, const std::string&) override {
  }

  std::mutex mtx;
  std::condition_variable cv;
  http::deliver_fn deliver;
  std::vector<std::shared_ptr<http::ws_session>> sessions;
};

} // namespace

TEST_CASE("a broadcast to more clients than one turn serves reaches every client, and every "
          "client gets the broadcasts in the order they were published") {
  collecting_handler handler;
  http::server_limits limits;
  limits.max_connections_per_address = 5000;
  auto srv = http::server::make(
    "127.0.0.1", 0, 2, [](const std::string&) { return http::response{}; }, &handler, limits);
  REQUIRE_MESSAGE(srv, render(srv.error()));
  constexpr size_t clients = 1200; // two threads, 512 connections per turn
  constexpr size_t messages = 20;
  net::io_context ioc;
  std::vector<std::unique_ptr<websocket::stream<tcp::socket>>> ws;
  tcp::endpoint ep{net::ip::make_address("127.0.0.1"), (*srv)->port()};
  for (size_t i = 0; i < clients; ++i) {
    auto s = std::make_unique<websocket::stream<tcp::socket>>(ioc);
    s->next_layer().connect(ep);
    s->handshake("127.0.0.1", "/ws");
    ws.push_back(std::move(s));
  }
  std::vector<std::shared_ptr<http::ws_session>> sessions;
  {
    std::unique_lock<std::mutex> lock{handler.mtx};
    REQUIRE(handler.cv.wait_for(lock, 10s, [&] { return handler.sessions.size() == clients; }));
    sessions = handler.sessions;
    REQUIRE(handler.deliver);
  }
  // Back to back: the later ones are queued while the first still goes out.
  for (size_t m = 0; m < messages; ++m) {
    auto copy = sessions;
    handler.deliver(std::move(copy), std::make_shared<const std::string>("m" + std::to_string(m)));
  }
  size_t in_order = 0;
  for (auto& s : ws) {
    beast::flat_buffer buf;
    bool ok = true;
    for (size_t m = 0; m < messages && ok; ++m) {
      beast::error_code ec;
      s->read(buf, ec);
      ok = !ec && beast::buffers_to_string(buf.data()) == "m" + std::to_string(m);
      buf.consume(buf.size());
    }
    in_order += ok ? 1 : 0;
  }
  CHECK(in_order == clients);
  // The sessions go before the server that runs them.
  sessions.clear();
  {
    std::lock_guard<std::mutex> guard{handler.mtx};
    handler.sessions.clear();
  }
  for (auto& s : ws) {
    beast::error_code ignored;
    s->next_layer().close(ignored);
  }
  srv->reset();
}
