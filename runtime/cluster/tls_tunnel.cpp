#include "runtime/cluster/tls_tunnel.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include <csignal>
#include <optional>

#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/registry.hpp"

namespace troupe::cluster {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

/// A cluster connection's TCP options, set as soon as the socket is
/// connected or accepted (the TLS handshake included). No Nagle: BASP
/// messages are small and each is a request, an answer or a heartbeat that
/// must not wait for the peer's delayed acknowledgement (up to 40 ms). Linear retransmission
/// timeouts while the stream is thin (Linux's TCP_THIN_LINEAR_TIMEOUTS): a
/// heartbeat lost twice on a lossy link is resent after 200 + 200 ms, not
/// 200 + 400, so a node is not declared down for a loss TCP repairs.
template <class Socket>
void tune(Socket& sock) {
  boost::system::error_code ignored;
  sock.set_option(tcp::no_delay(true), ignored);
  int on = 1;
  ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, &on, sizeof(on));
}

} // namespace
using boost::system::error_code;

namespace {
class handshake;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

} // namespace

void block_sigpipe() {
  thread_local bool blocked = false;
  if (blocked)
    return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  blocked = true;
}

link_state::link_state(uint64_t id, int fd) : id_(id), heard_(steady_ms()), fd_(fd) {
}

void link_state::heard() noexcept {
  heard_.store(steady_ms(), std::memory_order_relaxed);
}

int64_t link_state::silence_ms() const noexcept {
  return steady_ms() - heard_.load(std::memory_order_relaxed);
}

void link_state::shutdown() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (fd_ >= 0)
    ::shutdown(fd_, SHUT_RDWR);
}

void link_state::closing() {
  std::lock_guard<std::mutex> guard{mtx_};
  fd_ = -1;
}

tls_connection::tls_connection(int fd, ssl_st* ssl, std::shared_ptr<link_state> link)
  : fd_(fd), ssl_(ssl), link_(std::move(link)) {
}

tls_connection::tls_connection(tls_connection&& other) noexcept
  : fd_(other.fd_), ssl_(other.ssl_), link_(std::move(other.link_)) {
  other.release();
}

tls_connection& tls_connection::operator=(tls_connection&& other) noexcept {
  if (this != &other) {
    this->~tls_connection();
    fd_ = other.fd_;
    ssl_ = other.ssl_;
    link_ = std::move(other.link_);
    other.release();
  }
  return *this;
}

tls_connection::~tls_connection() {
  if (ssl_ != nullptr)
    SSL_free(ssl_);
  if (fd_ >= 0) {
    if (link_)
      link_->closing();
    ::close(fd_);
  }
  release();
}

/// One TLS listener: whom its connections go to (changed when the agent is
/// published again).
struct listener {
  tcp::acceptor acceptor;
  std::function<void(tls_connection)> accepted;
  explicit listener(asio::io_context& io) : acceptor(io) {
  }
};

