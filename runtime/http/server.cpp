#include "runtime/http/server.hpp"

#include <deque>
#include <optional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "runtime/core/error.hpp"

namespace troupe::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
namespace ssl = boost::asio::ssl;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;

struct server::impl {
  /// One io_context per thread: a connection lives on one of them, so its
  /// handlers need no strand, and a broadcast posts one task per thread.
  std::vector<std::unique_ptr<net::io_context>> iocs;
  std::atomic<size_t> next_ioc{0};
  /// On the first io_context.
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  route_fn routes;
  ws_handler* ws = nullptr;
  server_limits limits;
  server_counters counters;
  std::atomic<uint64_t> next_id{1};
  std::atomic<uint64_t> open{0};
  std::mutex mtx;
  /// Open WebSocket connections, to close at shutdown.
  std::unordered_map<uint64_t, std::weak_ptr<ws_session>> live;
  /// Open connections per remote address (guarded by `mtx`).
  std::unordered_map<std::string, size_t> per_address;
  /// With TLS: the context every connection's stream uses.
  std::optional<ssl::context> tls;

  /// A thread's broadcasts not yet queued to every one of their sessions,
  /// in order: each turn queues one slice, so that requests on the same
  /// thread are served between slices, and a session still gets every
  /// broadcast in publication order. Touched only on that thread.
  struct pending_push {
    std::vector<std::shared_ptr<ws_session>> sessions;
    std::shared_ptr<const std::string> msg;
    size_t next = 0;
  };
  struct shard_pushes {
    std::deque<pending_push> queue;
    bool scheduled = false;
  };
  std::vector<std::unique_ptr<shard_pushes>> pushes;
  /// Sessions one turn queues a broadcast to.
  static constexpr size_t push_slice = 512;
  void push_turn(size_t shard);

  void accept();
  /// Queues `msg` to every session of `sessions`: one task per thread.
  void deliver(std::vector<std::shared_ptr<ws_session>>&& sessions,
               std::shared_ptr<const std::string> msg);
  ~impl();
};

namespace {

/// One accepted connection's place under the server's caps, from accept
/// until its socket is gone (an HTTP connection hands it to the WebSocket
/// connection it becomes).
class conn_slot {
public:
  conn_slot(server::impl& srv, std::string address)
    : srv_(srv), address_(std::move(address)) {
  }

  ~conn_slot() {
    --srv_.counters.open_connections;
    std::lock_guard<std::mutex> guard{srv_.mtx};
    if (auto i = srv_.per_address.find(address_); i != srv_.per_address.end() && --i->second == 0)
      srv_.per_address.erase(i);
  }

  /// Takes a slot for a connection from `address`, or none past a cap.
  static std::shared_ptr<conn_slot> take(server::impl& srv, const std::string& address) {
    if (srv.counters.open_connections.load() >= srv.limits.max_connections) {
      ++srv.counters.refused_over_total;
      return nullptr;
    }
    {
      std::lock_guard<std::mutex> guard{srv.mtx};
      auto& n = srv.per_address[address];
      if (n >= srv.limits.max_connections_per_address) {
        ++srv.counters.refused_over_address;
        return nullptr;
      }
      ++n;
    }
    ++srv.counters.open_connections;
    return std::make_shared<conn_slot>(srv, address);
  }

private:
  server::impl& srv_;
  std::string address_;
};

/// The path of a request target, without its query.
std::string path_of(const std::string& target) {
  return target.substr(0, target.find('?'));
}

/// What the server itself calls on a WebSocket connection, plain or TLS.
class ws_conn_base : public ws_session {
public:
  using ws_session::ws_session;

  /// The io_context (thread) the connection lives on.
  virtual size_t shard() const = 0;

  /// Queues `text`; only on this connection's own thread.
  virtual void enqueue_here(std::shared_ptr<const std::string> text) = 0;

  /// Ends the connection without a close frame (server shutdown).
  virtual void abort() = 0;
};

/// The socket under a plain or TLS stream.
template <class Stream>
tcp::socket& socket_of(Stream& s) {
  return beast::get_lowest_layer(s).socket();
}

/// One WebSocket connection: a read loop, a bounded write queue, and the
/// close handshake, all on the thread of the connection's io_context.
template <class Stream>
class ws_conn : public ws_conn_base, public std::enable_shared_from_this<ws_conn<Stream>> {
public:
  using std::enable_shared_from_this<ws_conn<Stream>>::shared_from_this;

