// SPDX-License-Identifier: MIT
// The orchestrating class: claims tasks, spawns one contained child per attempt,
// watches it from a single-threaded epoll loop, and records every death.
#pragma once

#include <signal.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cgroup.hpp"
#include "child_process.hpp"
#include "config.hpp"
#include "death.hpp"
#include "event_loop.hpp"
#include "published_output.hpp"
#include "retry.hpp"
#include "spawner.hpp"
#include "task_store.hpp"

namespace pv {

class Supervisor {
public:
    /// `handled_signals` must already be blocked in every thread.
    Supervisor(Config config, const sigset_t& handled_signals);
    ~Supervisor();

    /// Starts up, runs until shutdown (or idle with --exit-when-idle) and returns the
    /// process exit code.
    int run();

private:
    enum class Phase {
        Running,   // claiming and supervising
        Draining,  // shutdown requested: no claims, children get the shutdown grace
        Stopping,  // children were told to stop
    };

    bool start();
    std::map<TaskKey, CgroupStats> recover_leftover_cgroups();
    void remove_stale_work_dirs();
    void register_loop();
    void after_events();

    void on_signal();
    void on_db_socket();
    void on_poll_timer();
    void on_memory_timer();

    void claim_round();
    void check_idle();
    void start_task(const TaskInfo& task);
    SpawnSpec make_spawn_spec(const TaskInfo& task, const std::string& work_dir, int stdin_fd,
                              const TaskCgroup* cgroup);
    std::vector<std::string> child_env(const TaskInfo& task, const std::string& work_dir) const;

    void reap_children();
    void on_reaped(ChildProcess& child, int status, const rusage& ru);
    void on_child_timer(pid_t pid);
    void on_child_events(pid_t pid);
    void on_child_output(pid_t pid);
    void drain_events(ChildProcess& child);
    void drain_output(ChildProcess& child);
    void check_teardown(ChildProcess& child);
    void finish_child(ChildProcess& child);
    void remove_ended_attempts();
    void save_progress(ChildProcess& child, bool force);

    void stop_child(ChildProcess& child, SupervisorAction why);
    void cancel_task(const std::string& task_id);
    void begin_shutdown();
    void stop_all_children();
    void kill_all_children();

    /// Queues the attempt's and the task's final state.
    void record(const TaskInfo& task, const Verdict& verdict, const nlohmann::json& metrics,
                const std::optional<nlohmann::json>& result, const std::string& stderr_tail);

    ChildProcess* find(pid_t pid);
    ChildProcess* find_task(const std::string& task_id);
    double unit_random();
    /// The retry backoff for tasks recovered from a lost (or earlier) supervisor.
    RequeueDelay requeue_delay();
    void request_exit(int code);

    Config m_cfg;
    sigset_t m_signals;
    EventLoop m_loop;
    UniqueFd m_signalfd;
    TimerFd m_poll_timer;
    TimerFd m_heartbeat_timer;
    TimerFd m_memory_timer;
    TimerFd m_db_timer;
    TimerFd m_delayed_timer;
    TimerFd m_shutdown_timer;
    std::unique_ptr<CgroupManager> m_cgroups;
    std::unique_ptr<Journal> m_journal;
    TaskStore m_store;
    PublishedOutput m_published;
    WorkerInfo m_worker;
    RetryPolicy m_retry;
    std::map<pid_t, std::unique_ptr<ChildProcess>> m_children;
    /// What a recorded attempt leaves behind, removed once the next claim is out.
    struct EndedAttempt {
        std::unique_ptr<TaskCgroup> cgroup;
        std::string work_dir;
        std::string task_id;
    };
    std::vector<EndedAttempt> m_ended;
    Phase m_phase = Phase::Running;
    int m_stop_signals = 0;
    bool m_claim_wanted = true;
    bool m_sweep_wanted = true;
    bool m_idle_check_wanted = false;
    bool m_worker_stopped_queued = false;
    std::optional<int> m_exit_code;
    std::mt19937_64 m_rng;
};

}  // namespace pv
