#include "runtime/cluster/secure_transport.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <caf/io/basp_broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor_impl.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/doorman_impl.hpp>
#include <caf/io/network/scribe_impl.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

namespace troupe::cluster {

namespace {

namespace net = caf::io::network;

/// A BASP connection over a Unix socket. CAF's own scribe asks the socket
/// for an IP address and port, which a Unix socket has not (CAF aborts on
/// that), so it names the cluster port instead, and as its address the
/// tunnel's link (`link:<id>`, see `link_of_address()`): CAF hands that out
/// only in its answer to `(get_atom, node_id)`, which is how the node agent
/// learns which link carries a peer.
class unix_scribe : public net::scribe_impl {
public:
  unix_scribe(net::default_multiplexer& mx, net::native_socket fd, uint16_t port,
              uint64_t link)
    : net::scribe_impl(mx, fd), port_(port), link_(link) {
  }

  std::string addr() const override {
    return "link:" + std::to_string(link_);
  }

  uint16_t port() const override {
    return port_;
  }

private:
  uint16_t port_;
  uint64_t link_;
};

/// The link id a relay bound its side of the BASP connection to (0 if none).
uint64_t link_of_peer(net::native_socket fd) {
  sockaddr_un sa{};
  socklen_t len = sizeof(sa);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0
      || len <= offsetof(sockaddr_un, sun_path))
    return 0;
  return tls_tunnel::link_of(
    std::string(sa.sun_path, static_cast<size_t>(len - offsetof(sockaddr_un, sun_path))));
}

/// The node's BASP socket: accepts connections of this process only (the
/// tunnel's relays) and names the cluster port for CAF.
class unix_doorman : public net::doorman_impl {
public:
  unix_doorman(net::default_multiplexer& mx, net::native_socket fd, uint16_t port, log_fn log)
    : net::doorman_impl(mx, fd), port_(port), log_(std::move(log)) {
  }

  bool new_connection() override {
    if (detached())
      return false;
    auto& dm = acceptor_.backend();
    auto fd = acceptor_.accepted_socket();
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid != ::getpid()) {
      ::close(fd);
      count_refused_connection("foreign_process");
      if (log_)
        log_("refused a local connection to the BASP socket from pid "
             + std::to_string(cred.pid) + " (only this process's TLS tunnel may connect)");
      return true;
    }
    net::nonblocking(fd, true);
    auto sptr = caf::make_counted<unix_scribe>(dm, fd, port_, link_of_peer(fd));
    auto hdl = sptr->hdl();
    parent()->add_scribe(std::move(sptr));
    return doorman::new_connection(&dm, hdl);
  }

  std::string addr() const override {
    return "127.0.0.1";
  }

  uint16_t port() const override {
    return port_;
  }

private:
  uint16_t port_;
  log_fn log_;
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
        ready_[key] = **result;
        passing_[key] += promises.size();
        auto me = caf::actor_cast<caf::actor>(this);
        for (auto& rp : promises)
          rp.delegate(me, caf::connect_atom::value, host, port);
      }};
    return behavior_type{behavior_type::unsafe_init{}, mine.or_else(base)};
  }

  void on_exit() override {
    for (auto& [key, l] : ready_)
      ::close(l.fd);
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
    auto l = i->second;
    ready_.erase(i);
    return caf::io::scribe_ptr{caf::make_counted<unix_scribe>(mpx(), l.fd, port, l.id)};
  }

  caf::expected<caf::io::doorman_ptr> open(uint16_t port, const char* addr, bool) override {
    if (port == 0)
      return caf::make_error(ec::cannot_bind,
                             std::string{"the cluster transport needs a fixed port"});
    static std::atomic<uint64_t> serial{0};
    auto name = std::string(1, '\0') + "troupe/basp/" + std::to_string(::getpid()) + "/"
                + std::to_string(port) + "/" + std::to_string(++serial);
    auto fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      return caf::make_error(ec::cannot_bind,
                             std::string{"cannot open the BASP socket: "} + std::strerror(errno));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, name.data(), name.size());
    auto sa_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sa_len) != 0 || ::listen(fd, 128) != 0) {
      auto err = std::string{std::strerror(errno)};
      ::close(fd);
      return caf::make_error(ec::cannot_bind, "cannot open the BASP socket: " + err);
    }
    std::string host = addr != nullptr && addr[0] != '\0' ? addr : "127.0.0.1";
    if (auto err = tunnel_->listen(host, port, name)) {
      ::close(fd);
      return err;
    }
    return caf::io::doorman_ptr{caf::make_counted<unix_doorman>(mpx(), fd, port, log_)};
  }

private:
  using connect_result =
    caf::delegated<caf::node_id, caf::strong_actor_ptr, std::set<std::string>>;

  /// Dial outcomes, handed from the tunnel's thread to this actor.
  struct results {
    std::mutex mtx;
    std::map<endpoint, caf::expected<tls_tunnel::link>> by_endpoint;

    void put(const endpoint& key, caf::expected<tls_tunnel::link> x) {
      std::lock_guard<std::mutex> guard{mtx};
      if (auto i = by_endpoint.find(key); i != by_endpoint.end() && i->second)
        ::close(i->second->fd);
      by_endpoint.insert_or_assign(key, std::move(x));
    }

    std::optional<caf::expected<tls_tunnel::link>> take(const endpoint& key) {
      std::lock_guard<std::mutex> guard{mtx};
      auto i = by_endpoint.find(key);
      if (i == by_endpoint.end())
        return std::nullopt;
      auto x = std::move(i->second);
      by_endpoint.erase(i);
      return x;
    }

    ~results() {
      for (auto& [key, x] : by_endpoint)
        if (x)
          ::close(x->fd);
    }
  };

  void dial(const endpoint& key) {
    auto me = caf::actor_cast<caf::actor_addr>(this);
    tunnel_->dial(key.first, key.second,
                  [me, key, out = results_](caf::expected<tls_tunnel::link> fd) {
      out->put(key, std::move(fd));
      if (auto self = caf::actor_cast<caf::actor>(me))
        caf::anon_send(self, dialed_atom::value, key.first, key.second);
    });
  }

  /// Closes a dialled connection nobody took.
  void discard(const endpoint& key) {
    if (auto i = ready_.find(key); i != ready_.end()) {
      ::close(i->second.fd);
      ready_.erase(i);
    }
  }

  std::shared_ptr<tls_tunnel> tunnel_;
  log_fn log_;
  std::shared_ptr<results> results_ = std::make_shared<results>();
  /// Requests waiting for a dial, by endpoint.
  std::map<endpoint, std::vector<caf::response_promise>> waiting_;
  /// Dialled connections not yet taken by `connect()`.
  std::map<endpoint, tls_tunnel::link> ready_;
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