  ws_conn(uint64_t id, Stream&& stream, server::impl& srv, size_t shard,
          std::shared_ptr<conn_slot> slot)
    : ws_conn_base(id), ws_(std::move(stream)), srv_(srv), shard_(shard), slot_(std::move(slot)) {
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    remote_ = sock.remote_endpoint(ec).address().to_string() + ":"
              + std::to_string(sock.remote_endpoint(ec).port());
  }

  void start(bhttp::request<bhttp::string_body> req) {
    req_ = std::move(req);
    beast::get_lowest_layer(ws_).expires_never();
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.set_option(tcp::no_delay(true), ec);
    if (srv_.limits.socket_send_buffer > 0)
      sock.set_option(net::socket_base::send_buffer_size(srv_.limits.socket_send_buffer), ec);
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::seconds(10);
    t.idle_timeout = std::chrono::seconds(60);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(srv_.limits.max_message);
    ws_.auto_fragment(false);
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(bhttp::field::server, "troupe");
    }));
    ws_.async_accept(req_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        self->ended_ = true; // never opened: nothing to tell the handler
        return;
      }
      self->opened_ = true;
      ++self->srv_.open;
      ++self->srv_.counters.ws_opened;
      {
        std::lock_guard<std::mutex> guard{self->srv_.mtx};
        self->srv_.live.emplace(self->id(), self);
      }
      if (!self->guarded([&] { self->srv_.ws->on_open(self, std::string(self->req_.target())); }))
        return;
      self->read();
    });
  }

  void send(std::shared_ptr<const std::string> text) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), text = std::move(text)]() mutable {
      self->enqueue(std::move(text));
    });
  }

  void close(uint16_t code, std::string reason) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), code, reason = std::move(reason)] {
      self->begin_close(code, reason);
    });
  }

  std::string remote() const override {
    return remote_;
  }

  size_t shard() const override {
    return shard_;
  }

  void enqueue_here(std::shared_ptr<const std::string> text) override {
    enqueue(std::move(text));
  }

  void abort() override {
    net::post(ws_.get_executor(), [self = shared_from_this()] { self->end("server stopping"); });
  }

private:
  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      if (ec == websocket::error::message_too_big || ec == websocket::error::bad_frame_payload)
        ++srv_.counters.ws_bad_frames;
      end(ec == websocket::error::closed ? std::string{"closed by client"} : ec.message());
      return;
    }
    if (!ws_.got_text()) {
      ++srv_.counters.ws_bad_frames;
      buf_.consume(buf_.size());
      begin_close(close_code::unsupported_data, "binary frames are not accepted: send JSON text");
      read(); // for the client's close frame
      return;
    }
    ++srv_.counters.ws_messages_in;
    auto text = beast::buffers_to_string(buf_.data());
    buf_.consume(buf_.size());
    if (!closing_ && !guarded([&] { srv_.ws->on_text(shared_from_this(), std::move(text)); }))
      return;
    read();
  }

  /// Runs a handler call; an exception (a bug: the handler must not throw)
  /// closes this connection with 1011 instead of ending the I/O thread.
  template <class F>
  bool guarded(F&& f) {
    try {
      f();
      return true;
    } catch (std::exception& ex) {
      begin_close(close_code::internal_error, std::string{"internal error: "} + ex.what());
    } catch (...) {
      begin_close(close_code::internal_error, "internal error");
    }
    read(); // for the client's close frame
    return false;
  }

  void enqueue(std::shared_ptr<const std::string> text) {
    if (ended_ || closing_)
      return;
    if (queue_.size() >= srv_.limits.send_queue) {
      // The client does not read: drop it rather than buffer without bound
      // or hold back the others. No close frame could pass the full pipe.
      ++srv_.counters.ws_dropped_slow;
      end("too slow: send queue full (" + std::to_string(queue_.size()) + " messages)");
      return;
    }
    queue_.push_back(std::move(text));
    if (!writing_)
      write();
  }

  void write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(net::buffer(*queue_.front()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->on_write(ec);
                    });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    if (ec) {
      end(ec.message());
      return;
    }
    ++srv_.counters.ws_messages_out;
    queue_.pop_front();
    if (ended_)
      return;
    if (!queue_.empty())
      write();
    else if (close_code_ != 0)
      send_close();
  }

  void begin_close(uint16_t code, const std::string& reason) {
    if (ended_ || closing_)
      return;
    closing_ = true;
    close_code_ = code;
    close_reason_ = reason.substr(0, 120); // a close frame's reason has at most 123 bytes
    queue_.clear();
    if (!writing_)
      send_close();
  }

  void send_close() {
    ws_.async_close(websocket::close_reason{static_cast<websocket::close_code>(close_code_), close_reason_},
                    [self = shared_from_this()](beast::error_code ec) {
                      // The read loop ends with the client's answer (or the
                      // close timeout); make sure it ends even without one.
                      if (ec)
                        self->end(ec.message());
                    });
  }

  void end(const std::string& why) {
    if (ended_)
      return;
    ended_ = true;
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    if (!opened_)
      return;
    --srv_.open;
    ++srv_.counters.ws_closed;
    {
      std::lock_guard<std::mutex> guard{srv_.mtx};
      srv_.live.erase(id());
    }
    srv_.ws->on_close(shared_from_this(), why);
  }

  websocket::stream<Stream> ws_;
  server::impl& srv_;
  size_t shard_;
  std::shared_ptr<conn_slot> slot_;
  bhttp::request<bhttp::string_body> req_;
  beast::flat_buffer buf_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::string remote_;
  bool opened_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool ended_ = false;
  uint16_t close_code_ = 0;
  std::string close_reason_;
};

