// TLS between node processes ([cluster.tls]): certificates from a test CA
// made with the `openssl` command, real nodes, real traffic.

#include "runtime/cluster/tls_tunnel.hpp"

#include <cstdlib>
#include <fstream>
#include <regex>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "tests/support/cluster_file.hpp"

using namespace std::chrono_literals;
using namespace troupe::test;

namespace {

constexpr auto join_timeout = 15000ms;

/// A folder with two CAs and certificates: `n1`..`n3` and `operator` by the
/// cluster's CA (each node's names it, subjectAltName DNS:<node>; the
/// operator's names no node), `rogue` by another CA (naming n3).
struct certificates {
  std::string dir;

  certificates() {
    char tmpl[] = "/tmp/troupe-tls-XXXXXX";
    dir = mkdtemp(tmpl);
    auto ok = run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
                  " -keyout ca.key -out ca.pem -days 30 -subj /CN=troupe-test-ca")
              && run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
                     " -keyout rogue-ca.key -out rogue-ca.pem -days 30 -subj /CN=rogue-ca")
              && sign("n1", "ca", "DNS:n1") && sign("n2", "ca", "DNS:n2")
              && sign("n3", "ca", "DNS:n3") && sign("operator", "ca", "email:ops@example.org")
              && sign("rogue", "rogue-ca", "DNS:n3");
    REQUIRE(ok);
  }

  ~certificates() {
    std::system(("rm -rf '" + dir + "'").c_str());
  }

  /// The `tls = {...}` line of [cluster] for nodes that all use `name`.pem.
  std::string keys(const std::string& name) const {
    return "tls = { certificate = \"" + dir + "/" + name + ".pem\", key = \"" + dir + "/" + name
           + ".key\", ca_file = \"" + dir + "/ca.pem\" }\n";
  }

  /// The `tls = {...}` line of [cluster] for one certificate per node
  /// (`{node}`) and the operator's for the shell.
  std::string per_node() const {
    return "tls = { certificate = \"" + dir + "/{node}.pem\", key = \"" + dir
           + "/{node}.key\", ca_file = \"" + dir + "/ca.pem\", operator_certificate = \"" + dir
           + "/operator.pem\", operator_key = \"" + dir + "/operator.key\" }\n";
  }

private:
  bool run(const std::string& cmd) const {
    return std::system(("cd '" + dir + "' && " + cmd + " >/dev/null 2>&1").c_str()) == 0;
  }

  /// Writes (and closes) a file in the folder.
  bool write(const std::string& file, const std::string& text) const {
    std::ofstream out{dir + "/" + file};
    out << text;
    out.close();
    return static_cast<bool>(out);
  }

  bool sign(const std::string& name, const std::string& ca, const std::string& san) const {
    return run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "
               + name + ".key -out " + name + ".csr -subj /CN=" + name)
           && write(name + ".ext", "subjectAltName=" + san + "\n")
           && run("openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca
                  + ".key -CAcreateserial -out " + name + ".pem -days 30 -extfile " + name
                  + ".ext");
  }
};

const std::string timing = "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n";
const std::string remote_group = "[[group]]\nname = \"remote\"\ndomain = \"echo\"\n"
                                 "instances = 2\nnodes = [\"n2\", \"n3\"]\n";

/// What a plain TCP client reads from `port` within 500 ms (a CAF node sends
/// its BASP handshake at once; a TLS server waits for the client's hello).
ssize_t plain_bytes_from(uint16_t port) {
  auto fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{0, 500000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[256];
  auto n = recv(fd, buf, sizeof(buf), 0);
  close(fd);
  return n < 0 ? 0 : n;
}

} // namespace

TEST_CASE("nodes with certificates from the cluster's CA talk over TLS, and lose nothing when one is killed") {
  certificates certs;
  cluster_file f{"tls", "a-shared-secret", timing + certs.per_node(), remote_group};
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  auto n1 = start_node(f, "n1",
                  {"--rate", "1000", "--group", "remote", "--duration", "6s", "--expect-no-loss"});
  auto joined = n1->wait_for("[n1] member n2 up", join_timeout)
                && n1->wait_for("[n1] member n3 up", join_timeout);
  if (!joined)
    MESSAGE("n1:\n" << n1->output() << "n2:\n" << n2->output() << "n3:\n" << n3->output());
  REQUIRE(joined);
  CHECK(n1->output().find("(TLS, keyed by certificates)") != std::string::npos);
  // The cluster port speaks TLS only: a plain client gets no BASP handshake,
  // and the node logs the refused connection.
  auto mark = n2->mark();
  CHECK(plain_bytes_from(f.ports.at("n2").first) == 0);
  CHECK(n2->wait_for("refused (", 3000ms, mark));
  // A killed peer is still seen at once through the tunnel.
  REQUIRE(n2->wait_for("[n2] hosting remote: #0", join_timeout));
  auto down = n1->mark();
  n2->signal(SIGKILL);
  CHECK(n1->wait_for("[n1] member n2 down", 1500ms, down));
  auto rc = n1->wait_exit(30000ms);
  CHECK(rc == 0);
  if (rc != 0)
    MESSAGE("n1:\n" << n1->output());
  CHECK(n1->output().find(", lost 0;") != std::string::npos);
  MESSAGE(n1->output().substr(n1->output().find("[n1] traffic: sent")));
}

