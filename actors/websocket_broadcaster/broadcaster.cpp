#include "actors/websocket_broadcaster/broadcaster.hpp"

#include <deque>
#include <map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/news/article.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/kafka/dead_letter.hpp"

using namespace std::chrono_literals;

namespace troupe::ws {

namespace {

/// The records of one poll on their way: their offsets are committed once
/// the news hub took every article and alert of them and Kafka confirmed
/// every dead letter (and every batch before them is done).
struct batch_state {
  uint64_t id = 0;
  size_t remaining = 0;
  std::vector<kafka::partition_offset> offsets;
};

/// The reader's state: one consumer, one dead-letter producer.
struct reader_state {
  broadcaster_settings cfg;
  std::string name;
  std::unique_ptr<kafka::consumer> consumer;
  std::unique_ptr<kafka::producer> producer;
  uint64_t articles = 0;
  uint64_t alerts = 0;
  uint64_t dead = 0;
  size_t partitions = 0;
  log_budget dead_log;
  caf::event_based_actor* self = nullptr;
  std::deque<batch_state> batches;
  uint64_t next_batch = 1;
  /// Batches in flight before the reader stops polling for more.
  static constexpr size_t max_batches = 4;
  /// A consumer wedged this long ends the reader (see `stalled`).
  static constexpr auto stall_timeout = std::chrono::seconds(30);
  std::chrono::steady_clock::time_point last_stall_check = std::chrono::steady_clock::now();

  /// One part of batch `id` is done: commit every finished batch at the
  /// front. A part that failed ends the reader (and its worker): restarted
  /// by their supervisor, a new consumer reads again from the last commit,
  /// and the hub drops what it has seen.
  void ack(uint64_t id, const caf::error& err) {
    if (err) {
      cfg.log.error(name + ": the news hub or Kafka did not take a record (" + render(err)
                    + "): reading again from the last commit");
      self->quit(err);
      return;
    }
    for (auto& b : batches)
      if (b.id == id && b.remaining > 0)
        --b.remaining;
    std::vector<kafka::partition_offset> done;
    while (!batches.empty() && batches.front().remaining == 0) {
      auto& xs = batches.front().offsets;
      done.insert(done.end(), xs.begin(), xs.end());
      batches.pop_front();
    }
    // A commit for a partition lost in a rebalance fails: its new owner
    // reads those records again, and the hub drops what it has seen.
    if (!done.empty())
      consumer->commit(done);
  }

  /// Sends `msg` to the hub as part of batch `id`.
  template <class... Ts>
  void to_hub(const caf::actor& hub, uint64_t id, Ts&&... xs) {
    ++batches.back().remaining;
    self->request(hub, std::chrono::seconds(10), std::forward<Ts>(xs)...)
      .then([this, id] { ack(id, caf::none); }, [this, id](caf::error& err) { ack(id, err); });
  }

  void log(const std::string& line) {
    if (cfg.log)
      cfg.log(name + ": " + line);
  }

  caf::error connect() {
    if (!producer) {
      auto p = kafka::producer::make(kafka::defaults(cfg.kafka));
      if (!p)
        return p.error();
      producer = std::move(*p);
    }
    if (!consumer) {
      auto conf = kafka::defaults(cfg.kafka);
      // Only what a transactional writer committed (alerts may come from one).
      conf["isolation.level"] = "read_committed";
      auto c = kafka::consumer::make(conf, cfg.consumer_group,
                                     {cfg.articles_topic, cfg.alerts_topic});
      if (!c)
        return c.error();
      consumer = std::move(*c);
      log("member of consumer group " + cfg.consumer_group + " on " + cfg.articles_topic + ", "
          + cfg.alerts_topic);
    }
    return caf::none;
  }

  void dead_letter(const kafka::record& r, const std::string& reason) {
    ++dead;
    kafka::log_dead_letter(cfg.log, dead_log, name, reason, r);
    auto id = batches.back().id;
    ++batches.back().remaining;
    auto me = caf::actor{self};
    auto err = producer->produce(cfg.dead_letter_topic, r.key,
                                 kafka::dead_letter_json(reason, r.topic, r.partition, r.offset,
                                                         r.key, r.value),
                                 [me, id](const caf::error& e) {
                                   caf::anon_send(me, reader_ack_atom::value, id, e);
                                 });
    if (err)
      ack(id, err);
  }

