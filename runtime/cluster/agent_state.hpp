#pragma once

// The node agent's state and handlers, shared by its two halves (private to
// runtime/cluster): membership and authentication (membership.cpp), and the
// operator control plane (operator_control.cpp). One actor runs both:
// node_agent.cpp joins their handlers.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <caf/io/middleman_actor.hpp>
#include <caf/message_handler.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/cluster/audit.hpp"
#include "runtime/cluster/node_agent.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/node/node.hpp"
#include "topology/topology.hpp"

namespace troupe::cluster {

/// A peer as the agent tracks it.
struct peer {
  topology::node_spec spec;
  /// Where to dial it: its `host:cluster_port` (through the transport).
  std::string dial_host;
  uint16_t dial_port = 0;
  caf::actor agent;
  caf::node_id nid;
  std::string state = "down";
  bool connecting = false;
  /// The peer accepted our proof.
  bool accepted_us = false;
  int64_t since_ms = 0;
  /// Failed connection rounds since it was last up (for rate-limited logs).
  uint64_t failures = 0;
  /// No new round before this: a lost peer is dialled with exponential
  /// backoff, so that a frozen peer's listen queue collects a handful of
  /// connections rather than one per heartbeat (each of which it would then
  /// accept at once on waking up).
  std::chrono::steady_clock::time_point next_attempt;
  /// The tunnel link CAF routes this peer over (0 until known).
  uint64_t link = 0;
  /// Silent on `link` for the failure timeout: the other members are being
  /// asked whether they hear it (`probe`); `probe_round` tells a late
  /// answer from an earlier round.
  bool probing = false;
  uint64_t probe_round = 0;
  size_t probe_pending = 0;
  /// Why the agent closed its link (the reason its loss is logged with).
  std::string down_reason;
};


struct agent_state;

/// The node agent: one stateful actor.
using agent_actor = caf::stateful_actor<agent_state>;

/// The state of a node agent. Owned by the agent actor.
struct agent_state {
  static inline const char* name = "troupe.node_agent";

  agent_actor* self = nullptr;
  topology::topology topo;
  std::string me;
  log_fn log;
  caf::io::middleman_actor mm;
  /// The cluster transport, whose links the agent watches (none in tests
  /// that run agents over CAF's own transport).
  std::shared_ptr<tls_tunnel> tunnel;
  std::map<std::string, peer> peers;
  /// Nodes that proved themselves to us: node id -> node name.
  std::map<caf::node_id, std::string> trusted;
  /// With certificates: node ids that proved the secret as a node's name
  /// before this node reached that node's address itself (where the tunnel
  /// checks the certificate names it). Trusted only once that dial yields
  /// the same id; at most 4 per name.
  std::map<std::string, std::set<caf::node_id>> node_claims;
  /// The operators' shells, watched: when a shell's connection ends, its
  /// node id is trusted no more (a later process with the same id must
  /// prove the secret again).
  std::map<caf::actor_addr, caf::node_id> operator_links;
  /// Challenges handed out and not yet answered: (node id, name) -> nonce.
  /// Pending challenges: (sender's node, claimed name) -> (nonce, when
  /// issued). At most `max_pending_challenges`; each valid for
  /// `challenge_ttl`.
  std::map<std::pair<caf::node_id, std::string>,
           std::pair<std::string, std::chrono::steady_clock::time_point>>
    nonces;
  static constexpr size_t max_pending_challenges = 256;
  static constexpr std::chrono::seconds challenge_ttl{10};
  /// Stores a fresh challenge, dropping expired ones (and, when still full,
  /// the oldest).
  std::string challenge(const caf::node_id& nid, const std::string& name);
  std::vector<caf::actor> listeners;
  /// This node's placement manager, which answers claims.
  caf::actor manager;
  /// The routers of the groups this node hosts.
  std::shared_ptr<group_directory> directory;
  int64_t started_ms = unix_ms();
  std::minstd_rand rng{std::random_device{}()};
  /// When `on_tick` last ran: a longer gap than the failure timeout means this
  /// process was paused.
  std::chrono::steady_clock::time_point last_tick = std::chrono::steady_clock::now();

  /// What the node tells operators about itself; the agent adds its groups.
  node_info info;
  std::function<node_info()> describe_node;
  std::function<void()> on_halt;
  std::function<void(audit_entry)> audit;
  /// An audit entry for the current message's command: who from
  /// `trusted` (an operator, or this node), from where its node id.
  audit_entry sender_entry(const std::string& command);
  /// Records the current message's command with its outcome.
  void audited(const std::string& command, const caf::error& err);
  /// Hands an entry to `audit` (or, without one, to the log).
  void record(audit_entry x);
  /// What operators decided, one last-writer-wins register per node
  /// (`troupe shell drain`/`undrain`: value 1 or 0) and per group (`scale`:
  /// the instance count), stamped with when it was decided.
  std::map<std::string, operator_decision> drains;
  std::map<std::string, operator_decision> scales;