struct tls_tunnel::impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  ssl::context server_ctx{ssl::context::tls_server};
  ssl::context client_ctx{ssl::context::tls_client};
  std::chrono::milliseconds handshake_timeout;
  log_fn log;
  using listener_ref = std::shared_ptr<listener>;
  /// By "host:port"; guarded by `mtx` (read on the tunnel's thread).
  std::map<std::string, listener_ref> listeners;
  std::mutex mtx;
  /// The pre-shared key and its identity, without certificates.
  bool psk = false;
  std::array<unsigned char, 32> psk_key{};
  std::string psk_identity;
  /// Accepted connections still in their handshake; past
  /// `max_handshakes`, new ones are closed at once (a stranger holding
  /// connections open cannot take the node's files).
  std::atomic<uint64_t> handshaking{0};
  static constexpr uint64_t max_handshakes = 256;
  /// With certificates: the node each address belongs to, whose name the
  /// peer's certificate must hold (read-only after `make`).
  tls_tunnel::node_names nodes;
  std::atomic<uint64_t> relayed{0};
  std::atomic<uint64_t> refused{0};
  /// Every link handed over, by id (`silence_ms`, `close_link`); an entry
  /// lives as long as its connection. Guarded by `links_mtx`.
  std::atomic<uint64_t> next_link{0};
  std::mutex links_mtx;
  std::map<uint64_t, std::weak_ptr<link_state>> links;
  /// Set when the tunnel's last owner let go of it on the tunnel's own
  /// thread (from inside a handler): the thread then deletes this itself
  /// once the handler returns, as it cannot be joined from within.
  bool orphaned = false;
  std::thread thread;

  impl(std::chrono::milliseconds timeout, log_fn fn)
    : handshake_timeout(timeout), log(std::move(fn)) {
  }

  /// Lists a link handed over (and forgets those that ended).
  void enlist(const std::shared_ptr<link_state>& link) {
    std::lock_guard<std::mutex> guard{links_mtx};
    for (auto i = links.begin(); i != links.end();)
      i = i->second.expired() ? links.erase(i) : std::next(i);
    links.emplace(link->id(), link);
  }

  std::shared_ptr<link_state> find(uint64_t id) {
    std::lock_guard<std::mutex> guard{links_mtx};
    auto i = links.find(id);
    return i == links.end() ? nullptr : i->second.lock();
  }
};

void count_refused_connection(const std::string& reason) {
  registry::instance()
    .counter("troupe_cluster_refused_connections_total",
             "Connections to the cluster transport refused before reaching CAF: failed or "
             "timed-out TLS handshakes (no certificate of the cluster's CA, or no cluster "
             "secret), and handshakes past the limit of those in progress.",
             {{"reason", reason}})
    .fetch_add(1, std::memory_order_relaxed);
}

namespace {

void count_refused(const char* reason) {
  count_refused_connection(reason);
}

/// The reason OpenSSL gave for the last failure on this thread.
std::string openssl_reason() {
  auto code = ERR_peek_last_error();
  if (code == 0)
    return "the peer closed the connection";
  auto reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "error " + std::to_string(code);
}

/// One connection's TLS handshake, on the tunnel's thread: OpenSSL works on
/// the non-blocking socket itself, and Asio waits for the socket to be ready
/// whenever OpenSSL needs it. Once done, the socket and its session are
/// handed over as a `tls_connection` (the tunnel keeps nothing of it but its
/// `link_state`).
class handshake : public std::enable_shared_from_this<handshake> {
public:
  handshake(tls_tunnel::impl& t, ssl::context& ctx, std::string what)
    : t_(t), sock_(t.io), timer_(t.io), what_(std::move(what)), ssl_(SSL_new(ctx.native_handle())) {
  }

  /// Touches only its own members: the last reference may go with the
  /// tunnel's io_context, after the rest of the tunnel.
  ~handshake() {
    if (ssl_ != nullptr)
      SSL_free(ssl_);
  }

  tcp::socket& socket() {
    return sock_;
  }

  /// Server side: the handshake on the accepted socket, then `l`'s callback.
  void accept(const tls_tunnel::impl::listener_ref& l) {
    ++t_.handshaking;
    counted_ = true;
    listener_ = l;
    server_ = true;
    arm_timer();
    if (!bind_socket())
      return;
    SSL_set_accept_state(ssl_);
    step();
  }