/// One HTTP connection (keep-alive), plain or TLS, which may become a
/// WebSocket.
template <class Stream>
class http_conn : public std::enable_shared_from_this<http_conn<Stream>> {
public:
  using std::enable_shared_from_this<http_conn<Stream>>::shared_from_this;

  http_conn(Stream&& stream, server::impl& srv, size_t shard, std::shared_ptr<conn_slot> slot)
    : stream_(std::move(stream)), srv_(srv), shard_(shard), slot_(std::move(slot)) {
  }

  /// TLS: the handshake first, within the request timeout; a client that
  /// fails it (or does not speak TLS) is closed and counted.
  void handshake() {
    beast::get_lowest_layer(stream_).expires_after(srv_.limits.request_timeout);
    if constexpr (std::is_same_v<Stream, tls_stream>) {
      stream_.async_handshake(ssl::stream_base::server,
                              [self = shared_from_this()](beast::error_code ec) {
                                if (ec) {
                                  ++self->srv_.counters.tls_refused;
                                  beast::error_code ignored;
                                  socket_of(self->stream_).close(ignored);
                                  return;
                                }
                                self->read();
                              });
    } else {
      read();
    }
  }

  void read() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(64 * 1024);
    beast::get_lowest_layer(stream_).expires_after(srv_.limits.request_timeout);
    bhttp::async_read(stream_, buf_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        self->on_read(ec);
                      });
  }

