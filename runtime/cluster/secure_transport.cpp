#include "runtime/cluster/secure_transport.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include <climits>
#include <deque>

#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <caf/io/basp_broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor_impl.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/acceptor_impl.hpp>
#include <caf/io/network/stream_impl.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

namespace troupe::cluster {

namespace {

namespace net = caf::io::network;

/// The records of one cluster connection, read and written by CAF's own I/O
/// loop (a `stream_impl` policy, in place of `policy::tcp`): the plain
/// bytes go to and from BASP exactly as over TCP, so a message crosses no
/// other thread. OpenSSL's retry rules hold: a write that would block is
/// retried from the same place of CAF's write buffer (which does not change
/// while it is written; partial writes and a moving buffer allowed), a read
/// goes on while OpenSSL holds decrypted bytes (`must_read_more`).
class tls_policy {
public:
  tls_policy(SSL* ssl, std::shared_ptr<link_state> link) : ssl_(ssl), link_(std::move(link)) {
    // Whole records and whatever follows them in one `recv` (a record's
    // header and body in two otherwise); what is left in OpenSSL's buffer
    // is read before the loop waits for the socket again (`must_read_more`).
    SSL_set_read_ahead(ssl_, 1);
  }

  tls_policy(const tls_policy&) = delete;
  tls_policy& operator=(const tls_policy&) = delete;

  ~tls_policy() {
    if (ssl_ != nullptr)
      SSL_free(ssl_);
  }

  net::rw_state read_some(size_t& result, net::native_socket, void* buf, size_t len) {
    result = 0;
    if (len == 0)
      return net::rw_state::success;
    block_sigpipe();
    ERR_clear_error();
    auto n = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT_MAX)));
    if (n > 0) {
      result = static_cast<size_t>(n);
      link_->heard();
      return net::rw_state::success;
    }
    return outcome(n);
  }

  net::rw_state write_some(size_t& result, net::native_socket, const void* buf, size_t len) {
    result = 0;
    if (len == 0)
      return net::rw_state::success;
    block_sigpipe();
    ERR_clear_error();
    auto n = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT_MAX)));
    if (n > 0) {
      result = static_cast<size_t>(n);
      return net::rw_state::success;
    }
    return outcome(n);
  }

  bool must_read_more(net::native_socket, size_t) {
    return SSL_has_pending(ssl_) == 1;
  }

private:
  /// Nothing done: the socket is not ready (CAF waits for it, as for a
  /// plain socket's EAGAIN), or the connection is over (the peer closed,
  /// reset, or sent a record that does not authenticate).
  net::rw_state outcome(int rc) {
    switch (SSL_get_error(ssl_, rc)) {
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        return net::rw_state::success;
      default:
        return net::rw_state::failure;
    }
  }

  SSL* ssl_;
  std::shared_ptr<link_state> link_;
};

/// A BASP connection over TLS (CAF's `scribe_impl`, with `tls_policy` for
/// its stream). It names the cluster port, and as its address the tunnel's
/// link (`link:<id>`, see `link_of_address()`): CAF hands that out only in
/// its answer to `(get_atom, node_id)`, which is how the node agent learns
/// which link carries a peer.
class tls_scribe : public caf::io::scribe {
public:
  tls_scribe(net::default_multiplexer& mx, tls_connection conn, uint16_t port)
    : caf::io::scribe(net::conn_hdl_from_socket(conn.fd())),
      link_(conn.link()),
      port_(port),
      stream_(mx, conn.fd(), conn.ssl(), conn.link()) {
    conn.release(); // the stream closes the socket, the policy frees the session
  }

  ~tls_scribe() override {
    link_->closing();
  }

  void configure_read(caf::io::receive_policy::config config) override {
    stream_.configure_read(config);
    if (!launched_)
      launch();
  }

  void ack_writes(bool enable) override {
    stream_.ack_writes(enable);
  }

  std::vector<char>& wr_buf() override {
    return stream_.wr_buf();
  }

  std::vector<char>& rd_buf() override {
    return stream_.rd_buf();
  }

  void graceful_shutdown() override {
    stream_.graceful_shutdown();
    detach(&stream_.backend(), false);
  }

  void flush() override {
    stream_.flush(this);
  }

  std::string addr() const override {
    return "link:" + std::to_string(link_->id());
  }

  uint16_t port() const override {
    return port_;
  }

  void launch() {
    launched_ = true;
    stream_.start(this);
  }

  void add_to_loop() override {
    stream_.activate(this);
  }

  void remove_from_loop() override {
    stream_.passivate();
  }

private:
  std::shared_ptr<link_state> link_;
  uint16_t port_;
  bool launched_ = false;
  net::stream_impl<tls_policy> stream_;
};

/// Connections the tunnel accepted (past their handshake), waiting for CAF's
/// I/O loop. An eventfd in semaphore mode counts them, so the loop wakes
/// once per connection; it is the doorman's "listening socket".
struct handoff {
  std::mutex mtx;
  std::deque<tls_connection> waiting;
  bool open = true;
  int efd = -1;
  /// The connection being taken (I/O loop only).
  tls_connection current;

