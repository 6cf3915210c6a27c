// Membership with real node processes: `troupe node --config F --name N`,
// each on free loopback ports, read through their logs.

#include "runtime/cluster/node_agent.hpp"

#include <filesystem>
#include <fstream>
#include <map>

#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "runtime/cluster/auth.hpp"
#include "runtime/core/error.hpp"
#include "tests/support/cluster_file.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

/// How long three fresh nodes may take to find each other.
constexpr auto join_timeout = 15000ms;

const std::string timing = "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n";

} // namespace

TEST_CASE("proofs match only for the same secret, cluster, name and nonce") {
  auto nonce = cluster::make_nonce();
  CHECK(nonce.size() == 32);
  CHECK(nonce != cluster::make_nonce());
  auto proof = cluster::make_proof("secret-1", "c", "n1", nonce);
  CHECK(cluster::same_proof(proof, cluster::make_proof("secret-1", "c", "n1", nonce)));
  CHECK(!cluster::same_proof(proof, cluster::make_proof("secret-2", "c", "n1", nonce)));
  CHECK(!cluster::same_proof(proof, cluster::make_proof("secret-1", "d", "n1", nonce)));
  CHECK(!cluster::same_proof(proof, cluster::make_proof("secret-1", "c", "n2", nonce)));
  CHECK(!cluster::same_proof(proof, cluster::make_proof("secret-1", "c", "n1", "other")));
  CHECK(!cluster::same_proof("", ""));
}

TEST_CASE("a client token verifies with its key and cluster until it expires, and no other") {
  std::string key(32, 'k');
  cluster::client_claims c;
  c.issuer = "c";
  c.user = "ana";
  c.role = "operator";
  c.issued_at = 1000;
  c.expires_at = 4600;
  auto token = cluster::sign_client_token(key, c);
  auto ok = cluster::verify_client_token(key, "c", token, 1001);
  REQUIRE(ok);
  CHECK(ok->user == "ana");
  CHECK(ok->role == "operator");
  CHECK(ok->expires_at == 4600);
  auto why = [&](const std::string& k, const std::string& cl, const std::string& t, int64_t now) {
    auto x = cluster::verify_client_token(k, cl, t, now);
    return x ? std::string{"accepted"} : render(x.error());
  };
  CHECK(why(key, "c", token, 4600).find("expired") != std::string::npos);
  CHECK(why(std::string(32, 'x'), "c", token, 1001).find("bad signature") != std::string::npos);
  CHECK(why(key, "d", token, 1001).find("another cluster") != std::string::npos);
  // One byte of the signature changed.
  auto bent = token;
  bent.back() = bent.back() == 'A' ? 'B' : 'A';
  CHECK(why(key, "c", bent, 1001) != "accepted");
  CHECK(why(key, "c", token + ".x", 1001).find("not a JSON Web Token") != std::string::npos);
  CHECK(why(key, "c", std::string(5000, 'a'), 1001).find("4096") != std::string::npos);
  // Longer than 30 days, or without a role it knows: refused even when signed.
  c.expires_at = c.issued_at + cluster::max_client_token_ttl_s + 1;
  CHECK(why(key, "c", cluster::sign_client_token(key, c), 1001).find("30 days")
        != std::string::npos);
  c.expires_at = 4600;
  c.role = "root";
  CHECK(why(key, "c", cluster::sign_client_token(key, c), 1001).find("role")
        != std::string::npos);
}

TEST_CASE("a client token key is generated once, owner-only, and read back the same") {
  auto dir = "/tmp/troupe-key-test-" + std::to_string(::getpid());
  auto path = dir + "/sub/client-token.key";
  CHECK(!cluster::load_client_token_key(path, false));
  auto a = cluster::load_client_token_key(path, true);
  REQUIRE(a);
  CHECK(a->size() == 64);
  auto b = cluster::load_client_token_key(path, true);
  REQUIRE(b);
  CHECK(*a == *b);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::filesystem::remove_all(dir);
}

