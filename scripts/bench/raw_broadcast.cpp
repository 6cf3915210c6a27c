// The floor of scripts/bench-broadcast: the least a Boost.Beast server does
// to broadcast on this machine. One I/O thread; every text message a client
// sends is encoded once and queued to every other client (shared, never
// copied); no JSON, no channels, no limits.
//
//   raw_broadcast PORT [ADDRESS]   (prints "listening on PORT"; binds
//                                   ADDRESS, by default 127.0.0.1)

#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;

class session;

/// Everyone connected (one thread: no locks).
std::unordered_set<session*> everyone;

class session : public std::enable_shared_from_this<session> {
public:
  explicit session(tcp::socket&& s) : ws_(std::move(s)) {
  }

  void start() {
    ws_.next_layer().set_option(tcp::no_delay(true));
    ws_.async_accept([self = shared_from_this()](beast::error_code ec) {
      if (ec)
        return;
      everyone.insert(self.get());
      self->read();
    });
  }

  void send(const std::shared_ptr<const std::string>& msg) {
    queue_.push_back(msg);
    if (queue_.size() == 1)
      write();
  }

private:
  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        everyone.erase(self.get());
        return;
      }
      auto msg = std::make_shared<const std::string>(beast::buffers_to_string(self->buf_.data()));
      self->buf_.consume(self->buf_.size());
      for (auto* s : everyone)
        if (s != self.get())
          s->send(msg);
      self->read();
    });
  }

  void write() {
    ws_.text(true);
    ws_.async_write(net::buffer(*queue_.front()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      if (ec) {
                        everyone.erase(self.get());
                        return;
                      }
                      self->queue_.pop_front();
                      if (!self->queue_.empty())
                        self->write();
                    });
  }

  websocket::stream<tcp::socket> ws_;
  beast::flat_buffer buf_;
  std::deque<std::shared_ptr<const std::string>> queue_;
};

void accept(tcp::acceptor& acc) {
  acc.async_accept([&acc](beast::error_code ec, tcp::socket s) {
    if (!ec)
      std::make_shared<session>(std::move(s))->start();
    accept(acc);
  });
}

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: raw_broadcast PORT [ADDRESS]\n");
    return 2;
  }
  net::io_context ioc{1};
  tcp::acceptor acc{ioc, {net::ip::make_address(argc == 3 ? argv[2] : "127.0.0.1"),
                          static_cast<unsigned short>(std::atoi(argv[1]))}};
  std::printf("listening on %u\n", acc.local_endpoint().port());
  std::fflush(stdout);
  accept(acc);
  ioc.run();
}
