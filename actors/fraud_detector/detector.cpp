#include "actors/fraud_detector/detector.hpp"

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <unistd.h>

#include "actors/fraud_detector/model.hpp"
#include "actors/fraud_detector/rollout.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

using namespace std::chrono_literals;

namespace troupe::fraud {

namespace {

/// What a worker scores with: paths, generation.
struct plan {
  std::string current;   // never empty
  std::string candidate; // empty: no trial
  uint32_t share = 0;
  canary_mode mode = canary_mode::split;
  uint64_t generation = 0;
};

/// The group's models, shared by its workers: each reloads its own copies
/// when the generation moved. The roll-out comes from the model-monitor
/// (asked each second while batches come) and is kept in the state
/// directory, so that a group started after a promotion scores with the
/// promoted model from its first batch.
struct group_models {
  std::mutex mtx;
  /// The group's `model` setting, or the last `model load`.
  std::string configured;
  rollout ro;
  uint64_t generation = 0;
  int64_t last_asked = 0;
  bool asking = false;
  std::string state_file;
  std::function<caf::actor(const std::string&)> router_of;
  log_fn log;

  plan get() {
    std::lock_guard<std::mutex> guard{mtx};
    plan p;
    p.current = ro.current_path.empty() ? configured : ro.current_path;
    p.candidate = ro.candidate_path;
    p.share = ro.share;
    p.mode = ro.mode;
    p.generation = generation;
    return p;
  }

  void configure(std::string path) {
    std::lock_guard<std::mutex> guard{mtx};
    configured = std::move(path);
    ++generation;
  }

  /// Whether a worker should ask the model-monitor now (at most one ask in
  /// flight, one a second).
  bool should_ask() {
    std::lock_guard<std::mutex> guard{mtx};
    auto now = unix_ms();
    if (!router_of || asking || now - last_asked < 1000)
      return false;
    asking = true;
    last_asked = now;
    return true;
  }

  void answered(const std::string& text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    auto r = rollout::from_json(j.is_object() && j.contains("rollout") ? j["rollout"] : j);
    std::lock_guard<std::mutex> guard{mtx};
    asking = false;
    if (!r) {
      log.write(log_level::warning, "model roll-out not followed: " + render(r.error()));
      return;
    }
    if (r->generation <= ro.generation)
      return;
    ro = std::move(*r);
    ++generation;
    std::string line = "model roll-out " + std::to_string(ro.generation) + ": in use "
                       + (ro.current_path.empty() ? configured : ro.current_path);
    if (ro.has_candidate())
      line += ", on trial " + ro.candidate_path + " ("
              + (ro.mode == canary_mode::shadow ? std::string{"shadow"}
                                                : std::to_string(ro.share) + "% of users")
              + ")";
    log(line);
    save();
  }

  void failed() {
    std::lock_guard<std::mutex> guard{mtx};
    asking = false;
  }

  /// Writes the roll-out to the state file (a temporary file renamed over
  /// it: a reader never sees half of one).
  void save() const {
    if (state_file.empty())
      return;
    auto tmp = state_file + "." + std::to_string(::getpid()) + ".tmp";
    {
      std::ofstream out{tmp};
      if (!out)
        return;
      out << ro.to_json().dump() << "\n";
    }
    if (std::rename(tmp.c_str(), state_file.c_str()) != 0)
      std::remove(tmp.c_str());
  }