  /// On the tunnel's thread.
  void push(tls_connection conn) {
    std::lock_guard<std::mutex> guard{mtx};
    if (!open)
      return; // the doorman is gone: the connection closes
    waiting.push_back(std::move(conn));
    uint64_t one = 1;
    static_cast<void>(::write(efd, &one, sizeof(one)));
  }

  /// The doorman is going: its eventfd closes next.
  void close() {
    std::lock_guard<std::mutex> guard{mtx};
    open = false;
    waiting.clear();
  }
};

/// `acceptor_impl`'s policy: one waiting connection per wake-up.
struct handoff_policy {
  std::shared_ptr<handoff> from;

  bool try_accept(net::native_socket& result, net::native_socket fd) {
    uint64_t n = 0;
    if (::read(fd, &n, sizeof(n)) != static_cast<ssize_t>(sizeof(n)))
      return false;
    std::lock_guard<std::mutex> guard{from->mtx};
    if (from->waiting.empty())
      return false;
    from->current = std::move(from->waiting.front());
    from->waiting.pop_front();
    result = from->current.fd();
    return true;
  }
};

/// The node's published endpoint inside the process: CAF's doorman, fed by
/// the tunnel with connections that passed the TLS handshake on the
/// cluster port. There is no BASP socket on the host at all, Unix or TCP.
class tls_doorman : public caf::io::doorman {
public:
  tls_doorman(net::default_multiplexer& mx, int efd, std::shared_ptr<handoff> from,
              std::string host, uint16_t port)
    : caf::io::doorman(net::accept_hdl_from_socket(efd)),
      from_(from),
      host_(std::move(host)),
      port_(port),
      acceptor_(mx, efd, handoff_policy{std::move(from)}) {
  }

  ~tls_doorman() override {
    from_->close();
  }

  bool new_connection() override {
    if (detached()) {
      from_->current = tls_connection{};
      return false;
    }
    auto& dm = acceptor_.backend();
    auto sptr = caf::make_counted<tls_scribe>(dm, std::move(from_->current), port_);
    auto hdl = sptr->hdl();
    parent()->add_scribe(std::move(sptr));
    return doorman::new_connection(&dm, hdl);
  }

  void graceful_shutdown() override {
    acceptor_.graceful_shutdown();
    detach(&acceptor_.backend(), false);
  }

  void launch() override {
    acceptor_.start(this);
  }

  std::string addr() const override {
    return host_;
  }

  uint16_t port() const override {
    return port_;
  }

  void add_to_loop() override {
    acceptor_.activate(this);
  }

  void remove_from_loop() override {
    acceptor_.passivate();
  }

private:
  std::shared_ptr<handoff> from_;
  std::string host_;
  uint16_t port_;
  net::acceptor_impl<handoff_policy> acceptor_;
};

class secure_middleman : public caf::io::middleman_actor_impl {
public:
  secure_middleman(caf::actor_config& cfg, caf::actor broker, std::shared_ptr<tls_tunnel> tunnel,
                   log_fn log)
    : caf::io::middleman_actor_impl(cfg, std::move(broker)),
      tunnel_(std::move(tunnel)),
      log_(std::move(log)) {
    // CAF's middleman actor ignores exit messages (remote groups link to
    // it); this one ends when its owner ends it (a node stopping, a shell
    // leaving), answering the requests still waiting for a dial.
    set_exit_handler([this](caf::exit_msg& msg) {
      if (msg.reason)
        quit(std::move(msg.reason));
    });
  }

  const char* name() const override {
    return "troupe.secure_middleman";
  }

  /// CAF's behaviour, with `connect_atom` first going through the tunnel:
  /// a request waits (without blocking this actor) until the tunnel's TLS
  /// connection to the peer is up and the peer has spoken, and only then
  /// reaches CAF's own handler, whose `connect()` takes that connection.
  /// Requests for an endpoint already being dialled wait for the same dial.
  behavior_type make_behavior() override {
    auto base = caf::message_handler{
      middleman_actor_impl::make_behavior().unbox().as_behavior_impl()};
    caf::message_handler mine{
      [this, base](caf::connect_atom, const std::string& host,
                   uint16_t port) mutable -> connect_result {
        endpoint key{host, port};
        if (auto i = passing_.find(key); i != passing_.end()) {
          // Dialled: CAF's handler answers (from its cache, by joining its
          // own pending request, or with the connection just dialled).
          if (--i->second == 0)
            passing_.erase(i);
          auto msg = current_mailbox_element()->copy_content_to_message();
          base(msg);
          if (passing_.count(key) == 0)
            discard(key); // CAF had the connection already
          return {};
        }
        auto& w = waiting_[key];
        w.push_back(make_response_promise());
        if (w.size() == 1)
          dial(key);
        return {};
      },
      [this](dialed_atom, const std::string& host, uint16_t port) {
        endpoint key{host, port};
        auto result = results_->take(key);
        auto w = waiting_.find(key);
        if (!result || w == waiting_.end())
          return;
        auto promises = std::move(w->second);
        waiting_.erase(w);
        if (!*result) {
          for (auto& rp : promises)
            rp.deliver(result->error());
          return;
        }
        discard(key);
        ready_[key] = std::move(**result);
        passing_[key] += promises.size();
        auto me = caf::actor_cast<caf::actor>(this);
        for (auto& rp : promises)
          rp.delegate(me, caf::connect_atom::value, host, port);
      }};
    return behavior_type{behavior_type::unsafe_init{}, mine.or_else(base)};
  }

