#include "runtime/cluster/tls_tunnel.hpp"

#include <array>
#include <atomic>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "runtime/core/error.hpp"

namespace troupe::cluster {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct tls_tunnel::impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  ssl::context server_ctx{ssl::context::tls_server};
  ssl::context client_ctx{ssl::context::tls_client};
  std::chrono::milliseconds handshake_timeout;
  log_fn log;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::atomic<uint64_t> relayed{0};
  std::atomic<uint64_t> refused{0};
  std::thread thread;

  impl(std::chrono::milliseconds timeout, log_fn fn)
    : handshake_timeout(timeout), log(std::move(fn)) {
  }
};

namespace {

/// One relayed connection: a TLS stream on one side, the plain loopback
/// connection to (or from) the local middleman on the other.
class relay : public std::enable_shared_from_this<relay> {
public:
  relay(tls_tunnel::impl& t, ssl::context& ctx, std::string what)
    : t_(t), tls_(t.io, ctx), plain_(t.io), timer_(t.io), what_(std::move(what)) {
  }

  ssl::stream<tcp::socket>& tls() {
    return tls_;
  }

  tcp::socket& plain() {
    return plain_;
  }

  /// Server side: handshake on the accepted TLS socket, then connect to the
  /// local BASP port.
  void accept(uint16_t basp_port) {
    arm_timer();
    auto self = shared_from_this();
    tls_.async_handshake(ssl::stream_base::server, [this, self, basp_port](error_code ec) {
      if (ec)
        return refuse(ec);
      plain_.async_connect({asio::ip::make_address_v4("127.0.0.1"), basp_port},
                           [this, self](error_code ec) {
                             if (ec)
                               return close();
                             start();
                           });
    });
  }

  /// Client side: the local middleman connected to `plain`; connect over TLS
  /// to the peer and hand-shake.
  void dial(const tcp::endpoint& peer) {
    arm_timer();
    auto self = shared_from_this();
    tls_.lowest_layer().async_connect(peer, [this, self](error_code ec) {
      if (ec)
        return refuse(ec);
      tls_.async_handshake(ssl::stream_base::client, [this, self](error_code ec) {
        if (ec)
          return refuse(ec);
        start();
      });
    });
  }

private:
  void arm_timer() {
    timer_.expires_after(t_.handshake_timeout);
    auto self = shared_from_this();
    timer_.async_wait([this, self](error_code ec) {
      if (!ec && !started_)
        refuse(asio::error::timed_out);
    });
  }

  /// Ends a connection that never got through its handshake. TLS failures
  /// (a certificate from another CA, a peer that does not speak TLS) and
  /// handshake timeouts are logged; a peer that is simply not there is not:
  /// the agent logs its failed connection rounds itself.
  void refuse(const error_code& ec) {
    if (closed_)
      return;
    ++t_.refused;
    auto tls_failure = ec.category() == asio::error::get_ssl_category()
                       || ec.category() == ssl::error::get_stream_category();
    if (tls_failure || ec == asio::error::timed_out)
      t_.log(what_ + ": refused (" + (tls_failure ? "TLS: " : "") + ec.message() + ")");
    close();
  }

  void start() {
    started_ = true;
    timer_.cancel();
    ++t_.relayed;
    error_code ignored;
    plain_.set_option(tcp::no_delay{true}, ignored);
    tls_.lowest_layer().set_option(tcp::no_delay{true}, ignored);
    pump(plain_, tls_, up_);
    pump(tls_, plain_, down_);
  }

  /// Copies what `from` reads to `to`, until either side fails or closes.
  template <class From, class To>
  void pump(From& from, To& to, std::array<char, 16384>& buf) {
    auto self = shared_from_this();
    from.async_read_some(asio::buffer(buf), [this, self, &from, &to, &buf](error_code ec, size_t n) {
      if (ec)
        return close();
      asio::async_write(to, asio::buffer(buf, n), [this, self, &from, &to, &buf](error_code ec, size_t) {
        if (ec)
          return close();
        pump(from, to, buf);
      });
    });
  }

  /// Closes both sides at once: the middleman sees its connection end as soon
  /// as the TLS one does (a killed peer), and the peer as soon as the
  /// middleman drops it (a heartbeat timeout).
  void close() {
    if (closed_)
      return;
    closed_ = true;
    error_code ignored;
    timer_.cancel();
    plain_.close(ignored);
    tls_.lowest_layer().close(ignored);
  }

  tls_tunnel::impl& t_;
  ssl::stream<tcp::socket> tls_;
  tcp::socket plain_;
  asio::steady_timer timer_;
  std::string what_;
  bool started_ = false;
  bool closed_ = false;
  std::array<char, 16384> up_;
  std::array<char, 16384> down_;
};

void configure(ssl::context& ctx, const topology::tls_settings& tls) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                  | ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1
                  | ssl::context::single_dh_use);
  ctx.use_certificate_chain_file(tls.certificate);
  ctx.use_private_key_file(tls.key, ssl::context::pem);
  ctx.load_verify_file(tls.ca_file);
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
}