private:
  void on_read(beast::error_code ec) {
    if (ec) {
      if (ec != bhttp::error::end_of_stream && ec != beast::error::timeout
          && ec != net::error::operation_aborted && ec != net::error::connection_reset) {
        response r{400, "text/plain; charset=utf-8", "bad request: " + ec.message() + "\n"};
        reply(r, false);
      } else {
        beast::error_code ignored;
        socket_of(stream_).shutdown(tcp::socket::shutdown_both, ignored);
      }
      return;
    }
    ++srv_.counters.http_requests;
    auto req = parser_->release();
    auto target = std::string(req.target());
    if (websocket::is_upgrade(req)) {
      std::string why;
      if (path_of(target) != "/ws") {
        reply({404, "text/plain; charset=utf-8", "WebSockets are served at /ws\n"}, false);
      } else if (!srv_.ws || !srv_.ws->accepting(why)) {
        reply({503, "text/plain; charset=utf-8", why + "\n"}, false);
      } else {
        auto conn = std::make_shared<ws_conn<Stream>>(srv_.next_id++, std::move(stream_), srv_,
                                                      shard_, std::move(slot_));
        conn->start(std::move(req));
      }
      return;
    }
    if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
      reply({405, "text/plain; charset=utf-8", "only GET\n"}, req.keep_alive(), req.version());
      return;
    }
    response r;
    try {
      r = srv_.routes ? srv_.routes(target) : response{404, "text/plain", "not found\n"};
    } catch (std::exception& ex) {
      r = {500, "text/plain; charset=utf-8", std::string{"internal error: "} + ex.what() + "\n"};
    }
    reply(r, req.keep_alive(), req.version(), req.method() == bhttp::verb::head);
  }

  void reply(const response& r, bool keep_alive, unsigned version = 11, bool head = false) {
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
      static_cast<bhttp::status>(r.status), version);
    res->set(bhttp::field::server, "troupe");
    res->set(bhttp::field::content_type, r.content_type);
    res->set(bhttp::field::cache_control, "no-store");
    res->keep_alive(keep_alive);
    if (!head)
      res->body() = r.body;
    res->prepare_payload();
    if (head)
      res->content_length(r.body.size());
    beast::get_lowest_layer(stream_).expires_after(srv_.limits.request_timeout);
    bhttp::async_write(stream_, *res,
                       [self = shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                         if (!ec && keep_alive) {
                           self->read();
                           return;
                         }
                         beast::error_code ignored;
                         socket_of(self->stream_).shutdown(tcp::socket::shutdown_send, ignored);
                       });
  }

  Stream stream_;
  server::impl& srv_;
  size_t shard_;
  std::shared_ptr<conn_slot> slot_;
  beast::flat_buffer buf_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
};

} // namespace

void server::impl::accept() {
  auto shard = next_ioc++ % iocs.size();
  acceptor->async_accept(*iocs[shard], [this, shard](beast::error_code ec, tcp::socket sock) {
    if (ec == net::error::operation_aborted || !acceptor->is_open())
      return;
    if (!ec) {
      beast::error_code ignored;
      auto from = sock.remote_endpoint(ignored).address().to_string();
      if (auto slot = conn_slot::take(*this, from)) {
        if (tls)
          std::make_shared<http_conn<tls_stream>>(tls_stream{std::move(sock), *tls}, *this, shard,
                                                  std::move(slot))
            ->handshake();
        else
          std::make_shared<http_conn<beast::tcp_stream>>(beast::tcp_stream{std::move(sock)},
                                                         *this, shard, std::move(slot))
            ->handshake();
      } else {
        // Over a cap: closed at once, before any byte is read.
        sock.set_option(net::socket_base::linger(true, 0), ignored);
        sock.close(ignored);
      }
      accept();
      return;
    }
    // A failed accept (out of files) must not stop the server, nor spin:
    // try again in 100 ms.
    auto timer = std::make_shared<net::steady_timer>(*iocs[0], std::chrono::milliseconds(100));
    timer->async_wait([this, timer](beast::error_code ec) {
      if (!ec && acceptor->is_open())
        accept();
    });
  });
}

void server::impl::deliver(std::vector<std::shared_ptr<ws_session>>&& sessions,
                           std::shared_ptr<const std::string> msg) {
  std::vector<std::vector<std::shared_ptr<ws_session>>> by_shard(iocs.size());
  for (auto& s : sessions)
    by_shard[static_cast<ws_conn_base&>(*s).shard()].push_back(std::move(s));
  for (size_t i = 0; i < iocs.size(); ++i)
    if (!by_shard[i].empty())
      net::post(*iocs[i], [this, i, xs = std::move(by_shard[i]), msg]() mutable {
        auto& p = *pushes[i];
        p.queue.push_back({std::move(xs), std::move(msg), 0});
        if (!p.scheduled) {
          p.scheduled = true;
          push_turn(i);
        }
      });
}

