#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/log.hpp"
#include "actors/news/article_store.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/http/server.hpp"

namespace troupe::ws {

/// What a node's WebSocket gateway needs.
struct gateway_settings {
  /// The cluster's name (a token's issuer) and its client token key, which
  /// signs clients' tokens (`cluster::verify_client_token`). A token with
  /// role `operator` opens every user's feed and the `alerts` channel of
  /// all users (the live page's operator view).
  std::string cluster;
  std::string token_key;
  /// This node's name (the cluster view names the node that serves it).
  std::string node;
  /// How long a client that has not authenticated may stay without making
  /// a request (`ping` does not count).
  caf::timespan unauthenticated_idle = std::chrono::minutes(5);
  /// How old the cached `trending` answer may be.
  caf::timespan trending_refresh = std::chrono::seconds(1);
  /// Requests per second per client, and the burst allowed above it.
  double rate = 20;
  double burst = 40;
  /// Requests refused by the rate limit, in a row, before the client is
  /// closed with 1008.
  uint32_t max_refused = 100;
  /// How long the gateway waits, after its last worker stopped, for a new
  /// one before it closes its clients: the placement manager restarts a
  /// node's group whenever its instances change (a peer lost or back).
  caf::timespan detach_grace = std::chrono::seconds(3);
  /// How long a feed request may take before the client gets `feed_failed`.
  caf::timespan feed_timeout = std::chrono::seconds(5);
  log_fn log;
};

/// Counters of the gateway's protocol, read with relaxed loads.
struct gateway_counters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> rate_limited{0};
  std::atomic<uint64_t> feeds{0};
  std::atomic<uint64_t> pushes{0};
  /// Alerts this node pushed (published to `alerts`), for the live page's
  /// alert-rate chart.
  std::atomic<uint64_t> alerts_pushed{0};
  std::atomic<uint64_t> auth_failures{0};
  /// Clients closed by `sweep`: token expired, token revoked, idle without
  /// a token.
  std::atomic<uint64_t> expired{0};
  std::atomic<uint64_t> revoked{0};
  std::atomic<uint64_t> idle_closed{0};
};

/// One ranking variant's outcomes on this node: personalised feeds answered,
/// the articles they showed (impressions), and the reads of shown articles
/// by the user they were shown to (each impression read at most once).
/// Click-through is `reads / impressions`.
struct variant_counters {
  uint64_t feeds = 0;
  uint64_t impressions = 0;
  uint64_t reads = 0;
};

/// The WebSocket side of the `websocket-broadcaster` group on one node: the
/// JSON protocol (README "WebSocket protocol"), the clients' channels, and
/// their authentication and rate limits.
///
/// The node owns it (with its HTTP server); the group's workers on the node
/// `attach` to it. It takes WebSockets only while one is attached, and asks
/// an attached worker for feeds. When the last worker detaches and none
/// attaches within `detach_grace` (the group's supervisor gave up here, or
/// the group moved away) every client is closed with 1012, to reconnect
/// where the group runs. Within the grace, feeds get `unavailable`.
///
/// Feeds go through the node's feed requester: it asks a worker, which
/// delegates to the ranker; an answer lost with a worker that stopped is
/// asked again of another one, and every request is answered (a feed or an
/// error) within `feed_timeout`.
///
/// Thread-safe: protocol handlers run on the server's I/O threads,
/// `publish` and `answer` on any thread.
class gateway : public http::ws_handler {
public:
  explicit gateway(gateway_settings settings);

  /// Sends `msg`, encoded once, to every client subscribed to any of
  /// `channels` (each client once). The last `recent_kept` breaking
  /// articles and alerts are kept for `recent` requests.
  void publish(const std::vector<std::string>& channels, std::shared_ptr<const std::string> msg);

  /// How many of the latest breaking articles and alerts `recent` answers
  /// from.
  static constexpr size_t recent_kept = 20;

  /// Sends `msg` to one client (a feed answer), if it is still there.
  void answer(uint64_t session, std::shared_ptr<const std::string> msg);

  /// A personalised feed answered to `session`: counted for its variant,
  /// and its articles remembered as shown (the latest `shown_kept` per
  /// client, a feed's most) so that a later `read` of one counts for that variant. Only a
  /// user's own feed counts (not an operator's look at another's).
  void shown(uint64_t session, const feed& f);

  /// Articles per client whose reads count for the variant that showed them.
  static constexpr size_t shown_kept = 100;
  /// Variants counted per node (the ranker declares at most 8; the names
  /// come from the cluster's own rankers).
  static constexpr size_t variants_kept = 32;

  /// Every variant's outcomes on this node so far, by name.
  std::map<std::string, variant_counters> variants() const;

  /// A worker of the group runs on this node: the gateway opens.
  void attach(const caf::actor& worker);
  void detach(const caf::actor_addr& worker);

