#include "runtime/cluster/secure_transport.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>

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

namespace troupe::cluster {

namespace {

namespace net = caf::io::network;

/// A BASP connection over a Unix socket. CAF's own scribe asks the socket
/// for an IP address and port, which a Unix socket has not (CAF aborts on
/// that), so it names the cluster port instead.
class unix_scribe : public net::scribe_impl {
public:
  unix_scribe(net::default_multiplexer& mx, net::native_socket fd, uint16_t port)
    : net::scribe_impl(mx, fd), port_(port) {
  }

  std::string addr() const override {
    return "127.0.0.1";
  }

  uint16_t port() const override {
    return port_;
  }

private:
  uint16_t port_;
};

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
    auto sptr = caf::make_counted<unix_scribe>(dm, fd, port_);
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
  }

  const char* name() const override {
    return "troupe.secure_middleman";
  }

protected:
  net::default_multiplexer& mpx() {
    return static_cast<net::default_multiplexer&>(system().middleman().backend());
  }

  caf::expected<caf::io::scribe_ptr> connect(const std::string& host, uint16_t port) override {
    auto fd = tunnel_->connect(host, port);
    if (!fd)
      return fd.error();
    return caf::io::scribe_ptr{caf::make_counted<unix_scribe>(mpx(), *fd, port)};
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
  std::shared_ptr<tls_tunnel> tunnel_;
  log_fn log_;
};

} // namespace

caf::io::middleman_actor spawn_secure_middleman(caf::actor_system& sys,
                                                std::shared_ptr<tls_tunnel> tunnel,
                                                log_fn log) {
  auto broker = sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  return sys.spawn<secure_middleman, caf::detached + caf::hidden>(std::move(broker),
                                                                  std::move(tunnel),
                                                                  std::move(log));
}

} // namespace troupe::cluster