TEST_CASE("three node processes find each other and report every peer up") {
  cluster_file f{"test", "a-shared-secret", timing};
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  CHECK(n1->wait_for("member n2 up", join_timeout));
  CHECK(n1->wait_for("member n3 up", join_timeout));
  CHECK(n2->wait_for("member n1 up", join_timeout));
  CHECK(n2->wait_for("member n3 up", join_timeout));
  CHECK(n3->wait_for("member n1 up", join_timeout));
  CHECK(n3->wait_for("member n2 up", join_timeout));
  n1->signal(SIGTERM);
  CHECK(n1->wait_exit(5000ms) == 0);
  CHECK(n1->output().find("[n1] stopping") != std::string::npos);
}

TEST_CASE("a killed node is seen lost at once and rejoins when it comes back") {
  cluster_file f{"test", "a-shared-secret", timing};
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  REQUIRE(n1->wait_for("member n3 up", join_timeout));
  REQUIRE(n2->wait_for("member n3 up", join_timeout));
  auto m1 = n1->mark();
  auto m2 = n2->mark();
  auto t0 = std::chrono::steady_clock::now();
  n3->signal(SIGKILL);
  CHECK(n1->wait_for("member n3 down", 2000ms, m1));
  CHECK(n2->wait_for("member n3 down", 2000ms, m2));
  auto detected = std::chrono::steady_clock::now() - t0;
  MESSAGE("kill -9 detected after "
          << std::chrono::duration_cast<std::chrono::milliseconds>(detected).count() << " ms");
  CHECK(detected < 1000ms); // the failure timeout's bound on loopback
  n3->wait_exit(5000ms);
  m1 = n1->mark();
  auto n3b = start_node(f, "n3");
  CHECK(n1->wait_for("member n3 up", join_timeout, m1));
  CHECK(n3b->wait_for("member n1 up", join_timeout));
}

TEST_CASE("a frozen node is seen lost within the failure timeout and rejoins after SIGCONT") {
  cluster_file f{"test", "a-shared-secret", timing};
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  REQUIRE(n1->wait_for("member n3 up", join_timeout));
  REQUIRE(n2->wait_for("member n3 up", join_timeout));
  auto m1 = n1->mark();
  auto t0 = std::chrono::steady_clock::now();
  n3->signal(SIGSTOP);
  CHECK(n1->wait_for("member n3 down", 3000ms, m1));
  auto detected = std::chrono::steady_clock::now() - t0;
  MESSAGE("SIGSTOP detected after "
          << std::chrono::duration_cast<std::chrono::milliseconds>(detected).count() << " ms");
  CHECK(detected < 1000ms); // failure_timeout is 500ms
  m1 = n1->mark();
  auto m3 = n3->mark();
  n3->signal(SIGCONT);
  CHECK(n1->wait_for("member n3 up", join_timeout, m1));
  CHECK(n3->wait_for("member n1 up", join_timeout, m3));
}

TEST_CASE("a node with the wrong secret is refused and the refusal is logged") {
  cluster_file good{"test", "the-right-secret", timing};
  cluster_file bad{good, "test", "a-wrong-secret!"};
  auto n1 = start_node(good, "n1");
  auto n2 = start_node(good, "n2");
  auto n3 = start_node(bad, "n3");
  CHECK(n1->wait_for("member n2 up", join_timeout));
  // The secret keys the transport: the TLS handshake fails both ways, before
  // any actor is reachable.
  CHECK(n1->wait_for("[n1] connection to the cluster port from 127.0.0.1:", join_timeout));
  CHECK(n1->wait_for("refused (TLS: ", join_timeout));
  CHECK(n2->wait_for("refused (TLS: ", join_timeout));
  CHECK(n3->wait_for("refused (TLS: ", join_timeout));
  // Give it a few more connection rounds: it must never be let in.
  auto m1 = n1->mark();
  CHECK(!n1->wait_for("member n3 up", 1000ms, m1));
  CHECK(n1->output().find("member n3 up") == std::string::npos);
  CHECK(n3->output().find("member n1 up") == std::string::npos);
}
