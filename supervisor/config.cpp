// SPDX-License-Identifier: MIT
#include "config.hpp"

#include <pwd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "retry.hpp"

#ifndef PV_VERSION
#define PV_VERSION "unknown"
#endif

namespace pv {

namespace {

namespace fs = std::filesystem;

/// A configuration problem found after CLI11 accepted the syntax.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

std::vector<std::string> split_spaces(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string word;
    while (in >> word) out.push_back(word);
    return out;
}

bool is_executable_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

/// Resolves a program name the way execvp would, but before fork.
std::optional<std::string> resolve_program(const std::string& name) {
    if (name.find('/') != std::string::npos) {
        if (is_executable_file(name))
            return name;
        return std::nullopt;
    }
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    std::size_t pos = 0;
    while (pos <= dirs.size()) {
        std::size_t end = dirs.find(':', pos);
        if (end == std::string::npos)
            end = dirs.size();
        std::string dir = dirs.substr(pos, end - pos);
        fs::path candidate = fs::path(dir.empty() ? "." : dir) / name;
        if (is_executable_file(candidate))
            return candidate.string();
        pos = end + 1;
    }
    return std::nullopt;
}

/// The renderer built beside this binary (build tree) or installed next to it.
std::string default_child_command() {
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        for (auto candidate : {self.parent_path() / "protovideo-render",
                               self.parent_path().parent_path() / "child" / "protovideo-render"}) {
            if (is_executable_file(candidate))
                return candidate.string();
        }
    }
    return "protovideo-render";
}

/// Accepts numbers above (or, unless `strict`, equal to) `min`, with a plain message.
CLI::Validator number_above(double min, bool strict) {
    std::string what = strict ? "a number > " : "a number >= ";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", min);
    what += buf;
    return CLI::Validator(
        [=](std::string& text) -> std::string {
            std::size_t used = 0;
            double v = 0;
            try {
                v = std::stod(text, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used == 0 || used != text.size() || (strict ? !(v > min) : !(v >= min))) {
                return "must be " + what + ", not '" + text + "'";
            }
            return {};
        },
        what.substr(2));
}

std::optional<CgroupMode> parse_cgroup_mode(const std::string& s) {
    if (s == "auto")
        return std::nullopt;
    if (s == "v2")
        return CgroupMode::V2;
    if (s == "v1")
        return CgroupMode::V1;
    if (s == "rlimit")
        return CgroupMode::Rlimit;
    throw ConfigError("--cgroup-mode must be auto, v2, v1 or rlimit, not '" + s + "'");
}

spdlog::level::level_enum parse_level(const std::string& s) {
    auto level = spdlog::level::from_str(s);
    if (level == spdlog::level::off && s != "off") {
        throw ConfigError("--log-level must be trace, debug, info, warn, error or critical, not '" +
                          s + "'");
    }
    return level;
}

void resolve_child(Config& cfg) {
    cfg.child_argv = split_spaces(cfg.child_command);
    if (cfg.child_argv.empty())
        throw ConfigError("--child-command is empty");
    auto program = resolve_program(cfg.child_argv[0]);
    if (!program) {
        throw ConfigError("--child-command: cannot find an executable '" + cfg.child_argv[0] + "'");
    }
    cfg.child_argv[0] = *program;
}

void resolve_user(Config& cfg, bool user_given) {
    if (::geteuid() != 0) {
        // Without root there is nobody to switch to; the child runs as we do.
        if (user_given && !cfg.child_user.empty()) {
            if (::getpwnam(cfg.child_user.c_str()) == nullptr) {
                throw ConfigError("--child-user: unknown user '" + cfg.child_user + "'");
            }
        }
        cfg.child_user.clear();
        return;
    }
    if (cfg.child_user.empty())
        cfg.child_user = "nobody";
    const passwd* pw = ::getpwnam(cfg.child_user.c_str());
    if (pw == nullptr)
        throw ConfigError("--child-user: unknown user '" + cfg.child_user + "'");
    cfg.child_uid = pw->pw_uid;
    cfg.child_gid = pw->pw_gid;
}

}  // namespace

const char* supervisor_version() {
    return PV_VERSION;
}

Config parse_config(int argc, char** argv, std::optional<int>& exit_code) {
    Config cfg;
    cfg.state_dir = ::geteuid() == 0 ? "/var/lib/protovideo" : "./.state";
    cfg.child_command = default_child_command();
    std::string cgroup_mode = "auto";
    std::string log_format = "auto";
    std::string log_level = "info";
    std::string retry_on;

    CLI::App app{"ProtoVideo supervisor: runs one contained child per video task", "supervisor"};
    app.set_version_flag("--version", std::string("supervisor ") + PV_VERSION);
    auto non_negative = number_above(0, false);
    auto positive = number_above(0, true);
    app.add_option("--max-children", cfg.max_children, "Concurrent children")
        ->envname("MAX_CHILDREN")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--database-url", cfg.database_url, "libpq URI or conninfo (else PG* vars)")
        ->envname("DATABASE_URL");
    app.add_option("--child-command", cfg.child_command,
                   "Program (+ args, split on spaces) exec'd per attempt")
        ->envname("CHILD_COMMAND")
        ->capture_default_str();
    auto* child_user = app.add_option("--child-user", cfg.child_user,
                                      "User the child runs as (default nobody, only when root)")
                           ->envname("CHILD_USER");
    app.add_option("--task-timeout", cfg.task_timeout, "Seconds per attempt")
        ->envname("TASK_TIMEOUT")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--term-grace", cfg.term_grace, "SIGTERM to SIGKILL grace, seconds")
        ->envname("TERM_GRACE")
        ->check(non_negative)
        ->capture_default_str();
    app.add_option("--shutdown-grace", cfg.shutdown_grace,
                   "On SIGTERM/SIGINT, seconds children get to finish")
        ->envname("SHUTDOWN_GRACE")
        ->check(non_negative)
        ->capture_default_str();
    app.add_option("--memory-warning", cfg.memory_warning_mb, "MB; logs [MEMORY] warnings above")
        ->envname("MEMORY_WARNING_THRESHOLD")
        ->check(non_negative)
        ->capture_default_str();
    app.add_option("--memory-limit", cfg.memory_limit_mb, "MB; hard memory limit per child")
        ->envname("MEMORY_CRITICAL_THRESHOLD")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--signal-handling", cfg.signal_handling,
                   "Graceful SIGTERM/SIGINT handling (false: default disposition)")
        ->envname("ENABLE_SIGNAL_HANDLING")
        ->capture_default_str();
    app.add_option("--db-retry-attempts", cfg.db_retry_attempts, "Tries per database write")
        ->envname("DB_RETRY_ATTEMPTS")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--db-retry-delay", cfg.db_retry_delay, "Seconds between database retries")
        ->envname("DB_RETRY_DELAY")
        ->check(non_negative)
        ->capture_default_str();
    app.add_option("--poll-interval", cfg.poll_interval, "Safety-net poll period, seconds")
        ->envname("POLL_INTERVAL")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--work-root", cfg.work_root, "Per-attempt work directories")
        ->envname("WORK_ROOT")
        ->capture_default_str();
    app.add_option("--output-dir", cfg.output_dir,
                   "Where children publish <task id>.mp4 (their OUTPUT_DIR); what an attempt "
                   "that did not complete left there is withdrawn")
        ->envname("OUTPUT_DIR");
    app.add_option("--state-dir", cfg.state_dir, "Journal and other state")
        ->envname("STATE_DIR")
        ->capture_default_str();
    app.add_option("--instance", cfg.instance, "Distinguishes supervisors on one host")
        ->envname("SUPERVISOR_INSTANCE")
        ->capture_default_str();
    app.add_option("--cgroup-mode", cgroup_mode, "auto, v2, v1 or rlimit")
        ->envname("CGROUP_MODE")
        ->capture_default_str();
    app.add_option("--cgroup-favordynmods", cfg.favor_dynmods,
                   "Remount cgroup2 with favordynmods: fast cgroup joins (root, Linux 6.0+)")
        ->envname("CGROUP_FAVORDYNMODS")
        ->capture_default_str();
    app.add_option("--retry-base-delay", cfg.retry_base_delay, "Backoff base, seconds")
        ->envname("RETRY_BASE_DELAY")
        ->check(non_negative)
        ->capture_default_str();
    app.add_option("--retry-on", retry_on, "Extra error_types to retry, comma separated")
        ->envname("RETRY_ON");
    app.add_option("--lease", cfg.lease_seconds, "Heartbeat age after which a worker is dead")
        ->envname("LEASE_SECONDS")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--heartbeat", cfg.heartbeat_seconds, "Heartbeat period, seconds")
        ->envname("HEARTBEAT_SECONDS")
        ->check(positive)
        ->capture_default_str();
    app.add_option("--log-format", log_format, "auto (json unless a terminal), json, text")
        ->envname("LOG_FORMAT")
        ->capture_default_str();
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical")
        ->envname("LOG_LEVEL")
        ->capture_default_str();
    app.add_flag("--exit-when-idle", cfg.exit_when_idle,
                 "Exit 0 once nothing is pending or running")
        ->envname("EXIT_WHEN_IDLE");
    app.add_flag("--migrate", cfg.migrate_only, "Run migrations and exit");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        exit_code = app.exit(e);
        return cfg;
    } catch (const CLI::CallForVersion& e) {
        exit_code = app.exit(e);
        return cfg;
    } catch (const CLI::ParseError& e) {
        std::cerr << "supervisor: " << e.what() << "\n";
        exit_code = 2;
        return cfg;
    }

    try {
        cfg.cgroup_mode = parse_cgroup_mode(cgroup_mode);
        try {
            cfg.log_format = log::parse_format(log_format);
        } catch (const std::invalid_argument& e) {
            throw ConfigError(std::string("--") + e.what());
        }
        cfg.log_level = parse_level(log_level);
        cfg.retry_on = parse_kind_list(retry_on);
        if (cfg.heartbeat_seconds >= cfg.lease_seconds) {
            throw ConfigError(fmt::format(
                "--heartbeat ({:g} s) must be shorter than --lease ({:g} s), or peers take this "
                "supervisor's tasks as lost between two heartbeats",
                cfg.heartbeat_seconds, cfg.lease_seconds));
        }
        if (cfg.instance.empty() || cfg.instance.find('/') != std::string::npos) {
            throw ConfigError("--instance must be a non-empty name without '/'");
        }
        if (!cfg.migrate_only) {
            resolve_child(cfg);
            resolve_user(cfg, child_user->count() > 0 || std::getenv("CHILD_USER"));
        }
    } catch (const ConfigError& e) {
        std::cerr << "supervisor: " << e.what() << "\n";
        exit_code = 2;
    }
    return cfg;
}

}  // namespace pv
