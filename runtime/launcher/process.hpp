#pragma once

#include <functional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "runtime/supervision/spec.hpp"

namespace troupe::launcher {

/// Receives each line a child process prints (stdout and stderr), from the
/// process's reader thread.
using line_fn = std::function<void(const std::string& line)>;

/// A child spec that runs `argv` as an operating-system process under a
/// Troupe supervisor: the process actor exits with `ec::process_exited` when
/// the process dies, so the supervisor restarts it like any child (strategy,
/// intensity, backoff). A process that exits with code 0 ended on purpose:
/// its actor exits normally, which a `transient` child is not restarted for. Stopping the child sends SIGTERM and, after the
/// shutdown timeout, SIGKILL; a process actor that is killed itself kills its
/// process first, so no process outlives it.
///
/// Threads: one reader thread per process reads its output and waits for its
/// exit, so nothing blocks a scheduler thread.
/// `on_start`, if given, learns each new process's PID (for logs).
child_spec process_child(std::string name, std::vector<std::string> argv, line_fn on_line,
                         std::function<void(int pid)> on_start = {},
                         caf::timespan stop_timeout = std::chrono::seconds(5));

} // namespace troupe::launcher
