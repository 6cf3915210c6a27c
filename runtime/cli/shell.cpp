// `troupe shell`: the operator's shell, an actor system of its own that joins
// the cluster through the node agents (shell_link) and runs commands
// (shell_commands) given with -c, on standard input, or typed at a prompt
// with libedit's line editing, history and completion (here).
#include "runtime/cli/shell.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <editline/readline.h>

#include "runtime/cli/shell_commands.hpp"
#include "runtime/cluster/node_agent.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/types.hpp"
#include "topology/topology.hpp"

namespace troupe::cli {

namespace {

// -- line editing (libedit's readline interface) ---------------------------------

std::vector<std::string> completion_words;

char* complete_next(const char* text, int state) {
  static size_t index;
  if (state == 0)
    index = 0;
  auto len = std::strlen(text);
  while (index < completion_words.size()) {
    auto& w = completion_words[index++];
    if (w.compare(0, len, text) == 0)
      return strdup(w.c_str());
  }
  return nullptr;
}

std::vector<std::string>* completion_names() {
  static std::vector<std::string> names;
  return &names;
}

} // namespace

int run_shell(const shell_options& opt) {
  auto topo = topology::load(opt.config, opt.domains);
  if (!topo) {
    auto text = render(topo.error());
    std::cerr << "troupe shell: " << text.substr(text.find(": ") + 2) << "\n";
    return shell_usage;
  }
  if (topo->nodes.empty()) {
    std::cerr << "troupe shell: " << opt.config << " names no node\n";
    return shell_usage;
  }
  std::string entry = opt.connect;
  if (!entry.empty() && !topo->node(entry)) {
    bool known = false;
    for (auto& n : topo->nodes)
      known = known || entry == n.host + ":" + std::to_string(n.cluster_port);
    if (!known) {
      std::cerr << "troupe shell: --connect " << entry << " is no node of " << opt.config
                << " (give a node's name or its host:cluster_port)\n";
      return shell_usage;
    }
  }
  config cfg;
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", topo->cluster.heartbeat_interval);
  // As a node's: a link is closed after this much silence (a lossy link's
  // retransmissions pause it for less).
  cfg.set("middleman.connection-timeout",
          topo->cluster.failure_timeout * cluster::link_silence_bound);
  configure_scheduler(cfg, 2);
  caf::actor_system sys{cfg};
  auto s = shell_session::make(sys, *topo, entry, opt.timeout);
  auto print = [&](const outcome& o) {
    if (opt.json)
      std::cout << (o.doc.is_null() ? nlohmann::json::object() : o.doc).dump() << std::endl;
    else if (o.rc == shell_ok)
      std::cout << o.text << std::flush;
    else
      std::cerr << o.text << std::flush;
  };
  std::string why;
  if (!s->join(why)) {
    outcome o;
    o.rc = shell_unreachable;
    o.text = "troupe shell: cannot reach cluster " + topo->cluster.name + ": " + why + "\n";
    o.doc = {{"error", "unreachable"}, {"message", o.text}};
    print(o);
    return shell_unreachable;
  }
  if (!opt.command.empty()) {
    auto o = s->run(split(opt.command));
    print(o);
    return o.rc;
  }
  int worst = shell_ok;
  auto run_line = [&](const std::string& line) -> bool {
    auto words = split(line);
    if (words.empty())
      return true;
    if (words[0] == "quit" || words[0] == "exit")
      return false;
    auto o = s->run(words);
    print(o);
    worst = std::max(worst, o.rc);
    return true;
  };
  if (!isatty(STDIN_FILENO)) {
    // Commands on standard input, one per line (`#` starts a comment).
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line[0] == '#')
        continue;
      if (!run_line(line))
        break;
    }
    return worst;
  }
  // Interactive: libedit with history (~/.troupe_history) and completion of
  // commands, groups and nodes.
  auto* names = completion_names();
  for (auto& g : topo->groups)
    names->push_back(g.name);
  for (auto& n : topo->nodes)
    names->push_back(n.name);
  rl_readline_name = const_cast<char*>("troupe");
  rl_attempted_completion_function = [](const char* text, int start, int end) -> char** {
    completion_words.clear();
    bool first_word = true;
    for (int i = 0; i < start; ++i)
      if (!std::isspace(static_cast<unsigned char>(rl_line_buffer[i])))
        first_word = false;
    std::string line{rl_line_buffer};
    if (first_word || line.rfind("help", 0) == 0)
      for (auto& c : command_names())
        completion_words.push_back(c);
    if (!first_word)
      for (auto& n : *completion_names())
        completion_words.push_back(n);
    if (line.rfind("log ", 0) == 0)
      for (auto level : {"error", "warning", "info", "debug", "trace"})
        completion_words.push_back(level);
    (void) end;
    rl_attempted_completion_over = 1;
    return rl_completion_matches(text, complete_next);
  };
  std::string history;
  if (auto* home = std::getenv("HOME"))
    history = std::string{home} + "/.troupe_history";
  using_history();
  if (!history.empty())
    read_history(history.c_str());
  std::cout << "troupe shell: cluster " << topo->cluster.name << " (" << topo->nodes.size()
            << " nodes). `help` lists the commands, Tab completes, Ctrl-D leaves." << std::endl;
  auto prompt = topo->cluster.name + "> ";
  for (;;) {
    char* raw = readline(prompt.c_str());
    if (!raw)
      break;
    std::string line{raw};
    std::free(raw);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
      line.pop_back();
    if (!split(line).empty()) {
      add_history(line.c_str());
      if (!history.empty())
        write_history(history.c_str());
    }
    if (!run_line(line))
      break;
  }
  std::cout << std::endl;
  return worst;
}

} // namespace troupe::cli