  // -- membership and authentication (membership.cpp) ------------------------------
  caf::timespan request_timeout() const;
  /// The node the current message came from (invalid for local senders and
  /// for anonymous messages).
  caf::node_id sender_node();
  /// The current message came from an actor of this process. A message
  /// without a sender is never local: CAF delivers another node's
  /// `anon_send` with no sender at all.
  bool sender_local();
  /// From this process, or from a node or shell that proved the secret.
  bool sender_trusted();
  void notify_up(const std::string& name);
  void notify_down(const std::string& name, const std::string& reason);

  // -- incoming challenges ---------------------------------------------------------
  caf::result<std::string> on_hello(const std::string& name, const std::string& cluster);
  caf::result<std::vector<std::string>> on_operator_hello(const std::string& name,
                                                          const std::string& cluster,
                                                          const std::string& shell_nonce);
  caf::result<void> on_auth(const std::string& name, const std::string& proof);

  // -- outgoing connections ----------------------------------------------------------
  void on_tick();
  /// The failure detector. A peer whose link has carried nothing for
  /// `failure_timeout` is suspected; the agent asks every other member it
  /// hears whether they hear that peer, and closes the link (so the peer is
  /// down, here and on its side) only when none does. A link silent for
  /// `link_silence_bound` failure timeouts is closed by CAF regardless.
  void watch_links();
  void probe(const std::string& name);
  /// Ends a probe round without a member hearing `name`: closes its link.
  void declare_down(const std::string& name, int64_t silence);
  /// Closes the links CAF routes `name` over, one by one (again every
  /// 20 ms, at most `rounds` times), until CAF has none left and the peer
  /// is lost.
  void cut(const std::string& name, int64_t rounds);
  /// Learns which tunnel link CAF routes `name` over.
  void learn_link(const std::string& name);
  void connect(const std::string& name);
  /// Forgets what was agreed with `p` (both proofs, its agent) and, if it
  /// was up, logs its loss and tells the listeners.
  void lose(const std::string& name, peer& p, const std::string& reason);
  /// This process did not run for longer than the failure timeout (SIGSTOP,
  /// a VM pause, a starved host): its peers have declared it down and moved
  /// its instances, while its own view never changed. It leaves the cluster
  /// view at once, so that the placement manager stops what it hosts, and
  /// rejoins through the usual handshake and claims; otherwise a group meant
  /// to run once would run here and at its new home.
  void on_paused(std::chrono::milliseconds gap);
  /// Marks `name` up once both directions are authenticated.
  void maybe_up(const std::string& name);
  void on_down(caf::down_msg& msg);
  std::vector<member_info> members() const;

  // -- the operator control plane (operator_control.cpp) ---------------------------

  /// A stamp for a decision taken here now: later than any known for `key`.
  static int64_t next_stamp(const std::map<std::string, operator_decision>& known,
                            const std::string& key);
  /// Takes `d` into `known` unless a newer decision for its key is there;
  /// returns the value it replaced, or nothing if `d` was not newer.
  static std::optional<uint32_t> take(std::map<std::string, operator_decision>& known,
                                      const operator_decision& d, uint32_t fallback);
  /// Takes a drain decision unless a newer one is known; tells the listeners
  /// when it changes what is drained. `from` ends the log line.
  void apply_drain(const operator_decision& d, const std::string& from);
  /// Takes a scale decision unless a newer one is known; tells the listeners
  /// when it changes the group's instance count.
  void apply_scale(const operator_decision& d, const std::string& from);
  /// Tells every peer up one decision taken here (a peer the shell could
  /// not reach learns it this way; the newer decision wins everywhere).
  void share(operator_decisions d);
  /// Every drain and scale decision this agent knows, for a peer.
  operator_decisions decisions() const;
  /// Operators' shells name themselves `shell/...`; nodes never do (a node
  /// name is a TOML string of the topology, checked against it).
  static bool is_operator(const std::string& name);
  node_info describe() const;
};

/// Peers' challenges, membership queries and subscriptions, claims, and the
/// agent's own ticks.
caf::message_handler membership_handlers(agent_actor* self);

/// Operators' commands (node_info, drain, scale, log level, halt) and the
/// decisions peers share.
caf::message_handler operator_handlers(agent_actor* self);

} // namespace troupe::cluster