void server::impl::push_turn(size_t shard) {
  auto& p = *pushes[shard];
  size_t budget = push_slice;
  while (budget > 0 && !p.queue.empty()) {
    auto& front = p.queue.front();
    auto end = std::min(front.sessions.size(), front.next + budget);
    for (; front.next < end; ++front.next, --budget)
      static_cast<ws_conn_base&>(*front.sessions[front.next]).enqueue_here(front.msg);
    if (front.next == front.sessions.size())
      p.queue.pop_front();
  }
  if (p.queue.empty()) {
    p.scheduled = false;
    return;
  }
  // The rest after whatever this thread has waiting.
  net::post(*iocs[shard], [this, shard] { push_turn(shard); });
}

server::impl::~impl() {
  if (ws)
    ws->set_deliver({});
  beast::error_code ignored;
  net::post(*iocs[0], [this] {
    beast::error_code ec;
    acceptor->close(ec);
  });
  std::vector<std::shared_ptr<ws_session>> open_now;
  {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& kv : live)
      if (auto s = kv.second.lock())
        open_now.push_back(std::move(s));
  }
  for (auto& s : open_now)
    static_cast<ws_conn_base&>(*s).abort();
  open_now.clear();
  // Let the aborts run (each tells the handler), at most one second.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (open.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (auto& x : iocs)
    x->stop();
  for (auto& t : threads)
    if (t.joinable())
      t.join();
  // The handlers still queued hold connections, whose slots need this
  // object's mutex and counters: free them while those still exist.
  acceptor.reset();
  iocs.clear();
}

caf::expected<std::unique_ptr<server>> server::make(const std::string& host, uint16_t port,
                                                    size_t threads, route_fn routes,
                                                    ws_handler* ws, server_limits limits,
                                                    std::optional<server_tls> tls) {
  auto ptr = std::make_unique<impl>();
  if (tls) {
    try {
      ptr->tls.emplace(ssl::context::tls_server);
      ptr->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                            | ssl::context::no_sslv3 | ssl::context::no_tlsv1
                            | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
      ptr->tls->use_certificate_chain_file(tls->certificate);
      ptr->tls->use_private_key_file(tls->key, ssl::context::pem);
    } catch (const boost::system::system_error& e) {
      return caf::make_error(ec::invalid_argument, "HTTP server: cannot load the certificate or key ("
                                                     + tls->certificate + ", " + tls->key
                                                     + "): " + e.what());
    }
  }
  auto n = std::max<size_t>(1, threads);
  for (size_t i = 0; i < n; ++i) {
    ptr->iocs.push_back(std::make_unique<net::io_context>(1));
    ptr->pushes.push_back(std::make_unique<impl::shard_pushes>());
  }
  ptr->acceptor.emplace(*ptr->iocs[0]);
  ptr->routes = std::move(routes);
  ptr->ws = ws;
  ptr->limits = limits;
  beast::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec)
    return caf::make_error(ec::invalid_argument, "HTTP server: bad address '" + host + "'");
  tcp::endpoint ep{addr, port};
  auto fail = [&](const char* what) {
    return caf::make_error(ec::cannot_bind, "HTTP server: cannot " + std::string{what} + " "
                                                   + host + ":" + std::to_string(port) + ": "
                                                   + ec.message());
  };
  ptr->acceptor->open(ep.protocol(), ec);
  if (ec)
    return fail("open");
  ptr->acceptor->set_option(net::socket_base::reuse_address(true), ec);
  ptr->acceptor->bind(ep, ec);
  if (ec)
    return fail("bind");
  ptr->acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return fail("listen on");
  ptr->accept();
  if (ws)
    ws->set_deliver([p = ptr.get()](std::vector<std::shared_ptr<ws_session>>&& sessions,
                                    std::shared_ptr<const std::string> msg) {
      p->deliver(std::move(sessions), std::move(msg));
    });
  for (size_t i = 0; i < n; ++i)
    ptr->threads.emplace_back([p = ptr.get(), i] {
      auto work = net::make_work_guard(*p->iocs[i]);
      p->iocs[i]->run();
    });
  return std::unique_ptr<server>{new server(std::move(ptr))};
}

server::server(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
}

server::~server() = default;

uint16_t server::port() const {
  beast::error_code ec;
  return impl_->acceptor->local_endpoint(ec).port();
}

bool server::secure() const {
  return impl_->tls.has_value();
}

uint64_t server::connections() const {
  return impl_->open.load();
}

const server_counters& server::counters() const {
  return impl_->counters;
}

} // namespace troupe::http