  void on_exit() override {
    ready_.clear();
    for (auto& [key, promises] : waiting_)
      for (auto& rp : promises)
        rp.deliver(caf::make_error(caf::sec::cannot_connect_to_node));
    waiting_.clear();
    middleman_actor_impl::on_exit();
  }

protected:
  net::default_multiplexer& mpx() {
    return static_cast<net::default_multiplexer&>(system().middleman().backend());
  }

  /// Takes the connection the tunnel dialled for this endpoint.
  caf::expected<caf::io::scribe_ptr> connect(const std::string& host, uint16_t port) override {
    auto i = ready_.find(endpoint{host, port});
    if (i == ready_.end())
      return caf::make_error(ec::io_failure,
                             "no connection to " + host + ":" + std::to_string(port)
                               + " (the one dialled was taken and lost)");
    auto conn = std::move(i->second);
    ready_.erase(i);
    return caf::io::scribe_ptr{caf::make_counted<tls_scribe>(mpx(), std::move(conn), port)};
  }

  caf::expected<caf::io::doorman_ptr> open(uint16_t port, const char* addr, bool) override {
    if (port == 0)
      return caf::make_error(ec::cannot_bind,
                             std::string{"the cluster transport needs a fixed port"});
    auto efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
    if (efd < 0)
      return caf::make_error(ec::cannot_bind,
                             std::string{"cannot open the doorman's eventfd: "}
                               + std::strerror(errno));
    auto from = std::make_shared<handoff>();
    from->efd = efd;
    std::string host = addr != nullptr && addr[0] != '\0' ? addr : "127.0.0.1";
    if (auto err = tunnel_->listen(host, port, [from](tls_connection conn) {
          from->push(std::move(conn));
        })) {
      ::close(efd);
      return err;
    }
    return caf::io::doorman_ptr{caf::make_counted<tls_doorman>(mpx(), efd, from, host, port)};
  }

private:
  using connect_result =
    caf::delegated<caf::node_id, caf::strong_actor_ptr, std::set<std::string>>;

  /// Dial outcomes, handed from the tunnel's thread to this actor.
  struct results {
    std::mutex mtx;
    std::map<endpoint, caf::expected<tls_connection>> by_endpoint;

    void put(const endpoint& key, caf::expected<tls_connection> x) {
      std::lock_guard<std::mutex> guard{mtx};
      by_endpoint.insert_or_assign(key, std::move(x));
    }

    std::optional<caf::expected<tls_connection>> take(const endpoint& key) {
      std::lock_guard<std::mutex> guard{mtx};
      auto i = by_endpoint.find(key);
      if (i == by_endpoint.end())
        return std::nullopt;
      auto x = std::move(i->second);
      by_endpoint.erase(i);
      return x;
    }
  };

  void dial(const endpoint& key) {
    auto me = caf::actor_cast<caf::actor_addr>(this);
    tunnel_->dial(key.first, key.second,
                  [me, key, out = results_](caf::expected<tls_connection> conn) {
      out->put(key, std::move(conn));
      if (auto self = caf::actor_cast<caf::actor>(me))
        caf::anon_send(self, dialed_atom::value, key.first, key.second);
    });
  }

  /// Closes a dialled connection nobody took.
  void discard(const endpoint& key) {
    ready_.erase(key);
  }

  std::shared_ptr<tls_tunnel> tunnel_;
  log_fn log_;
  std::shared_ptr<results> results_ = std::make_shared<results>();
  /// Requests waiting for a dial, by endpoint.
  std::map<endpoint, std::vector<caf::response_promise>> waiting_;
  /// Dialled connections not yet taken by `connect()`.
  std::map<endpoint, tls_connection> ready_;
  /// Requests sent back through CAF's handler after their dial.
  std::map<endpoint, size_t> passing_;
};

} // namespace

uint64_t link_of_address(const std::string& addr) {
  return link_id_after(addr, "link:");
}

caf::io::middleman_actor spawn_secure_middleman(caf::actor_system& sys,
                                                std::shared_ptr<tls_tunnel> tunnel,
                                                log_fn log) {
  auto broker = sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  return sys.spawn<secure_middleman, caf::detached + caf::hidden>(std::move(broker),
                                                                  std::move(tunnel),
                                                                  std::move(log));
}

} // namespace troupe::cluster
