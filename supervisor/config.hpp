// SPDX-License-Identifier: MIT
// The supervisor's configuration: CLI11 flags with environment equivalents, as
// documented in supervisor/CLI.md (the contract tests and tools rely on).
#pragma once

#include <sys/types.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "cgroup.hpp"
#include "log.hpp"

namespace pv {

struct Config {
    int max_children = 2;
    std::string database_url;  // "" = libpq PG* variables
    std::string child_command;
    std::vector<std::string> child_argv;  // child_command split on spaces, [0] resolved
    std::string child_user;               // "" when not dropping privileges
    std::optional<uid_t> child_uid;       // set when running as root
    gid_t child_gid = 0;
    double task_timeout = 900;
    double term_grace = 5;
    double shutdown_grace = 30;
    double memory_warning_mb = 1000;
    double memory_limit_mb = 2000;
    bool signal_handling = true;
    int db_retry_attempts = 3;
    double db_retry_delay = 5;
    double poll_interval = 10;
    std::string work_root = "/tmp/protovideo-work";
    std::string output_dir;  // the renderers' OUTPUT_DIR, passed on and withdrawn from
    std::string state_dir;
    std::string instance = "default";
    std::optional<CgroupMode> cgroup_mode;  // nullopt = auto
    bool favor_dynmods = false;             // remount cgroup2 with favordynmods
    double retry_base_delay = 2;
    std::set<std::string> retry_on;
    double lease_seconds = 30;
    double heartbeat_seconds = 5;
    log::Format log_format = log::Format::Auto;
    spdlog::level::level_enum log_level = spdlog::level::info;
    bool exit_when_idle = false;
    bool migrate_only = false;
};

/// Parses argv and the environment. On --help/--version prints and returns the exit
/// code 0 in `exit_code`; on bad configuration prints a clear message on stderr and
/// sets `exit_code` to 2. Otherwise `exit_code` stays empty.
Config parse_config(int argc, char** argv, std::optional<int>& exit_code);

/// The build's version string.
const char* supervisor_version();

}  // namespace pv
