#include "runtime/core/error.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>
#include <caf/exit_reason.hpp>

namespace troupe {

std::string to_string(ec x) {
  switch (x) {
    case ec::none: return "none";
    case ec::invalid_spec: return "invalid_spec";
    case ec::max_restart_intensity: return "max_restart_intensity";
    case ec::failed_to_start_child: return "failed_to_start_child";
    case ec::no_such_child: return "no_such_child";
    case ec::child_running: return "child_running";
    case ec::child_exists: return "child_exists";
    case ec::group_saturated: return "group_saturated";
    case ec::group_down: return "group_down";
    case ec::poison_message: return "poison_message";
    case ec::call_timeout: return "call_timeout";
    case ec::group_stopping: return "group_stopping";
    case ec::fallback_failed: return "fallback_failed";
    case ec::invalid_argument: return "invalid_argument";
    case ec::invalid_topology: return "invalid_topology";
    case ec::not_authenticated: return "not_authenticated";
    case ec::process_exited: return "process_exited";
    case ec::killed_by_operator: return "killed_by_operator";
    case ec::stopped_by_operator: return "stopped_by_operator";
    case ec::io_failure: return "io_failure";
    case ec::cannot_bind: return "cannot_bind";
    case ec::too_large: return "too_large";
    case ec::in_doubt: return "in_doubt";
    case ec::store_unavailable: return "store_unavailable";
  }
  return "ec(" + std::to_string(static_cast<int>(x)) + ")";
}

std::string render(const caf::error& x) {
  if (!x)
    return "none";
  std::string result;
  if (x.category() == ec_category)
    result = to_string(static_cast<ec>(x.code()));
  else if (x.category() == caf::atom("system"))
    result = caf::to_string(static_cast<caf::sec>(x.code()));
  else if (x.category() == caf::atom("exit"))
    result = caf::to_string(static_cast<caf::exit_reason>(x.code()));
  else
    result = caf::to_string(x.category()) + "(" + std::to_string(x.code()) + ")";
  if (!x.context().empty()) {
    // A context of plain strings reads best without CAF's tuple notation.
    std::string ctx;
    for (size_t i = 0; i < x.context().size(); ++i) {
      if (i > 0)
        ctx += ", ";
      if (x.context().match_element<std::string>(i))
        ctx += x.context().get_as<std::string>(i);
      else
        ctx += x.context().stringify(i);
    }
    result += ": " + ctx;
  }
  return result;
}

bool is(const caf::error& x, caf::sec code) {
  return x.category() == caf::atom("system") && x.code() == static_cast<uint8_t>(code);
}

} // namespace troupe
