#pragma once

#include <string>

#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::echo {

/// The `echo` diagnostic group: answers `(std::string s)` with `s`, and
/// `(uint64_t seq)` with `seq`, naming no state. It is the group operators
/// and tests aim traffic and fault injection at to watch supervision work
/// without touching Kafka or Redis (Akka's and OTP's test suites use the
/// same kind of echo process).
group_spec make_group(std::string name = "echo", size_t instances = 2);

/// The `echo` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::echo