  /// The roll-out last kept in the state file, if any.
  void load() {
    if (state_file.empty())
      return;
    std::ifstream in{state_file};
    if (!in)
      return;
    std::stringstream text;
    text << in.rdbuf();
    auto r = rollout::from_json(nlohmann::json::parse(text.str(), nullptr, false));
    if (r) {
      ro = std::move(*r);
      ++generation;
    }
  }
};

struct worker_state {
  std::unique_ptr<model> current;
  std::unique_ptr<model> candidate;
  plan p;
  uint64_t batches = 0;
};

/// Scores `rows` (n rows) with `m`, writing into out[idx[k]].
caf::error score_into(const model& m, const std::vector<enriched_transaction*>& items,
                      const std::vector<size_t>& idx, std::vector<scored_transaction>& out,
                      bool as_shadow, double explain_above) {
  if (idx.empty())
    return caf::none;
  auto cols = feature_names().size();
  std::vector<float> rows;
  rows.reserve(idx.size() * cols);
  for (auto k : idx)
    rows.insert(rows.end(), items[k]->features.begin(), items[k]->features.end());
  if (as_shadow) {
    auto scores = m.predict(rows, idx.size());
    if (!scores)
      return scores.error();
    for (size_t i = 0; i < idx.size(); ++i) {
      out[idx[i]].shadow_version = m.version();
      out[idx[i]].shadow_probability = (*scores)[i];
    }
    return caf::none;
  }
  auto scores = m.explain(rows, idx.size(), 3, explain_above);
  if (!scores)
    return scores.error();
  for (size_t i = 0; i < idx.size(); ++i) {
    auto& s = out[idx[i]];
    s.probability = (*scores)[i].probability;
    s.model_version = (*scores)[i].model_version;
    for (auto& [f, c] : (*scores)[i].top_features) {
      s.top_features.push_back(f);
      s.top_contributions.push_back(c);
    }
  }
  return caf::none;
}

} // namespace

caf::expected<group_spec> make_group(const std::string& name, size_t instances,
                                     const std::string& model_path, uint64_t crash_every,
                                     std::string crash_on_user, group_context gctx) {
  auto probe = gctx.probe;
  auto explain_above = gctx.explain_above;
  auto shared = std::make_shared<group_models>();
  shared->configured = model_path;
  shared->router_of = std::move(gctx.router_of);
  shared->log = gctx.log;
  if (!gctx.state_dir.empty())
    shared->state_file = gctx.state_dir + "/model-rollout.json";
  shared->load();
  // The group must start with a model it can load: the roll-out's, else
  // the configured one.
  auto start = shared->get();
  if (auto probe = model::make(start.current); !probe) {
    if (start.current == model_path)
      return probe.error();
    shared->log.write(log_level::warning, "the roll-out's model " + start.current
                                            + " does not load here (" + render(probe.error())
                                            + "); scoring with " + model_path);
    shared->ro.current_path.clear();
    shared->ro.current_model.clear();
  } else if (start.current != model_path) {
    shared->log("scoring with the roll-out's model " + start.current + " (kept in "
                + shared->state_file + ")");
  }
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.worker = [shared, crash_every, crash_on_user, probe, name,
              explain_above](caf::event_based_actor* self, size_t index) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    auto place = probe.place(name, index);
    // Each transaction's score span; the alerter's parent is this one.
    auto spans = [tracer = probe.to, place](int64_t start, auto& xs, std::string_view error) {
      if (tracer)
        tracer->stage(place, "score", start, xs,
                      [](auto& x) {
                        if constexpr (std::is_same_v<std::decay_t<decltype(x)>,
                                                     enriched_transaction>)
                          return std::make_pair(&x.tx.trace, &x.tx.id);
                        else
                          return std::make_pair(&x.item.tx.trace, &x.item.tx.id);
                      },
                      error, true);
    };
    // Loads what the plan names when it moved. A candidate that does not
    // load here scores nothing here (its users keep the model in use); a
    // model in use that does not load keeps the last one that did.
    auto ensure = [st, shared]() -> caf::error {
      auto p = shared->get();
      if (st->current && st->p.generation == p.generation)
        return caf::none;
      if (!st->current || p.current != st->current->path()) {
        auto m = model::make(p.current);
        if (m) {
          st->current = std::move(*m);
        } else {
          shared->log.write(log_level::warning,
                            "model " + p.current + " does not load: " + render(m.error()));
          if (!st->current)
            return m.error();
        }
      }
      if (p.candidate.empty()) {
        st->candidate.reset();
      } else if (!st->candidate || p.candidate != st->candidate->path()) {
        auto m = model::make(p.candidate);
        if (m) {
          st->candidate = std::move(*m);
        } else {
          st->candidate.reset();
          shared->log.write(log_level::warning, "candidate " + p.candidate
                                                  + " does not load here: "
                                                  + render(m.error()));
        }
      }
      st->p = std::move(p);
      return caf::none;
    };
    auto ask = [self, shared] {
      if (!shared->should_ask())
        return;
      auto monitor = shared->router_of("model-monitor");
      if (!monitor) {
        shared->failed();
        return;
      }
      self->request(monitor, 2s, model_rollout_atom::value)
        .then([shared](std::string& text) { shared->answered(text); },
              [shared](caf::error&) { shared->failed(); });
    };
    return {
      [st, ensure, ask, crash_every, crash_on_user, spans,
       explain_above](score_atom, std::vector<enriched_transaction>& batch)
        -> caf::result<std::vector<scored_transaction>> {
        auto started = trace::unix_ns();
        if (crash_every > 0 && ++st->batches % crash_every == 0)
          throw std::runtime_error("injected fault (crash_every " + std::to_string(crash_every)
                                   + ")");
        if (!crash_on_user.empty())
          for (auto& e : batch)
            if (e.tx.user == crash_on_user)
              throw std::runtime_error("injected fault (crash_on_user " + crash_on_user + ")");
        ask();
        if (auto err = ensure()) {
          spans(started, batch, render(err));
          return err;
        }
        auto cols = feature_names().size();
        std::vector<enriched_transaction*> items;
        items.reserve(batch.size());
        for (auto& e : batch) {
          if (e.features.size() != cols) {
            auto err = caf::make_error(ec::invalid_argument,
                                       "transaction " + e.tx.id + " has "
                                         + std::to_string(e.features.size()) + " features");
            spans(started, batch, render(err));
            return err;
          }
          items.push_back(&e);
        }
        // Who scores what: in a split, each user's transactions go to one
        // model by the user's hash; in shadow, the model in use decides and
        // the candidate scores beside it.
        std::vector<size_t> by_current, by_candidate, all;
        for (size_t i = 0; i < items.size(); ++i) {
          all.push_back(i);
          if (st->candidate && st->p.mode == canary_mode::split
              && in_canary(items[i]->tx.user, st->p.share))
            by_candidate.push_back(i);
          else
            by_current.push_back(i);
        }
        std::vector<scored_transaction> out(batch.size());
        if (auto err = score_into(*st->current, items, by_current, out, false, explain_above)) {
          spans(started, batch, render(err));
          return err;
        }
        if (st->candidate) {
          auto shadow = st->p.mode == canary_mode::shadow;
          if (auto err = score_into(*st->candidate, items, shadow ? all : by_candidate, out,
                                    shadow, explain_above)) {
            spans(started, batch, render(err));
            return err;
          }
        }
        for (size_t i = 0; i < batch.size(); ++i)
          out[i].item = std::move(batch[i]);
        spans(started, out, {});
        return out;
      },
      [shared](model_load_atom, std::string& path) -> caf::result<std::string> {
        auto m = model::make(path);
        if (!m)
          return m.error();
        auto version = (*m)->version();
        shared->configure(path);
        return version;
      },
      [st, ensure, ask](model_status_atom) -> caf::result<std::string> {
        ask();
        if (auto err = ensure())
          return err;
        auto text = st->current->version() + " (" + st->current->path() + ")";
        if (st->candidate)
          text += "; on trial " + st->candidate->version() + " ("
                  + (st->p.mode == canary_mode::shadow
                       ? std::string{"shadow"}
                       : std::to_string(st->p.share) + "% of users")
                  + ")";
        return text;
      },
    };
  };
  return g;
}

} // namespace troupe::fraud
