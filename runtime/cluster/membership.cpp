// The node agent's membership and authentication: the challenge both ways,
// dialling peers, losing and regaining them, claims and subscriptions.
#include "runtime/cluster/agent_state.hpp"

#include <algorithm>
#include <atomic>

#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>

#include "runtime/cluster/auth.hpp"
#include "runtime/cluster/secure_transport.hpp"
#include "runtime/cluster/tls_tunnel.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/registry.hpp"
#include "runtime/core/types.hpp"

namespace troupe::cluster {

caf::timespan agent_state::request_timeout() const {
  return topo.cluster.failure_timeout * 2;
}

caf::node_id agent_state::sender_node() {
  auto src = self->current_sender();
  if (!src || src->node() == self->system().node())
    return caf::node_id{};
  return src->node();
}

bool agent_state::sender_local() {
  auto src = self->current_sender();
  return src && src->node() == self->system().node();
}

bool agent_state::sender_trusted() {
  auto src = self->current_sender();
  if (!src)
    return false;
  return src->node() == self->system().node() || trusted.count(src->node()) > 0;
}

void agent_state::notify_up(const std::string& name) {
  for (auto& l : listeners)
    self->send(l, member_up_atom::value, name, peers[name].agent);
}

void agent_state::notify_down(const std::string& name, const std::string& reason) {
  for (auto& l : listeners)
    self->send(l, member_down_atom::value, name, reason);
}

std::string agent_state::challenge(const caf::node_id& nid, const std::string& name) {
  auto now = std::chrono::steady_clock::now();
  for (auto i = nonces.begin(); i != nonces.end();)
    i = now - i->second.second > challenge_ttl ? nonces.erase(i) : std::next(i);
  if (nonces.size() >= max_pending_challenges) {
    auto oldest = std::min_element(nonces.begin(), nonces.end(), [](auto& x, auto& y) {
      return x.second.second < y.second.second;
    });
    nonces.erase(oldest);
  }
  auto nonce = make_nonce();
  nonces[{nid, name}] = {nonce, now};
  return nonce;
}

caf::result<std::string> agent_state::on_hello(const std::string& name, const std::string& cluster) {
  if (!self->current_sender())
    return caf::make_error(ec::not_authenticated, "anonymous");
  auto nid = sender_node();
  if (cluster != topo.cluster.name) {
    log.warning("refused node '" + name + "': it belongs to cluster '" + cluster + "'");
    return caf::make_error(ec::not_authenticated, "wrong cluster");
  }
  if (is_operator(name)) {
    // Operators use the mutual handshake (`on_operator_hello`).
    log.warning("refused operator '" + name + "': it did not ask for the mutual handshake");
    return caf::make_error(ec::not_authenticated, "operators use the mutual handshake");
  }
  if (!topo.node(name) || name == me) {
    log.warning("refused node '" + name + "': not a node of this cluster");
    return caf::make_error(ec::not_authenticated, "unknown node");
  }
  auto nonce = challenge(nid, name);
  // A peer we count as up asks to prove itself again: it has lost us (it
  // saw us frozen, say, while we never saw it go), so it no longer trusts
  // us either. Prove ourselves to it again, or it would wait forever.
  auto& p = peers[name];
  if (p.state == "up" && !p.connecting)
    connect(name);
  return nonce;
}

caf::result<std::vector<std::string>>
agent_state::on_operator_hello(const std::string& name, const std::string& cluster,
                               const std::string& shell_nonce) {
  if (!self->current_sender() || !sender_node())
    return caf::make_error(ec::not_authenticated, "anonymous");
  if (cluster != topo.cluster.name) {
    log.warning("refused operator '" + name + "': it belongs to cluster '" + cluster + "'");
    return caf::make_error(ec::not_authenticated, "wrong cluster");
  }
  if (!is_operator(name) || name.size() > 128 || shell_nonce.size() != 32)
    return caf::make_error(ec::not_authenticated, "not an operator's hello");
  // An operator's shell (`troupe shell`): this node proves the secret
  // first, bound to both names and both nonces; the shell then proves it
  // back (`on_auth`) and may ask what nodes may ask.
  auto node_nonce = challenge(sender_node(), name);
  // The shell's nonce is kept with ours: its proof covers both.
  nonces[{sender_node(), name}].first = node_nonce + "|" + shell_nonce;
  auto proof = make_mutual_proof(topo.cluster.secret, topo.cluster.name, "node", me, name,
                                 shell_nonce, node_nonce);
  return std::vector<std::string>{node_nonce, me, proof};
}

caf::result<void> agent_state::on_auth(const std::string& name, const std::string& proof) {
  auto nid = sender_node();
  auto i = nonces.find({nid, name});
  if (i != nonces.end() && std::chrono::steady_clock::now() - i->second.second > challenge_ttl) {
    nonces.erase(i);
    i = nonces.end();
  }
  if (i == nonces.end()) {
    log.warning("refused node '" + name + "': no challenge pending");
    return caf::make_error(ec::not_authenticated, "no challenge");
  }
  std::string expected;
  if (is_operator(name)) {
    auto& both = i->second.first;
    auto bar = both.find('|');
    if (bar == std::string::npos) {
      nonces.erase(i);
      return caf::make_error(ec::not_authenticated, "no challenge");
    }
    expected = make_mutual_proof(topo.cluster.secret, topo.cluster.name, "operator", name, me,
                                 both.substr(0, bar), both.substr(bar + 1));
  } else {
    expected = make_proof(topo.cluster.secret, topo.cluster.name, name, i->second.first);
  }
  nonces.erase(i);
  if (!same_proof(proof, expected)) {
    log.warning("refused node '" + name + "': wrong secret");
    return caf::make_error(ec::not_authenticated, "wrong secret");
  }
  if (!is_operator(name) && topo.cluster.tls && peers[name].nid != nid) {
    // Node identity is pinned to certificates: the id that proved the
    // secret as `name` is trusted only if this node's own dial to `name`'s
    // address (whose certificate must name `name`) reaches the same id. An
    // operator's certificate, or another node's, cannot claim a node's name.
    auto& claims = node_claims[name];
    if (claims.size() >= 4)
      claims.erase(claims.begin());
    claims.insert(nid);
    return caf::unit;
  }
  trusted[nid] = name;
  if (is_operator(name)) {
    if (auto src = self->current_sender()) {
      auto addr = caf::actor_cast<caf::actor_addr>(src);
      operator_links[addr] = nid;
      self->monitor(addr);
    }
    log("operator " + name + " connected");
    return caf::unit;
  }
  maybe_up(name);
  return caf::unit;
}

void agent_state::on_tick() {
  auto now = std::chrono::steady_clock::now();
  auto gap = now - last_tick;
  last_tick = now;
  if (gap > topo.cluster.failure_timeout)
    on_paused(std::chrono::duration_cast<std::chrono::milliseconds>(gap));
  for (auto& [name, p] : peers)
    if (p.state != "up" && !p.connecting && now >= p.next_attempt)
      connect(name);
  watch_links();
  self->delayed_send(self, topo.cluster.heartbeat_interval, tick_atom::value);
}

namespace {

std::atomic<uint64_t>& suspicions(const char* outcome) {
  return registry::instance().counter(
    "troupe_cluster_suspicions_total",
    "Members silent on their link for the failure timeout, by outcome: heard_by_peer "
    "(another member still heard them, so they stayed up) or down (none did: the link was "
    "closed).",
    {{"outcome", outcome}});
}

int64_t millis(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

} // namespace

void agent_state::watch_links() {
  if (!tunnel)
    return;
  auto limit = millis(topo.cluster.failure_timeout);
  for (auto& [name, p] : peers) {
    if (p.state != "up" || p.probing)
      continue;
    // CAF may route a peer over another link than before: two nodes that
    // dialled each other at once hold two, and CAF switches between them.
    learn_link(name);
    if (p.link != 0 && tunnel->silence_ms(p.link) > limit)
      probe(name);
  }
}

void agent_state::probe(const std::string& name) {
  auto& p = peers[name];
  auto limit = millis(topo.cluster.failure_timeout);
  auto silence = tunnel->silence_ms(p.link);
  // Ask the members this node clearly still hears (silent for at most half
  // the timeout), each with half the timeout to answer. Cut off from the
  // rest, a node finds its peers going silent together and asks none, so a
  // minority stops hosting as soon as the timeout has passed.
  std::vector<std::pair<std::string, caf::actor>> asked;
  for (auto& [other, q] : peers)
    if (other != name && q.state == "up" && q.agent && q.link != 0) {
      auto s = tunnel->silence_ms(q.link);
      if (s >= 0 && s <= limit / 2)
        asked.emplace_back(other, q.agent);
    }
  if (asked.empty()) {
    declare_down(name, silence);
    return;
  }
  p.probing = true;
  p.probe_pending = asked.size();
  auto round = ++p.probe_round;
  auto answered = [this, name, round, limit](int64_t heard, const std::string& by) {
    auto i = peers.find(name);
    if (i == peers.end() || !i->second.probing || i->second.probe_round != round)
      return;
    auto& p = i->second;
    if (heard >= 0 && heard <= limit) {
      p.probing = false;
      suspicions("heard_by_peer").fetch_add(1, std::memory_order_relaxed);
      log.debug("member " + name + " silent here for "
                + std::to_string(tunnel->silence_ms(p.link)) + " ms; " + by + " heard it "
                + std::to_string(heard) + " ms ago: it stays up");
      return;
    }
    if (--p.probe_pending == 0) {
      p.probing = false;
      declare_down(name, tunnel->silence_ms(p.link));
    }
  };
  for (auto& [other, agent] : asked)
    self->request(agent, topo.cluster.failure_timeout / 2, heard_atom::value, name)
      .then([answered, other = other](int64_t heard) { answered(heard, other); },
            [answered, other = other](caf::error&) { answered(-1, other); });
}

void agent_state::declare_down(const std::string& name, int64_t silence) {
  auto& p = peers[name];
  auto limit = millis(topo.cluster.failure_timeout);
  if (p.state != "up" || p.link == 0 || silence <= limit)
    return; // heard again meanwhile, or gone already
  suspicions("down").fetch_add(1, std::memory_order_relaxed);
  p.down_reason = "silent for " + std::to_string(silence) + " ms, and no member hears it";
  cut(name, link_silence_bound * millis(topo.cluster.failure_timeout) / 20);
}

void agent_state::cut(const std::string& name, int64_t rounds) {
  auto& p = peers[name];
  if (p.state != "up" || !p.nid || rounds <= 0)
    return; // lost (CAF dropped its last link to the peer), or CAF's own bound is near
  auto nid = p.nid;
  // The link CAF routes over now: closing one of two makes CAF switch to
  // the other, so each is closed in turn until the peer is lost.
  self->request(mm, request_timeout(), caf::get_atom::value, nid)
    .then(
      [this, name, nid, rounds](caf::node_id&, std::string& addr, uint16_t) {
        auto i = peers.find(name);
        if (i == peers.end() || i->second.nid != nid)
          return;
        if (auto link = link_of_address(addr); link != 0)
          tunnel->close_link(link);
        self->delayed_send(self, std::chrono::milliseconds(20), cut_atom::value, name,
                           rounds - 1);
      },
      [](caf::error&) {});
}

void agent_state::learn_link(const std::string& name) {
  auto& p = peers[name];
  if (!tunnel || !p.nid)
    return;
  auto nid = p.nid;
  self->request(mm, request_timeout(), caf::get_atom::value, nid)
    .then(
      [this, name, nid](caf::node_id&, std::string& addr, uint16_t) {
        auto i = peers.find(name);
        if (i != peers.end() && i->second.nid == nid)
          i->second.link = link_of_address(addr);
      },
      [](caf::error&) {});
}

void agent_state::connect(const std::string& name) {
  auto& p = peers[name];
  p.connecting = true;
  auto fail = [this, name](const std::string& step, const std::string& why) {
    auto& p = peers[name];
    p.connecting = false;
    // Back off: heartbeat x 2^failures, at most 2 s, jittered by +-25 %.
    auto base = std::min<int64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(topo.cluster.heartbeat_interval)
          .count()
        << std::min<uint64_t>(p.failures, 5),
      2000);
    auto jitter = static_cast<int64_t>(rng() % 51) - 25; // percent
    p.next_attempt = std::chrono::steady_clock::now()
                     + std::chrono::milliseconds(base + base * jitter / 100);
    if (why.find("not_authenticated") != std::string::npos) {
      log.warning("peer '" + name + "' refused us: " + why);
      return;
    }
    // The first failure after being up, then every 10th (about 20 s apart
    // once the backoff reaches its 2 s cap).
    if (p.failures++ % 10 == 0 && p.since_ms != 0)
      log.warning("cannot reach " + name + " (" + step + ": " + why + "), retrying");
  };
  self->request(mm, request_timeout(), caf::connect_atom::value, p.dial_host, p.dial_port)
    .then(
      [this, name, fail](caf::node_id& nid, caf::strong_actor_ptr& ptr,
                         std::set<std::string>&) {
        if (!ptr) {
          fail("connect", "no agent published");
          return;
        }
        auto agent = caf::actor_cast<caf::actor>(ptr);
        self->request(agent, request_timeout(), hello_atom::value, me, topo.cluster.name)
          .then(
            [this, name, nid, agent, fail](std::string& nonce) {
              auto proof = make_proof(topo.cluster.secret, topo.cluster.name, me, nonce);
              self->request(agent, request_timeout(), auth_atom::value, me, proof)
                .then(
                  [this, name, nid, agent]() {
                    auto& p = peers[name];
                    p.connecting = false;
                    p.accepted_us = true;
                    p.agent = agent;
                    p.nid = nid;
                    if (auto c = node_claims.find(name);
                        c != node_claims.end() && c->second.count(nid) > 0) {
                      trusted[nid] = name;
                      node_claims.erase(c);
                    }
                    self->monitor(agent);
                    if (p.state == "down") {
                      p.state = "joining";
                      p.since_ms = unix_ms();
                    }
                    maybe_up(name);
                  },
                  [fail](caf::error& err) { fail("auth", render(err)); });
            },
            [fail](caf::error& err) { fail("hello", render(err)); });
      },
      [fail](caf::error& err) { fail("connect", render(err)); });
}

void agent_state::lose(const std::string& name, peer& p, const std::string& reason) {
  auto was_up = p.state == "up";
  trusted.erase(p.nid);
  p.agent = nullptr;
  p.nid = caf::node_id{};
  p.link = 0;
  p.probing = false;
  p.down_reason.clear();
  p.accepted_us = false;
  p.state = "down";
  p.since_ms = unix_ms();
  if (was_up) {
    // A peer that stopped on purpose is news; one that was lost, a warning.
    log.write(reason == "user_shutdown" || reason.rfind("stopped_by_operator", 0) == 0
                ? log_level::info
                : log_level::warning,
              "member " + name + " down (" + reason + ")");
    notify_down(name, reason);
  }
}

void agent_state::on_paused(std::chrono::milliseconds gap) {
  log.warning("paused for " + std::to_string(gap.count())
              + " ms (longer than the failure timeout): peers count this node as lost; "
                "leaving and rejoining");
  for (auto& [name, p] : peers) {
    if (p.agent)
      self->demonitor(p.agent);
    p.next_attempt = {};
    lose(name, p, "this node paused");
  }
}

void agent_state::maybe_up(const std::string& name) {
  auto i = peers.find(name);
  if (i == peers.end())
    return;
  auto& p = i->second;
  if (p.state == "up" || !p.accepted_us)
    return;
  auto t = trusted.find(p.nid);
  if (t == trusted.end() || t->second != name)
    return;
  p.state = "up";
  p.since_ms = unix_ms();
  p.failures = 0;
  log("member " + name + " up");
  learn_link(name);
  notify_up(name);
  // What operators decided, for a peer that was away (or is new).
  auto d = decisions();
  if (!d.drains.empty() || !d.scales.empty())
    self->send(p.agent, decisions_atom::value, std::move(d));
}

void agent_state::on_down(caf::down_msg& msg) {
  if (auto i = operator_links.find(msg.source); i != operator_links.end()) {
    auto nid = i->second;
    operator_links.erase(i);
    auto t = trusted.find(nid);
    if (t != trusted.end() && is_operator(t->second)) {
      log("operator " + t->second + " disconnected");
      trusted.erase(t);
    }
    return;
  }
  for (auto& [name, p] : peers) {
    if (p.agent && p.agent.address() == msg.source) {
      lose(name, p, p.down_reason.empty() ? render(msg.reason) : p.down_reason);
      return;
    }
  }
  listeners.erase(std::remove_if(listeners.begin(), listeners.end(),
                                 [&](const caf::actor& l) { return l.address() == msg.source; }),
                  listeners.end());
}

std::vector<member_info> agent_state::members() const {
  std::vector<member_info> result;
  for (auto& n : topo.nodes) {
    member_info m;
    m.name = n.name;
    m.address = n.host + ":" + std::to_string(n.cluster_port);
    if (n.name == me) {
      m.state = "self";
      m.since_ms = started_ms;
    } else {
      auto& p = peers.at(n.name);
      m.state = p.state;
      m.since_ms = p.since_ms;
    }
    result.push_back(std::move(m));
  }
  return result;
}

caf::message_handler membership_handlers(agent_actor* self) {
  return {
    [self](hello_atom, std::string& name, std::string& cluster) {
      return self->state.on_hello(name, cluster);
    },
    [self](hello_atom, std::string& name, std::string& cluster, std::string& shell_nonce) {
      return self->state.on_operator_hello(name, cluster, shell_nonce);
    },
    [self](auth_atom, std::string& name, std::string& proof) {
      return self->state.on_auth(name, proof);
    },
    [self](members_atom) -> caf::result<std::vector<member_info>> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      return self->state.members();
    },
    [self](subscribe_atom, caf::actor& listener) -> caf::result<void> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      self->state.listeners.push_back(listener);
      // A listener that ends (a restarted router) leaves the list.
      self->monitor(listener);
      // The members already up, as events (Akka's InitialStateAsEvents): a
      // listener that subscribes late must not miss them. The cluster routers
      // subscribe after their groups' specs are built, which for some domains
      // (a model to load) takes longer than peers take to join.
      for (auto& [name, p] : self->state.peers)
        if (p.state == "up")
          self->send(listener, member_up_atom::value, name, p.agent);
      for (auto& [node, d] : self->state.drains)
        if (d.value == 1)
          self->send(listener, drain_atom::value, node, true);
      for (auto& [group, d] : self->state.scales)
        self->send(listener, scale_atom::value, group, d.value);
      return caf::unit;
    },
    [self](manager_atom, caf::actor& manager) -> caf::result<void> {
      if (!self->state.sender_local())
        return caf::make_error(ec::not_authenticated);
      self->state.manager = manager;
      return caf::unit;
    },
    [self](claim_atom atm, std::string& group, uint32_t instance, std::string& home)
      -> caf::result<caf::message> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      if (!self->state.manager)
        return caf::make_error(ec::group_down, std::string{"no placement manager yet"});
      return self->delegate(self->state.manager, atm, std::move(group), instance,
                            std::move(home));
    },
    [self](group_atom, std::string& name) -> caf::result<caf::actor> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      return self->state.directory->get(name); // invalid while not hosted here
    },
    [self](tick_atom) {
      if (self->state.sender_local())
        self->state.on_tick();
    },
    [self](cut_atom, std::string& name, int64_t rounds) {
      if (self->state.sender_local())
        self->state.cut(name, rounds);
    },
    [self](heard_atom, std::string& name) -> caf::result<int64_t> {
      auto& st = self->state;
      auto t = st.trusted.find(st.sender_node());
      if (t == st.trusted.end() || agent_state::is_operator(t->second))
        return caf::make_error(ec::not_authenticated);
      auto i = st.peers.find(name);
      if (i == st.peers.end() || i->second.state != "up" || i->second.link == 0 || !st.tunnel)
        return int64_t{-1};
      return st.tunnel->silence_ms(i->second.link);
    },
  };
}

} // namespace troupe::cluster