void accept_loop(tls_tunnel::impl& t, tcp::acceptor& acc, uint16_t basp_port) {
  acc.async_accept([&t, &acc, basp_port](error_code ec, tcp::socket sock) {
    if (ec == asio::error::operation_aborted)
      return;
    if (!ec) {
      error_code ignored;
      auto from = sock.remote_endpoint(ignored);
      auto r = std::make_shared<relay>(t, t.server_ctx,
                                       "TLS connection from " + from.address().to_string() + ":"
                                         + std::to_string(from.port()));
      r->tls().lowest_layer() = std::move(sock);
      r->accept(basp_port);
    }
    accept_loop(t, acc, basp_port);
  });
}

void dial_loop(tls_tunnel::impl& t, tcp::acceptor& acc, std::string peer, tcp::endpoint to) {
  acc.async_accept([&t, &acc, peer, to](error_code ec, tcp::socket sock) {
    if (ec == asio::error::operation_aborted)
      return;
    if (!ec) {
      auto r = std::make_shared<relay>(t, t.client_ctx, "TLS connection to " + peer);
      r->plain() = std::move(sock);
      r->dial(to);
    }
    dial_loop(t, acc, peer, to);
  });
}

} // namespace

tls_tunnel::tls_tunnel(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
}

caf::expected<std::unique_ptr<tls_tunnel>>
tls_tunnel::make(const topology::tls_settings& tls, caf::timespan handshake_timeout,
                 log_fn log) {
  auto ptr = std::make_unique<impl>(
    std::chrono::duration_cast<std::chrono::milliseconds>(handshake_timeout), std::move(log));
  try {
    configure(ptr->server_ctx, tls);
    configure(ptr->client_ctx, tls);
  } catch (const boost::system::system_error& e) {
    return caf::make_error(ec::invalid_argument,
                           "cannot load the TLS certificate, key or CA (" + tls.certificate
                             + ", " + tls.key + ", " + tls.ca_file + "): " + e.what());
  }
  auto raw = ptr.get();
  ptr->thread = std::thread{[raw] { raw->io.run(); }};
  return std::unique_ptr<tls_tunnel>{new tls_tunnel(std::move(ptr))};
}

tls_tunnel::~tls_tunnel() {
  asio::post(impl_->io, [t = impl_.get()] {
    for (auto& a : t->acceptors) {
      error_code ignored;
      a->close(ignored);
    }
  });
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

caf::error tls_tunnel::listen(const std::string& host, uint16_t port, uint16_t basp_port) {
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec)
    return caf::make_error(ec::cannot_bind, "cannot listen on " + host + ": " + ec.message());
  auto acc = std::make_unique<tcp::acceptor>(impl_->io);
  tcp::endpoint ep{addr, port};
  acc->open(ep.protocol(), ec);
  if (!ec)
    acc->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    acc->bind(ep, ec);
  if (!ec)
    acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return caf::make_error(ec::cannot_bind, "cannot listen on " + host + ":"
                                                   + std::to_string(port) + ": " + ec.message());
  auto& ref = *acc;
  auto t = impl_.get();
  asio::post(impl_->io, [t, &ref, basp_port] { accept_loop(*t, ref, basp_port); });
  impl_->acceptors.push_back(std::move(acc));
  return caf::none;
}

caf::expected<uint16_t> tls_tunnel::dial(const std::string& peer, const std::string& host,
                                         uint16_t port) {
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    // A host name: resolve it once, now (the topology names fixed hosts).
    asio::io_context tmp;
    tcp::resolver resolver{tmp};
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty())
      return caf::make_error(ec::invalid_argument,
                             "cannot resolve " + host + " (node " + peer + "): " + ec.message());
    addr = results.begin()->endpoint().address();
  }
  auto acc = std::make_unique<tcp::acceptor>(impl_->io);
  tcp::endpoint local{asio::ip::make_address_v4("127.0.0.1"), 0};
  acc->open(local.protocol(), ec);
  if (!ec)
    acc->bind(local, ec);
  if (!ec)
    acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return caf::make_error(ec::invalid_argument,
                           "cannot open a local port for TLS to " + peer + ": " + ec.message());
  auto local_port = acc->local_endpoint().port();
  auto& ref = *acc;
  auto t = impl_.get();
  tcp::endpoint to{addr, port};
  asio::post(impl_->io, [t, &ref, peer, to] { dial_loop(*t, ref, peer, to); });
  impl_->acceptors.push_back(std::move(acc));
  return local_port;
}

uint64_t tls_tunnel::relayed() const {
  return impl_->relayed.load();
}

uint64_t tls_tunnel::refused() const {
  return impl_->refused.load();
}

} // namespace troupe::cluster