  /// Client side: connect to the peer, hand-shake, and wait until the
  /// peer's first bytes are there (its BASP server handshake, written as
  /// soon as its middleman has the connection); only then hand the
  /// connection to `done` (an error instead if any step fails or the
  /// handshake timeout passes). CAF counts a client connection as silent
  /// since the clock's epoch until its first bytes arrive, and closes it at
  /// its next heartbeat tick: handed over before the peer spoke, a
  /// connection over a link slower than about 20 ms each way never opened.
  /// With `node` given, the peer's certificate must name it
  /// (subjectAltName `DNS:<node>`).
  void dial(const tcp::endpoint& peer, const std::string& node,
            std::function<void(caf::expected<tls_connection>)> done) {
    done_ = std::move(done);
    if (!node.empty()) {
      node_ = node;
      SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT
                                | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl_, node.c_str());
    }
    arm_timer();
    auto self = shared_from_this();
    sock_.async_connect(peer, [this, self](error_code ec) {
      if (closed_)
        return;
      if (ec)
        return fail_connect(ec.message());
      tune(sock_);
      if (!bind_socket())
        return;
      SSL_set_connect_state(ssl_);
      step();
    });
  }

private:
  /// Binds the session to the socket, made non-blocking (Asio leaves a
  /// socket it only waits on as it is).
  bool bind_socket() {
    error_code ec;
    sock_.non_blocking(true, ec);
    if (ec) {
      fail_connect("cannot make the socket non-blocking: " + ec.message());
      return false;
    }
    if (ssl_ == nullptr || SSL_set_fd(ssl_, sock_.native_handle()) != 1) {
      fail_connect("cannot start TLS: " + openssl_reason());
      return false;
    }
    return true;
  }

  /// Runs the handshake as far as the socket allows.
  void step() {
    if (closed_)
      return;
    block_sigpipe();
    ERR_clear_error();
    auto rc = SSL_do_handshake(ssl_);
    if (rc == 1)
      return handshake_done();
    auto self = shared_from_this();
    switch (SSL_get_error(ssl_, rc)) {
      case SSL_ERROR_WANT_READ:
        sock_.async_wait(tcp::socket::wait_read, [this, self](error_code ec) {
          if (!ec)
            step();
        });
        return;
      case SSL_ERROR_WANT_WRITE:
        sock_.async_wait(tcp::socket::wait_write, [this, self](error_code ec) {
          if (!ec)
            step();
        });
        return;
      default:
        refuse(openssl_reason());
    }
  }

  void handshake_done() {
    if (server_)
      return hand_over();
    // Wait, without reading, for the peer's first bytes.
    auto self = shared_from_this();
    sock_.async_wait(tcp::socket::wait_read, [this, self](error_code ec) {
      if (!ec && !closed_)
        hand_over();
    });
  }

  void hand_over() {
    handshake_over();
    timer_.cancel();
    error_code ec;
    auto fd = sock_.release(ec);
    if (ec) {
      fail_connect("cannot take the socket: " + ec.message());
      return;
    }
    closed_ = true;
    auto link = std::make_shared<link_state>(++t_.next_link, fd);
    t_.enlist(link);
    ++t_.relayed;
    tls_connection conn{fd, ssl_, link};
    ssl_ = nullptr;
    if (server_) {
      std::function<void(tls_connection)> accepted;
      {
        std::lock_guard<std::mutex> guard{t_.mtx};
        accepted = listener_->accepted;
      }
      if (accepted)
        accepted(std::move(conn));
      return;
    }
    auto done = std::move(done_);
    done_ = nullptr;
    done(std::move(conn));
  }

  void arm_timer() {
    timer_.expires_after(t_.handshake_timeout);
    auto self = shared_from_this();
    timer_.async_wait([this, self](error_code ec) {
      if (!ec && !closed_)
        refuse(std::nullopt);
    });
  }

  /// Ends a connection that never got through its handshake: a TLS failure
  /// (a certificate from another CA, a peer that does not speak TLS or holds
  /// another key, one that closed in the middle) or the handshake timeout
  /// (`reason` empty); both are logged and counted.
  void refuse(std::optional<std::string> reason) {
    if (closed_)
      return;
    ++t_.refused;
    if (reason && !node_.empty() && SSL_get_verify_result(ssl_) == X509_V_ERR_HOSTNAME_MISMATCH) {
      count_refused("wrong_identity");
      t_.log(what_ + ": refused (the peer's certificate does not name node '" + node_
             + "': no subjectAltName DNS:" + node_ + ")");
    } else {
      count_refused(reason ? "tls_handshake" : "handshake_timeout");
      t_.log(what_ + ": refused (" + (reason ? "TLS: " + *reason : "Connection timed out") + ")");
    }
    fail(what_ + " failed: " + (reason ? *reason : "no TLS handshake within the timeout"));
    close();
  }

