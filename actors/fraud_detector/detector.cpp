#include "actors/fraud_detector/detector.hpp"

#include <memory>
#include <mutex>
#include <stdexcept>

#include "actors/fraud_detector/model.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

namespace troupe::fraud {

namespace {

/// The group's current model, shared by its workers: each reloads its own
/// copy when the generation moved.
struct current_model {
  std::mutex mtx;
  std::string path;
  uint64_t generation = 0;

  std::pair<std::string, uint64_t> get() {
    std::lock_guard<std::mutex> guard{mtx};
    return {path, generation};
  }

  void set(std::string p) {
    std::lock_guard<std::mutex> guard{mtx};
    path = std::move(p);
    ++generation;
  }
};

struct worker_state {
  std::unique_ptr<model> m;
  uint64_t generation = 0;
  uint64_t batches = 0;
};

} // namespace

caf::expected<group_spec> make_group(const std::string& name, size_t instances,
                                     const std::string& model_path, uint64_t crash_every,
                                     std::string crash_on_user) {
  auto probe = model::make(model_path);
  if (!probe)
    return probe.error();
  auto shared = std::make_shared<current_model>();
  shared->set(model_path);
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.worker = [shared, crash_every, crash_on_user](caf::event_based_actor*,
                                                  size_t) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    auto ensure = [st, shared]() -> caf::error {
      auto [path, gen] = shared->get();
      if (st->m && st->generation == gen)
        return caf::none;
      auto m = model::make(path);
      if (!m)
        return m.error();
      st->m = std::move(*m);
      st->generation = gen;
      return caf::none;
    };
    return {
      [st, ensure, crash_every, crash_on_user](score_atom,
                                               std::vector<enriched_transaction>& batch)
        -> caf::result<std::vector<scored_transaction>> {
        if (crash_every > 0 && ++st->batches % crash_every == 0)
          throw std::runtime_error("injected fault (crash_every " + std::to_string(crash_every)
                                   + ")");
        if (!crash_on_user.empty())
          for (auto& e : batch)
            if (e.tx.user == crash_on_user)
              throw std::runtime_error("injected fault (crash_on_user " + crash_on_user + ")");
        if (auto err = ensure())
          return err;
        auto cols = feature_names().size();
        std::vector<float> rows;
        rows.reserve(batch.size() * cols);
        for (auto& e : batch) {
          if (e.features.size() != cols)
            return caf::make_error(ec::invalid_argument,
                                   "transaction " + e.tx.id + " has "
                                     + std::to_string(e.features.size()) + " features");
          rows.insert(rows.end(), e.features.begin(), e.features.end());
        }
        auto scores = st->m->explain(rows, batch.size(), 3);
        if (!scores)
          return scores.error();
        std::vector<scored_transaction> out;
        out.reserve(batch.size());
        for (size_t i = 0; i < batch.size(); ++i) {
          scored_transaction s;
          s.item = std::move(batch[i]);
          s.probability = (*scores)[i].probability;
          s.model_version = (*scores)[i].model_version;
          for (auto& [f, c] : (*scores)[i].top_features) {
            s.top_features.push_back(f);
            s.top_contributions.push_back(c);
          }
          out.push_back(std::move(s));
        }
        return out;
      },
      [st, shared](model_load_atom, std::string& path) -> caf::result<std::string> {
        auto m = model::make(path);
        if (!m)
          return m.error();
        auto version = (*m)->version();
        shared->set(path);
        return version;
      },
      [st, ensure](model_status_atom) -> caf::result<std::string> {
        if (auto err = ensure())
          return err;
        return st->m->version() + " (" + st->m->path() + ")";
      },
    };
  };
  return g;
}

} // namespace troupe::fraud
