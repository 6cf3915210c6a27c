#include "runtime/node/node.hpp"

#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>

#include "runtime/core/error.hpp"
#include "runtime/group/group.hpp"
#include "runtime/supervision/supervisor.hpp"

namespace troupe {

void group_directory::put(const std::string& name, const caf::actor& router) {
  std::lock_guard<std::mutex> guard{mtx_};
  routers_[name] = router;
}

void group_directory::erase_if(const std::string& name, const caf::actor_addr& router) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = routers_.find(name);
  if (i != routers_.end() && i->second && i->second.address() == router)
    routers_.erase(i);
}

caf::actor group_directory::get(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = routers_.find(name);
  return i == routers_.end() ? caf::actor{} : i->second;
}

std::vector<std::string> group_directory::names() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::string> result;
  for (auto& kv : routers_)
    result.push_back(kv.first);
  return result;
}

void group_directory::set_instances(const std::string& name, std::vector<uint32_t> ids) {
  std::lock_guard<std::mutex> guard{mtx_};
  instances_[name] = std::move(ids);
}

std::vector<uint32_t> group_directory::instances(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = instances_.find(name);
  return i == instances_.end() ? std::vector<uint32_t>{} : i->second;
}

node::node(caf::actor_system& sys, node_config cfg) : sys_(sys), cfg_(std::move(cfg)) {
  // nop
}

node::~node() {
  stop();
}

caf::expected<std::unique_ptr<node>> node::make(caf::actor_system& sys, node_config cfg) {
  if (cfg.name.empty())
    return caf::make_error(ec::invalid_spec, "node without a name");
  std::unique_ptr<node> result{new node(sys, std::move(cfg))};
  supervisor_spec root;
  root.name = result->cfg_.name + ".root";
  root.intensity = result->cfg_.intensity;
  root.period = result->cfg_.period;
  for (auto& g : result->cfg_.groups) {
    auto child = group_child(g, [dir = result->directory_, name = g.name](const caf::actor& r) {
      dir->put(name, r);
    });
    if (!child)
      return child.error();
    root.children.push_back(std::move(*child));
  }
  auto sup = spawn_supervisor(sys, std::move(root));
  if (!sup)
    return sup.error();
  result->root_ = *sup;
  return result;
}

void node::stop() {
  if (!root_)
    return;
  caf::scoped_actor self{sys_};
  self->monitor(root_);
  self->send_exit(root_, caf::exit_reason::user_shutdown);
  self->receive([](caf::down_msg&) {});
  root_ = nullptr;
}

} // namespace troupe