  /// A dial that found nobody there: the agent logs its connection rounds
  /// itself.
  void fail_connect(const std::string& why) {
    fail(what_ + " failed: " + why);
    close();
  }

  /// Tells a dial's caller that no connection came of it (once).
  void fail(const std::string& why) {
    if (!done_)
      return;
    auto done = std::move(done_);
    done_ = nullptr;
    done(caf::make_error(ec::io_failure, why));
  }

  void handshake_over() {
    if (counted_) {
      counted_ = false;
      --t_.handshaking;
    }
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    handshake_over();
    error_code ignored;
    timer_.cancel();
    sock_.close(ignored);
  }

  tls_tunnel::impl& t_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  std::string what_;
  std::string node_;
  SSL* ssl_;
  tls_tunnel::impl::listener_ref listener_;
  std::function<void(caf::expected<tls_connection>)> done_;
  bool server_ = false;
  bool closed_ = false;
  bool counted_ = false;
};

void configure_certificates(ssl::context& ctx, const topology::tls_settings& tls) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                  | ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1
                  | ssl::context::single_dh_use);
  ctx.use_certificate_chain_file(tls.certificate);
  ctx.use_private_key_file(tls.key, ssl::context::pem);
  ctx.load_verify_file(tls.ca_file);
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
}

/// The tunnel a context belongs to, for the PSK callbacks.
int tunnel_index() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

tls_tunnel::impl* tunnel_of(SSL* ssl) {
  return static_cast<tls_tunnel::impl*>(
    SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tunnel_index()));
}

unsigned int psk_server(SSL* ssl, const char* identity, unsigned char* psk,
                        unsigned int max_len) {
  auto t = tunnel_of(ssl);
  if (t == nullptr || identity == nullptr || t->psk_identity != identity
      || max_len < t->psk_key.size())
    return 0; // unknown identity: the handshake fails
  std::memcpy(psk, t->psk_key.data(), t->psk_key.size());
  return static_cast<unsigned int>(t->psk_key.size());
}

unsigned int psk_client(SSL* ssl, const char*, char* identity, unsigned int max_identity,
                        unsigned char* psk, unsigned int max_len) {
  auto t = tunnel_of(ssl);
  if (t == nullptr || max_identity <= t->psk_identity.size() || max_len < t->psk_key.size())
    return 0;
  std::memcpy(identity, t->psk_identity.c_str(), t->psk_identity.size() + 1);
  std::memcpy(psk, t->psk_key.data(), t->psk_key.size());
  return static_cast<unsigned int>(t->psk_key.size());
}