  void take(const kafka::record& r, const caf::actor& hub) {
    auto id = batches.back().id;
    if (r.topic == cfg.articles_topic) {
      auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
      auto skew_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg.max_future_skew).count();
      auto a = news::parse_article(r.value, 16 * 1024, now_ms + skew_ms);
      if (!a) {
        dead_letter(r, "invalid article: " + render(a.error()));
        return;
      }
      ++articles;
      if (cfg.log.enabled(log_level::debug))
        cfg.log.debug(name + ": article " + a->category + (a->breaking ? " (breaking)" : "")
                        + " to the news hub",
                      a->id);
      to_hub(hub, id, article_atom::value, std::move(*a), false);
      return;
    }
    auto j = nlohmann::json::parse(r.value, nullptr, false);
    const nlohmann::json* tx = nullptr;
    if (!j.is_discarded() && j.is_object() && j.contains("transaction"))
      tx = &j["transaction"];
    if (!tx || !tx->is_object() || !tx->contains("id") || !(*tx)["id"].is_string()
        || !tx->contains("user") || !(*tx)["user"].is_string()) {
      dead_letter(r, "invalid alert: needs transaction.id and transaction.user (strings)");
      return;
    }
    ++alerts;
    if (cfg.log.enabled(log_level::debug))
      cfg.log.debug(name + ": alert for user " + (*tx)["user"].get<std::string>()
                      + " to the news hub",
                    (*tx)["id"].get<std::string>());
    to_hub(hub, id, alert_push_atom::value, (*tx)["id"].get<std::string>(),
           (*tx)["user"].get<std::string>(), r.value, false);
  }
};

caf::behavior reader(caf::event_based_actor* self, broadcaster_settings cfg, std::string name) {
  auto st = std::make_shared<reader_state>();
  st->cfg = std::move(cfg);
  st->name = std::move(name);
  st->self = self;
  self->send(self, consume_atom::value);
  return {
    [self, st](consume_atom) {
      if (auto err = st->connect()) {
        st->log("Kafka not reachable (" + render(err) + "): trying again in 1 s");
        self->delayed_send(self, 1s, consume_atom::value);
        return;
      }
      auto hub = st->cfg.hub ? st->cfg.hub() : caf::actor{};
      if (!hub) {
        self->delayed_send(self, 100ms, consume_atom::value);
        return;
      }
      if (st->batches.size() >= reader_state::max_batches) {
        // The hub is behind: wait for it rather than buffer without bound.
        self->delayed_send(self, 5ms, consume_atom::value);
        return;
      }
      // Blocks this reader's own thread (a detached actor) for at most 100 ms.
      auto records = st->consumer->poll(500, 100ms);
      if (auto errors = st->consumer->error_summary(); !errors.empty())
        st->cfg.log.warning(st->name + ": " + errors);
      if (auto now = std::chrono::steady_clock::now(); now - st->last_stall_check >= 1s) {
        st->last_stall_check = now;
        if (auto why = st->consumer->stalled(reader_state::stall_timeout, false); !why.empty()) {
          // Treated as a crash: the supervisor restarts the worker and its
          // reader with a fresh consumer, which reads from the last commit.
          st->cfg.log.warning(st->name + ": consumer wedged: " + why
                              + "; restarting with a fresh consumer");
          self->quit(caf::make_error(ec::io_failure, "wedged consumer: " + why));
          return;
        }
      }
      if (auto n = st->consumer->assignment().size(); n != st->partitions) {
        st->partitions = n;
        st->log("partitions assigned: " + std::to_string(n));
      }
      if (!records.empty()) {
        // At-least-once: the batch's offsets are committed only once the
        // hub took every record and Kafka confirmed every dead letter.
        auto id = st->next_batch++;
        st->batches.push_back(batch_state{id, 1, {}});
        std::map<std::pair<std::string, int32_t>, int64_t> next;
        for (auto& r : records) {
          st->take(r, hub);
          next[{r.topic, r.partition}] = r.offset + 1;
        }
        for (auto& kv : next)
          st->batches.back().offsets.push_back({kv.first.first, kv.first.second, kv.second});
        st->ack(id, caf::none); // the part that stood for the loop above
      }
      self->send(self, consume_atom::value);
    },
    [st](reader_ack_atom, uint64_t id, caf::error& err) { st->ack(id, err); },
  };
}

} // namespace

group_spec make_group(const std::string& name, size_t instances, broadcaster_settings cfg) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.worker = [cfg, name](caf::event_based_actor* self, size_t index) -> caf::behavior {
    auto gw = cfg.gw;
    if (gw) {
      gw->attach(caf::actor{self});
      self->attach_functor([gw, addr = self->address()] { gw->detach(addr); });
    }
    // Linked: a reader that dies takes its worker with it (and the
    // supervisor restarts both); a worker that stops, for any reason, stops
    // its reader.
    auto r = self->spawn<caf::linked + caf::detached>(reader, cfg,
                                                      name + "/" + std::to_string(index));
    self->attach_functor([r] { caf::anon_send_exit(r, caf::exit_reason::user_shutdown); });
    return {
      // Delegated: the ranker's router answers the requester itself, so a
      // worker stopped meanwhile (its group moved, say) loses no answer.
      [self, cfg](feed_atom, std::string& user, uint32_t k) -> caf::result<feed> {
        auto ranker = cfg.router_of ? cfg.router_of("ranker") : caf::actor{};
        if (!ranker)
          return caf::make_error(ec::group_down, std::string{"this cluster runs no ranker group"});
        self->delegate(ranker, rank_atom::value, std::move(user), k);
        return caf::delegated<feed>{};
      },
    };
  };
  return g;
}

} // namespace troupe::ws
