// SPDX-License-Identifier: MIT
// supervisor: claims video tasks from PostgreSQL and runs one contained child per
// task attempt. Flags and environment: supervisor/CLI.md.
#include <signal.h>

#include <cstdio>
#include <exception>
#include <iostream>

#include "config.hpp"
#include "log.hpp"
#include "supervisor.hpp"
#include "task_store.hpp"

int main(int argc, char** argv) {
    // First thing, before anything can start a thread: the handled signals are
    // blocked (delivered through a signalfd later) and SIGPIPE is ignored.
    sigset_t handled;
    sigemptyset(&handled);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&handled, sig);
    sigprocmask(SIG_BLOCK, &handled, nullptr);
    signal(SIGPIPE, SIG_IGN);

    std::optional<int> early_exit;
    pv::Config cfg = pv::parse_config(argc, argv, early_exit);
    if (early_exit)
        return *early_exit;

    if (!cfg.signal_handling) {
        // With signal handling off, SIGTERM and SIGINT keep their default action and
        // end the supervisor at once; children follow through their parent death
        // signal and their tasks are repaired later as worker_lost.
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigprocmask(SIG_UNBLOCK, &stop, nullptr);
        sigdelset(&handled, SIGTERM);
        sigdelset(&handled, SIGINT);
    }

    pv::log::setup(cfg.log_format, cfg.log_level);

    if (cfg.migrate_only) {
        try {
            pv::TaskStore store(cfg.database_url, cfg.db_retry_attempts, cfg.db_retry_delay);
            int applied = store.migrate();
            pv::log::info("Migrations applied", {{"count", applied}});
            return 0;
        } catch (const std::exception& e) {
            pv::log::error("Migration failed", {{"error_message", e.what()}});
            return 1;
        }
    }

    try {
        pv::Supervisor supervisor(std::move(cfg), handled);
        return supervisor.run();
    } catch (const std::exception& e) {
        pv::log::event(spdlog::level::critical, "Supervisor failed", {{"error_message", e.what()}});
        return 1;
    }
}