/// TLS 1.3 only, keyed by the pre-shared key (with ECDHE: `psk_dhe_ke`).
/// Neither side has a certificate, so a peer without the key cannot finish
/// a handshake.
void configure_psk(ssl::context& ctx, tls_tunnel::impl& t, bool server) {
  auto h = ctx.native_handle();
  SSL_CTX_set_min_proto_version(h, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(h, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
  SSL_CTX_set_ex_data(h, tunnel_index(), &t);
  if (server)
    SSL_CTX_set_psk_server_callback(h, psk_server);
  else
    SSL_CTX_set_psk_client_callback(h, psk_client);
  ctx.set_verify_mode(ssl::verify_none);
}

void accept_loop(tls_tunnel::impl& t, tls_tunnel::impl::listener_ref l) {
  l->acceptor.async_accept([&t, l](error_code ec, tcp::socket sock) {
    if (ec == asio::error::operation_aborted)
      return;
    if (!ec && t.handshaking.load() >= tls_tunnel::impl::max_handshakes) {
      error_code ignored;
      sock.set_option(asio::socket_base::linger(true, 0), ignored);
      sock.close(ignored);
      ++t.refused;
      count_refused("too_many_handshakes");
    } else if (!ec) {
      error_code ignored;
      auto from = sock.remote_endpoint(ignored);
      auto h = std::make_shared<handshake>(t, t.server_ctx,
                                           "connection to the cluster port from "
                                             + from.address().to_string() + ":"
                                             + std::to_string(from.port()));
      tune(sock);
      h->socket() = std::move(sock);
      h->accept(l);
    }
    accept_loop(t, l);
  });
}

} // namespace

tls_tunnel::tls_tunnel(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
}

caf::expected<std::unique_ptr<tls_tunnel>>
tls_tunnel::make(const topology::cluster_settings& c, caf::timespan handshake_timeout,
                 log_fn log, node_names nodes) {
  auto ptr = std::make_unique<impl>(
    std::chrono::duration_cast<std::chrono::milliseconds>(handshake_timeout), std::move(log));
  if (c.tls) {
    ptr->nodes = std::move(nodes);
    auto& tls = *c.tls;
    try {
      configure_certificates(ptr->server_ctx, tls);
      configure_certificates(ptr->client_ctx, tls);
    } catch (const boost::system::system_error& e) {
      return caf::make_error(ec::invalid_argument,
                             "cannot load the TLS certificate, key or CA (" + tls.certificate
                               + ", " + tls.key + ", " + tls.ca_file + "): " + e.what());
    }
  } else {
    if (c.secret.empty())
      return caf::make_error(ec::invalid_argument,
                             std::string{"the cluster has no secret to key its transport with"});
    ptr->psk = true;
    ptr->psk_identity = "troupe:" + c.name;
    auto label = "troupe cluster transport|" + c.name;
    unsigned int len = 0;
    HMAC(EVP_sha256(), c.secret.data(), static_cast<int>(c.secret.size()),
         reinterpret_cast<const unsigned char*>(label.data()), label.size(),
         ptr->psk_key.data(), &len);
    configure_psk(ptr->server_ctx, *ptr, true);
    configure_psk(ptr->client_ctx, *ptr, false);
  }
  // After the handshake CAF's I/O loop reads and writes the records
  // (`secure_transport.cpp`): partial writes, retried from wherever its
  // buffer is; no session tickets or renegotiation, so nothing but the
  // peer's data arrives after the handshake and a read never has to write.
  for (auto* ctx : {&ptr->server_ctx, &ptr->client_ctx}) {
    auto h = ctx->native_handle();
    SSL_CTX_set_mode(h, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(h, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets(h, 0);
  }
  auto raw = ptr.get();
  ptr->thread = std::thread{[raw] {
    block_sigpipe();
    raw->io.run();
    if (raw->orphaned)
      delete raw;
  }};
  return std::unique_ptr<tls_tunnel>{new tls_tunnel(std::move(ptr))};
}

tls_tunnel::~tls_tunnel() {
  asio::post(impl_->io, [t = impl_.get()] {
    std::lock_guard<std::mutex> guard{t->mtx};
    for (auto& [key, l] : t->listeners) {
      error_code ignored;
      l->acceptor.close(ignored);
    }
  });
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.get_id() == std::this_thread::get_id()) {
    // Released by a handler's last reference (a dial's callback held the
    // secure middleman, the tunnel's owner): the thread finishes the
    // handler, returns from `run()` (stopped) and deletes `impl` itself.
    impl_->thread.detach();
    impl_->orphaned = true;
    static_cast<void>(impl_.release());
    return;
  }
  if (impl_->thread.joinable())
    impl_->thread.join();
}

caf::error tls_tunnel::listen(const std::string& host, uint16_t port,
                              std::function<void(tls_connection)> accepted) {
  auto key = host + ":" + std::to_string(port);
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    if (auto i = impl_->listeners.find(key); i != impl_->listeners.end()) {
      i->second->accepted = std::move(accepted);
      return caf::none;
    }
  }
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec)
    return caf::make_error(ec::cannot_bind, "cannot listen on " + host + ": " + ec.message());
  auto l = std::make_shared<listener>(impl_->io);
  l->accepted = std::move(accepted);
  auto& acc = l->acceptor;
  tcp::endpoint ep{addr, port};
  acc.open(ep.protocol(), ec);
  if (!ec)
    acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    acc.bind(ep, ec);
  if (!ec)
    acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return caf::make_error(ec::cannot_bind, "cannot listen on " + key + ": " + ec.message());
  auto t = impl_.get();
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->listeners.emplace(key, l);
  }
  asio::post(impl_->io, [t, l] { accept_loop(*t, l); });
  return caf::none;
}