TEST_CASE("a node whose certificate another CA signed is refused, and the refusal is logged") {
  certificates certs;
  cluster_file f{"tls", "a-shared-secret", timing + certs.per_node()};
  cluster_file rogue{f, "tls", "a-shared-secret", timing + certs.keys("rogue")};
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  REQUIRE(n1->wait_for("[n1] member n2 up", join_timeout));
  auto mark = n1->mark();
  auto n3 = start_node(rogue, "n3");
  CHECK(n1->wait_for("refused (TLS: ", 5000ms, mark));
  CHECK(n3->wait_for("refused (TLS: ", 5000ms));
  CHECK(!n1->wait_for("[n1] member n3 up", 2000ms, mark));
  CHECK(!n3->wait_for("member n1 up", 100ms));
}

TEST_CASE("the operator's shell reaches a TLS cluster through its own tunnel, and not with a foreign certificate") {
  certificates certs;
  cluster_file f{"tls", "a-shared-secret", timing + certs.per_node()};
  cluster_file rogue{f, "tls", "a-shared-secret", timing + certs.keys("rogue")};
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  REQUIRE(n1->wait_for("[n1] member n2 up", join_timeout));
  REQUIRE(n1->wait_for("[n1] member n3 up", join_timeout));
  auto shell = child_process::start({TROUPE_BINARY, "shell", "--config", f.path, "-c", "nodes"});
  REQUIRE(shell);
  CHECK(shell->wait_exit(15000ms) == 0);
  auto out = shell->output();
  for (auto n : {"n1", "n2", "n3"})
    CHECK_MESSAGE(std::regex_search(out, std::regex{std::string{"(^|\\n)"} + n + " +up "}), out);
  CHECK(n1->wait_for("[n1] operator shell/", 5000ms));
  // The same shell with a certificate of another CA reaches no node (exit 3).
  auto mark = n1->mark();
  auto refused = child_process::start(
    {TROUPE_BINARY, "shell", "--config", rogue.path, "--timeout", "1", "-c", "nodes"});
  REQUIRE(refused);
  CHECK(refused->wait_exit(30000ms) == 3);
  CHECK(n1->wait_for("refused (TLS: ", 5000ms, mark));
  CHECK(!n1->wait_for("[n1] operator shell/", 100ms, mark));
}

TEST_CASE("a certificate of the cluster's CA that does not name the node is refused: neither an operator's nor another node's can act as a node") {
  certificates certs;
  cluster_file f{"tls", "a-shared-secret", timing + certs.per_node()};
  auto n1 = start_node(f, "n1");
  auto n3 = start_node(f, "n3");
  REQUIRE(n1->wait_for("[n1] member n3 up", join_timeout));
  // An impostor at n2's address, holding the secret and the operator's
  // certificate (the CA signed it; it names no node).
  for (auto stolen : {"operator", "n3"}) {
    CAPTURE(stolen);
    cluster_file impostor{f, "tls", "a-shared-secret", timing + certs.keys(stolen)};
    auto mark = n1->mark();
    auto n2 = start_node(impostor, "n2");
    CHECK(n2->wait_for("does not name it (no subjectAltName DNS:n2)", 5000ms));
    CHECK(n1->wait_for("refused (the peer's certificate does not name node 'n2'", 5000ms, mark));
    // It proves the secret as n2 when it dials n1, yet n1 never counts it.
    CHECK(!n1->wait_for("[n1] member n2 up", 2000ms, mark));
    n2->signal(SIGKILL);
    n2->wait_exit(5000ms);
  }
  // The real n2, with the certificate that names it, joins.
  auto mark = n1->mark();
  auto n2 = start_node(f, "n2");
  CHECK(n1->wait_for("[n1] member n2 up", join_timeout, mark));
  // The shell presents the operator's certificate and pins each node's.
  auto shell = child_process::start({TROUPE_BINARY, "shell", "--config", f.path, "-c", "nodes"});
  REQUIRE(shell);
  CHECK(shell->wait_exit(15000ms) == 0);
  CHECK_MESSAGE(std::regex_search(shell->output(), std::regex{"(^|\\n)n2 +up "}), shell->output());
}

TEST_CASE("a per-node certificate that cannot be read for one node is refused with its file, line and key") {
  certificates certs;
  cluster_file f{"tls", "a-shared-secret",
                 "tls = { certificate = \"" + certs.dir + "/{node}.pem\", key = \"" + certs.dir
                   + "/{node}.key\", ca_file = \"" + certs.dir + "/ca.pem\" }\n"};
  // The cluster file has n1..n3; n3's files exist, so remove them.
  std::remove((certs.dir + "/n3.pem").c_str());
  auto n1 = start_node(f, "n1");
  CHECK(n1->wait_exit(5000ms) == 2);
  CHECK_MESSAGE(n1->output().find("cluster.tls.certificate: cannot read certificate of node n3 '"
                                  + certs.dir + "/n3.pem'")
                  != std::string::npos,
                n1->output());
}

TEST_CASE("a TLS file that cannot be read is refused before the node starts") {
  certificates certs;
  cluster_file f{"tls", "a-shared-secret",
                 "tls = { certificate = \"" + certs.dir + "/missing.pem\", key = \"" + certs.dir
                   + "/n1.key\", ca_file = \"" + certs.dir + "/ca.pem\" }\n"};
  auto n1 = start_node(f, "n1");
  CHECK(n1->wait_exit(5000ms) == 2);
  CHECK(n1->output().find("cluster.tls.certificate: cannot read certificate") != std::string::npos);
}