  /// The actor that asks a worker for each feed and answers its session
  /// (`news_service`): `(feed_atom, session, request_id, user, k)`.
  void set_requester(const caf::actor& requester);
  /// The next attached worker, round robin (invalid if none).
  caf::actor pick_worker();
  /// Where `read` reports go: the node's news hub.
  void set_hub(const caf::actor& hub);

  /// The node's article window, for `trending` requests.
  void set_store(std::shared_ptr<const news::article_store> store);

  /// A node's part of the cluster view (`console.hpp`), from the hub: kept
  /// with every other node's latest, and the whole view pushed to the
  /// `cluster` channel (operators only).
  void console_snapshot(const std::string& node, const std::string& json);

  /// How an operator's action from the page reaches the node's console:
  /// `(session, request_id, who, from, action, target)`.
  using command_fn = std::function<void(uint64_t, const std::string&, const std::string&,
                                        const std::string&, const std::string&,
                                        const std::string&)>;
  void set_console(command_fn fn);

  /// How the gateway calls `close_if_detached` later (without it, at once).
  void set_timer(std::function<void(caf::timespan)> after);

  /// Closes every client with 1012 unless a worker is attached.
  void close_if_detached();

  /// Tokens of `user` issued at or before `at_s` (seconds since the epoch)
  /// are refused from now on. `set_revocations` takes the cluster's whole
  /// list (a revocation is never undone: the later time of two holds).
  void revoke(const std::string& user, int64_t at_s);
  void set_revocations(const std::unordered_map<std::string, int64_t>& revoked);

  /// Closes (1008) the clients whose token expired or was revoked, and
  /// those without a token idle past `unauthenticated_idle`. The node's
  /// client token keeper calls it every second.
  void sweep();

  size_t clients() const;
  const gateway_counters& counters() const {
    return counters_;
  }

  /// The error answer to a request: `{"type":"error","error":code,...}`.
  static std::string error_json(const std::string& code, const std::string& message,
                                const std::string& request_id);

  // -- http::ws_handler ------------------------------------------------------------
  bool accepting(std::string& why) override;
  void set_deliver(http::deliver_fn fn) override;
  void on_open(const std::shared_ptr<http::ws_session>& s, const std::string& target) override;
  void on_text(const std::shared_ptr<http::ws_session>& s, std::string text) override;
  void on_close(const std::shared_ptr<http::ws_session>& s, const std::string& why) override;

  struct client;

private:
  using client_ptr = std::shared_ptr<client>;

  /// The last `trending` answer's material (the top 100, and the window's
  /// size), made at most once per `trending_refresh` on an I/O thread and
  /// shared by every request until then: anonymous clients asking for it
  /// cannot make the gateway copy the window per request.
  struct trending_snapshot {
    std::vector<ranked_article> items;
    size_t candidates = 0;
    std::chrono::steady_clock::time_point made;
  };

  void handle(const client_ptr& c, const std::string& text);
  /// Checks `token` (for `user`, when not empty) and makes `c` its user;
  /// false (and why) when refused.
  bool authenticate(const client_ptr& c, const std::string& token, const std::string& user,
                    std::string& why);
  void reply(const client_ptr& c, const std::string& json);
  void log(const std::string& line) const;
  /// The trending snapshot, made again when older than `trending_refresh`.
  std::shared_ptr<const trending_snapshot> trending();

  gateway_settings cfg_;
  gateway_counters counters_;
  mutable std::mutex mtx_;
  std::unordered_map<uint64_t, client_ptr> clients_;
  /// channel -> subscribers, by session id.
  std::unordered_map<std::string, std::unordered_map<uint64_t, client_ptr>> channels_;
  uint64_t publish_seq_ = 0;
  std::shared_ptr<const trending_snapshot> trending_;
  std::mutex trending_mtx_;
  /// user -> tokens issued at or before this second are revoked.
  std::unordered_map<std::string, int64_t> revoked_;
  std::map<std::string, variant_counters> variants_;
  std::vector<caf::actor> workers_;
  size_t next_worker_ = 0;
  caf::actor hub_;
  caf::actor requester_;
  std::function<void(caf::timespan)> after_;
  std::shared_ptr<const news::article_store> store_;
  http::deliver_fn deliver_;
  /// A push kept for `recent`: its message and the channels it went to.
  struct kept_push {
    std::vector<std::string> channels;
    std::shared_ptr<const std::string> msg;
  };
  /// The latest breaking articles and alerts published, oldest first (at
  /// most `recent_kept` each; guarded by `mtx_`).
  std::deque<kept_push> recent_breaking_;
  std::deque<kept_push> recent_alerts_;
  /// The cluster view: each node's latest snapshot and when it came
  /// (guarded by `mtx_`).
  struct node_view {
    std::string json;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, node_view> views_;
  command_fn console_;
  /// The cluster view as pushed: `{"type":"cluster","at","self","nodes":[...]}`,
  /// each snapshot with its `age_ms`. Under `mtx_`.
  std::string cluster_view_locked() const;
};

/// The JSON answer to a feed request `request_id` (JSON text, or empty).
std::string feed_json(const feed& f, const std::string& request_id);

} // namespace troupe::ws