tls_tunnel::node_names tls_tunnel::names_of(const std::vector<topology::node_spec>& nodes) {
  node_names result;
  for (auto& n : nodes)
    result[n.host + ":" + std::to_string(n.cluster_port)] = n.name;
  return result;
}

bool tls_tunnel::certificate_names(const std::string& path, const std::string& name) {
  auto f = std::fopen(path.c_str(), "r");
  if (f == nullptr)
    return false;
  auto cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (cert == nullptr)
    return false;
  auto ok = X509_check_host(cert, name.data(), name.size(),
                            X509_CHECK_FLAG_NEVER_CHECK_SUBJECT
                              | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                            nullptr)
            == 1;
  X509_free(cert);
  return ok;
}

void tls_tunnel::dial(const std::string& host, uint16_t port,
                      std::function<void(caf::expected<tls_connection>)> done) {
  std::string node;
  if (!impl_->psk) {
    auto i = impl_->nodes.find(host + ":" + std::to_string(port));
    if (i == impl_->nodes.end()) {
      done(caf::make_error(ec::not_authenticated,
                           "no node of the topology listens at " + host + ":"
                             + std::to_string(port)
                             + ": with certificates, only nodes are dialled"));
      return;
    }
    node = i->second;
  }
  auto t = impl_.get();
  auto what = "connection to " + host + ":" + std::to_string(port);
  asio::post(impl_->io, [t, host, port, what, node, done = std::move(done)]() mutable {
    auto go = [t, what, node](const tcp::endpoint& to,
                              std::function<void(caf::expected<tls_connection>)> done) {
      auto h = std::make_shared<handshake>(*t, t->client_ctx, what);
      h->dial(to, node, std::move(done));
    };
    error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec)
      return go(tcp::endpoint{addr, port}, std::move(done));
    // A host name: resolved on the tunnel's thread, without blocking it.
    auto resolver = std::make_shared<tcp::resolver>(t->io);
    resolver->async_resolve(
      host, std::to_string(port),
      [resolver, host, go, done = std::move(done)](error_code ec,
                                                   tcp::resolver::results_type results) mutable {
        if (ec || results.empty())
          return done(caf::make_error(ec::invalid_argument,
                                      "cannot resolve " + host + ": " + ec.message()));
        go(results.begin()->endpoint(), std::move(done));
      });
  });
}

uint64_t link_id_after(std::string_view text, std::string_view prefix) {
  if (text.size() <= prefix.size() || text.substr(0, prefix.size()) != prefix)
    return 0;
  uint64_t id = 0;
  for (auto c : text.substr(prefix.size())) {
    if (c < '0' || c > '9' || id > (UINT64_MAX - 9) / 10)
      return 0;
    id = id * 10 + static_cast<uint64_t>(c - '0');
  }
  return id;
}

int64_t tls_tunnel::silence_ms(uint64_t id) const {
  auto link = impl_->find(id);
  return link ? link->silence_ms() : -1;
}

void tls_tunnel::close_link(uint64_t id) {
  if (auto link = impl_->find(id))
    link->shutdown();
}

std::string tls_tunnel::keys() const {
  return impl_->psk ? "cluster secret (TLS 1.3 PSK)" : "certificates";
}

uint64_t tls_tunnel::relayed() const {
  return impl_->relayed.load();
}

uint64_t tls_tunnel::refused() const {
  return impl_->refused.load();
}

} // namespace troupe::cluster
