// SPDX-License-Identifier: MIT
#include "supervisor.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "error_type.hpp"
#include "log.hpp"
#include "spawner.hpp"
#include "sys_error.hpp"

extern char** environ;

namespace pv {

namespace {

namespace fs = std::filesystem;

constexpr double kMemorySamplePeriod = 1.0;
constexpr double kMemoryWarningEvery = 30.0;
constexpr double kProgressEvery = 0.5;  // at most 2 progress writes per second per task
constexpr double kTeardownPoll = 0.05;
constexpr double kTeardownDeadline = 5.0;  // kill stragglers + drain pipes, at most
constexpr double kPidWriteDelay = 0.25;    // a running attempt's pid reaches the row
constexpr int kPidsMax = 512;
// A claim is left this many leases to start its child before it counts as untracked.
constexpr double kUntrackedGraceLeases = 2.0;

std::string read_uuid() {
    std::ifstream in("/proc/sys/kernel/random/uuid");
    std::string id;
    std::getline(in, id);
    if (id.empty())
        throw std::runtime_error("cannot read /proc/sys/kernel/random/uuid");
    return id;
}

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) < 0)
        return "unknown";
    return buf;
}

std::string format_mb(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fMB", static_cast<double>(bytes) / 1048576.0);
    return buf;
}

double timeval_seconds(const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

std::string signal_abbrev(int sig) {
    const char* a = ::sigabbrev_np(sig);
    return a ? std::string("SIG") + a : std::to_string(sig);
}

void remove_work_dir(const std::string& dir, const std::string& task_id) {
    // Most children leave only the request file: two calls instead of a walk.
    ::unlink((dir + "/request.json").c_str());
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT)
        return;
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) {
        log::error("Cannot remove work directory",
                   {{"task_id", task_id}, {"path", dir}, {"error_message", ec.message()}});
    }
}

/// Writes the request file: 0600, owned by the child user.
void write_request(const std::string& path, const std::string& body, std::optional<uid_t> uid,
                   gid_t gid) {
    UniqueFd fd{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (!fd)
        throw_sys("create " + path);
    std::size_t off = 0;
    while (off < body.size()) {
        ssize_t n = ::write(fd.get(), body.data() + off, body.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_sys("write " + path);
        off += static_cast<std::size_t>(n);
    }
    if (uid)
        check_sys(::fchown(fd.get(), *uid, gid), "chown " + path);
}

}  // namespace

Supervisor::Supervisor(Config config, const sigset_t& handled_signals)
    : m_cfg{std::move(config)},
      m_signals{handled_signals},
      m_store{m_cfg.database_url, m_cfg.db_retry_attempts, m_cfg.db_retry_delay},
      m_published{m_cfg.output_dir},
      m_rng{std::random_device{}()} {
    m_retry.base_delay_seconds = m_cfg.retry_base_delay;
    m_retry.extra_kinds = m_cfg.retry_on;
}

Supervisor::~Supervisor() {
    m_store.on_socket_change = nullptr;
}

double Supervisor::unit_random() {
    return std::uniform_real_distribution<double>(0.0, 1.0)(m_rng);
}

RequeueDelay Supervisor::requeue_delay() {
    return [this](int attempt) { return backoff_delay(attempt, m_retry, unit_random()); };
}

ChildProcess* Supervisor::find(pid_t pid) {
    auto it = m_children.find(pid);
    return it == m_children.end() ? nullptr : it->second.get();
}

ChildProcess* Supervisor::find_task(const std::string& task_id) {
    for (auto& [pid, child] : m_children) {
        if (child->task().id == task_id)
            return child.get();
    }
    return nullptr;
}

void Supervisor::request_exit(int code) {
    if (!m_exit_code)
        m_exit_code = code;
}

// ---- startup ------------------------------------------------------------------------

bool Supervisor::start() {
    try {
        m_cgroups = CgroupManager::probe(m_cfg.instance, m_cfg.cgroup_mode);
    } catch (const std::exception& e) {
        log::event(spdlog::level::critical, "Containment unavailable",
                   {{"error_message", e.what()}});
        return false;
    }
    nlohmann::json mode_fields = {{"cgroup_mode", to_string(m_cgroups->mode())},
                                  {"where", m_cgroups->describe()}};
    if (m_cgroups->mode() != CgroupMode::Rlimit) {
        auto dynmods = favor_dynmods(m_cfg.favor_dynmods);
        mode_fields["favordynmods"] = dynmods.on;
        if (m_cfg.favor_dynmods && !dynmods.on) {
            log::warn("Cannot turn on favordynmods, each child start waits for the kernel",
                      {{"mount_point", dynmods.mount_point}, {"error_message", dynmods.error}});
        }
    }
    log::info("Cgroup mode", mode_fields);
    try {
        // Also the instance lock: a second supervisor with this state dir and
        // instance stops here instead of sharing the journal or the cgroups.
        m_journal = std::make_unique<Journal>(Journal::path_for(m_cfg.state_dir, m_cfg.instance));
        m_store.attach_journal(m_journal.get());
    } catch (const std::exception& e) {
        log::event(spdlog::level::critical, "Cannot open the status journal",
                   {{"path", Journal::path_for(m_cfg.state_dir, m_cfg.instance).string()},
                    {"error_message", e.what()}});
        return false;
    }
    auto evidence = recover_leftover_cgroups();

    m_worker.id = read_uuid();
    m_worker.host = host_name();
    m_worker.pid = static_cast<int>(::getpid());
    m_worker.version = supervisor_version();
    m_worker.cgroup_mode = to_string(m_cgroups->mode());
    m_worker.max_children = m_cfg.max_children;
    m_worker.instance = m_cfg.instance;

    // Nothing runs yet, so waiting here blocks nobody.
    for (int attempt = 1;; ++attempt) {
        try {
            int applied = m_store.migrate();
            if (applied > 0)
                log::info("Migrations applied", {{"count", applied}});
            m_store.register_worker(m_worker);
            if (!m_store.replay_journal_now())
                throw std::runtime_error("journal replay failed");
            auto recovered =
                m_store.recover_previous_life(m_worker, evidence, m_cfg.retry_on, requeue_delay());
            if (!recovered.empty()) {
                log::warn("Tasks of an earlier life of this supervisor resolved",
                          {{"count", recovered.size()}});
            }
            // Their children were killed with the leftover cgroups above.
            for (const std::string& task_id : recovered) m_published.withdraw(task_id);
            break;
        } catch (const std::exception& e) {
            log::error("Database unavailable at startup", {{"operation", "register worker"},
                                                           {"error_message", e.what()},
                                                           {"attempt", attempt}});
            if (attempt >= m_cfg.db_retry_attempts)
                return false;
            std::this_thread::sleep_for(std::chrono::duration<double>(m_cfg.db_retry_delay));
        }
    }

    std::error_code ec;
    bool created = fs::create_directories(m_cfg.work_root, ec);
    if (ec) {
        log::event(spdlog::level::critical, "Cannot create work root",
                   {{"path", m_cfg.work_root}, {"error_message", ec.message()}});
        return false;
    }
    // The child user must be able to reach its own directory below the root. An
    // existing root (maybe /tmp) is left as its owner set it.
    if (created)
        ::chmod(m_cfg.work_root.c_str(), 0755);

    remove_stale_work_dirs();

    log::info("Supervisor started", {{"worker_id", m_worker.id},
                                     {"host", m_worker.host},
                                     {"pid", m_worker.pid},
                                     {"version", m_worker.version},
                                     {"max_children", m_cfg.max_children},
                                     {"child_command", m_cfg.child_command},
                                     {"child_user", m_cfg.child_user},
                                     {"memory_limit_mb", m_cfg.memory_limit_mb}});
    return true;
}

std::map<TaskKey, CgroupStats> Supervisor::recover_leftover_cgroups() {
    std::map<TaskKey, CgroupStats> evidence;
    for (const auto& name : m_cgroups->leftovers()) {
        try {
            auto cg = m_cgroups->adopt(name);
            if (!cg)
                continue;
            // An earlier supervisor died; its task processes must not run on unseen.
            for (int i = 0; i < 40 && !cg->empty(); ++i) {
                cg->signal_all(SIGKILL);
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            auto stats = cg->stats();
            bool removed = cg->remove();
            if (auto key = parse_task_cgroup_name(name))
                evidence[*key] = stats;
            log::warn("Leftover task cgroup cleaned up",
                      {{"cgroup", name}, {"oom_kills", stats.oom_kills}, {"removed", removed}});
        } catch (const std::exception& e) {
            log::error("Cannot clean up leftover task cgroup",
                       {{"cgroup", name}, {"error_message", e.what()}});
        }
    }
    return evidence;
}

void Supervisor::remove_stale_work_dirs() {
    // Directories of attempts that are over (an earlier life died before removing
    // them). Open attempts may belong to another supervisor sharing the root.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(m_cfg.work_root, ec)) {
        std::string name = entry.path().filename().string();
        auto key = parse_task_cgroup_name("task-" + name);
        if (!key || !entry.is_directory())
            continue;
        try {
            if (m_store.attempt_open(key->task_id, key->attempt))
                continue;
        } catch (const std::exception& e) {
            log::warn("Cannot check a leftover work directory",
                      {{"path", entry.path().string()}, {"error_message", e.what()}});
            continue;
        }
        log::warn("Leftover work directory removed", {{"task_id", key->task_id},
                                                      {"attempt", key->attempt},
                                                      {"path", entry.path().string()}});
        remove_work_dir(entry.path().string(), key->task_id);
    }
}

void Supervisor::register_loop() {
    m_signalfd = make_signalfd(m_signals);
    m_loop.add(m_signalfd.get(), EPOLLIN, [this](std::uint32_t) { on_signal(); });

    m_store.on_socket_change = [this](int old_fd, int new_fd) {
        if (old_fd >= 0)
            m_loop.remove(old_fd);
        if (new_fd >= 0)
            m_loop.add(new_fd, EPOLLIN, [this](std::uint32_t) { on_db_socket(); });
    };
    if (m_store.connected())
        m_store.on_socket_change(-1, m_store.socket());

    m_poll_timer.arm(m_cfg.poll_interval, m_cfg.poll_interval);
    m_loop.add(m_poll_timer.fd(), EPOLLIN, [this](std::uint32_t) { on_poll_timer(); });

    m_heartbeat_timer.arm(m_cfg.heartbeat_seconds, m_cfg.heartbeat_seconds);
    m_loop.add(m_heartbeat_timer.fd(), EPOLLIN, [this](std::uint32_t) {
        m_heartbeat_timer.consume();
        m_store.enqueue(DbWrite{"heartbeat", {{"worker_id", m_worker.id}}, 1});
    });

    m_memory_timer.arm(kMemorySamplePeriod, kMemorySamplePeriod);
    m_loop.add(m_memory_timer.fd(), EPOLLIN, [this](std::uint32_t) { on_memory_timer(); });

    // Retries of queued database writes are driven by flush() in after_events().
    m_loop.add(m_db_timer.fd(), EPOLLIN, [this](std::uint32_t) { m_db_timer.consume(); });

    m_loop.add(m_delayed_timer.fd(), EPOLLIN, [this](std::uint32_t) {
        m_delayed_timer.consume();
        m_claim_wanted = true;
    });

    m_loop.add(m_shutdown_timer.fd(), EPOLLIN, [this](std::uint32_t) {
        m_shutdown_timer.consume();
        if (m_phase == Phase::Draining) {
            log::warn("Shutdown grace over, stopping children", {{"running", m_children.size()}});
            stop_all_children();
        }
    });
}

int Supervisor::run() {
    if (!start())
        return 1;
    register_loop();
    while (!m_exit_code) {
        try {
            after_events();
            if (m_exit_code)
                break;
            m_loop.run_once(-1);
        } catch (const std::exception& e) {
            // One failed event must not take every other task down with it.
            log::error("Event handling failed", {{"error_message", e.what()}});
        }
    }
    log::info("Supervisor exiting", {{"exit_code", *m_exit_code}});
    return *m_exit_code;
}

// ---- the loop's bookkeeping ---------------------------------------------------------

void Supervisor::after_events() {
    // libpq may have read notifications while running another statement; then
    // the socket does not turn readable again for them.
    on_db_socket();
    if (m_sweep_wanted && m_phase == Phase::Running) {
        m_sweep_wanted = false;
        m_store.recover_expired_workers(m_worker.id, m_cfg.lease_seconds, requeue_delay());
        // Our own claims that no child and no queued write accounts for (a claim
        // whose start was cut short): resolved here rather than at our next start.
        std::set<TaskKey> running;
        for (const auto& [pid, child] : m_children)
            running.insert(TaskKey{child->task().id, child->task().attempt});
        m_store.recover_untracked_attempts(m_worker.id, std::move(running),
                                           kUntrackedGraceLeases * m_cfg.lease_seconds,
                                           requeue_delay());
    }
    if (m_claim_wanted && m_phase == Phase::Running)
        claim_round();
    // After the claim, so the next child does not wait for these removals.
    remove_ended_attempts();

    if (m_idle_check_wanted) {
        // Finished attempts must be written before "nothing running" is believed.
        m_store.flush();
        check_idle();
    }

    bool stopping = m_phase != Phase::Running;
    if (stopping && m_children.empty() && !m_worker_stopped_queued) {
        m_store.enqueue(
            DbWrite{"worker_stopped", {{"worker_id", m_worker.id}}, m_cfg.db_retry_attempts});
        m_worker_stopped_queued = true;
    }

    auto next_retry = m_store.flush();
    if (next_retry) {
        m_db_timer.arm(*next_retry);
    } else {
        m_db_timer.disarm();
    }

    if (stopping && m_children.empty()) {
        if (m_store.queued() == 0) {
            request_exit(0);
        } else if (m_store.all_writes_exhausted()) {
            // Only writes that could not even be journaled are left here.
            log::error("Exiting with unwritten database writes", {{"queued", m_store.queued()}});
            request_exit(1);
        }
    }
}

void Supervisor::claim_round() {
    m_claim_wanted = false;
    int free_slots = m_cfg.max_children - static_cast<int>(m_children.size());
    std::size_t claimed = 0;
    // Finished attempts are written first (or with the claim, in its statement), so
    // the database never shows more than --max-children of our tasks in progress.
    auto tasks = m_store.flush_and_claim(free_slots, m_worker, m_cfg.task_timeout);
    claimed = tasks.size();
    for (const auto& t : tasks) start_task(t);
    // With every slot taken, a finishing child triggers the next round anyway.
    if (free_slots > static_cast<int>(claimed)) {
        if (auto wait = m_store.seconds_until_next_pending()) {
            m_delayed_timer.arm(*wait + 0.05);
        }
    }
    if (m_cfg.exit_when_idle && claimed == 0)
        m_idle_check_wanted = true;
}

void Supervisor::check_idle() {
    m_idle_check_wanted = false;
    if (m_phase != Phase::Running || !m_children.empty() || m_store.queued() > 0)
        return;
    auto pending = m_store.pending_count();
    if (pending && *pending == 0) {
        log::info("Nothing pending or running, exiting (--exit-when-idle)");
        m_phase = Phase::Stopping;
    }
}

void Supervisor::on_db_socket() {
    auto notes = m_store.take_notifications();
    if (notes.new_tasks)
        m_claim_wanted = true;
    for (const auto& id : notes.cancels) cancel_task(id);
}

void Supervisor::on_poll_timer() {
    m_poll_timer.consume();
    m_claim_wanted = true;
    m_sweep_wanted = true;
    if (!m_children.empty()) {
        for (const auto& id : m_store.cancel_requested(m_worker.id)) cancel_task(id);
    }
}

void Supervisor::on_memory_timer() {
    m_memory_timer.consume();
    if (m_children.empty()) {
        // Nothing to sample: an idle supervisor wakes only for heartbeats and polls.
        m_memory_timer.disarm();
        return;
    }
    double now = monotonic_seconds();
    auto warning = static_cast<std::uint64_t>(m_cfg.memory_warning_mb * 1048576.0);
    auto limit = static_cast<std::uint64_t>(m_cfg.memory_limit_mb * 1048576.0);
    for (auto& [pid, child] : m_children) {
        if (child->state() != ChildState::Running)
            continue;
        save_progress(*child, false);
        if (!child->cgroup())
            continue;
        auto bytes = child->cgroup()->current_bytes();
        if (!bytes)
            continue;
        child->sampled_peak = std::max(child->sampled_peak, *bytes);
        if (*bytes > warning && now - child->last_memory_warning >= kMemoryWarningEvery) {
            child->last_memory_warning = now;
            log::warn("[MEMORY] High memory usage: " + format_mb(*bytes),
                      {{"task_id", child->task().id},
                       {"pid", pid},
                       {"memory_mb", static_cast<double>(*bytes) / 1048576.0},
                       {"memory_limit_mb", m_cfg.memory_limit_mb}});
        }
        // Without a cgroup the kernel enforces nothing near the limit; we do.
        if (m_cgroups->mode() == CgroupMode::Rlimit && *bytes > limit &&
            child->action() == SupervisorAction::None) {
            log::error("[MEMORY] Memory limit exceeded, killing task",
                       {{"task_id", child->task().id},
                        {"pid", pid},
                        {"memory_mb", static_cast<double>(*bytes) / 1048576.0},
                        {"memory_limit_mb", m_cfg.memory_limit_mb}});
            child->set_action(SupervisorAction::Watchdog);
            child->signal_task(SIGKILL);
        }
    }
}

// ---- signals ------------------------------------------------------------------------

void Supervisor::on_signal() {
    for (;;) {
        signalfd_siginfo si{};
        ssize_t n = ::read(m_signalfd.get(), &si, sizeof si);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != static_cast<ssize_t>(sizeof si))
            break;
        int sig = static_cast<int>(si.ssi_signo);
        if (sig == SIGTERM || sig == SIGINT) {
            ++m_stop_signals;
            log::warn("[SIGNAL] Shutdown requested", {{"signal", signal_abbrev(sig)},
                                                      {"running", m_children.size()},
                                                      {"count", m_stop_signals}});
            if (m_stop_signals == 1) {
                begin_shutdown();
            } else {
                kill_all_children();
            }
        } else if (sig == SIGHUP) {
            log::info("[SIGNAL] SIGHUP received, nothing to reload", {{"signal", "SIGHUP"}});
        }
    }
    // Standard signals coalesce (SIGCHLD included), so always reap everything ready.
    reap_children();
}

void Supervisor::begin_shutdown() {
    if (m_phase != Phase::Running)
        return;
    m_phase = Phase::Draining;
    m_delayed_timer.disarm();
    if (m_children.empty())
        return;
    log::info("Waiting for children to finish",
              {{"running", m_children.size()}, {"shutdown_grace", m_cfg.shutdown_grace}});
    m_shutdown_timer.arm(m_cfg.shutdown_grace);
}

void Supervisor::stop_all_children() {
    m_phase = Phase::Stopping;
    for (auto& [pid, child] : m_children) {
        if (child->state() == ChildState::Running)
            stop_child(*child, SupervisorAction::Shutdown);
    }
}

void Supervisor::kill_all_children() {
    m_phase = Phase::Stopping;
    m_shutdown_timer.disarm();
    for (auto& [pid, child] : m_children) {
        if (child->state() != ChildState::Running)
            continue;
        child->set_action(SupervisorAction::Shutdown);
        child->signal_task(SIGKILL);
    }
}

void Supervisor::stop_child(ChildProcess& child, SupervisorAction why) {
    if (child.state() != ChildState::Running)
        return;
    if (child.action() != SupervisorAction::None) {
        // Already being stopped; the grace timer is running.
        return;
    }
    child.set_action(why);
    log::warn("Stopping task", {{"task_id", child.task().id},
                                {"pid", child.pid()},
                                {"reason", to_string(why)},
                                {"term_grace", m_cfg.term_grace}});
    // 1. SIGTERM the whole task; 2. after the grace, SIGKILL (child timer).
    child.signal_task(SIGTERM);
    child.timer().arm(m_cfg.term_grace);
}

void Supervisor::cancel_task(const std::string& task_id) {
    ChildProcess* child = find_task(task_id);
    if (!child)
        return;
    log::info("Cancellation requested", {{"task_id", task_id}});
    stop_child(*child, SupervisorAction::Cancel);
}

// ---- spawning -----------------------------------------------------------------------

std::vector<std::string> Supervisor::child_env(const TaskInfo& task,
                                               const std::string& work_dir) const {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        // The child holds no database credentials.
        if (kv.rfind("DATABASE_URL=", 0) == 0 || kv.rfind("PG", 0) == 0)
            continue;
        if (!m_cfg.output_dir.empty() && kv.rfind("OUTPUT_DIR=", 0) == 0)
            continue;
        if (kv.rfind("PV_EVENT_FD=", 0) == 0 || kv.rfind("PV_TASK_ID=", 0) == 0 ||
            kv.rfind("PV_WORK_DIR=", 0) == 0 || kv.rfind("PV_ATTEMPT=", 0) == 0) {
            continue;
        }
        env.emplace_back(kv);
    }
    if (!m_cfg.output_dir.empty())
        env.push_back("OUTPUT_DIR=" + m_cfg.output_dir);
    env.push_back("PV_EVENT_FD=3");
    env.push_back("PV_TASK_ID=" + task.id);
    env.push_back("PV_WORK_DIR=" + work_dir);
    env.push_back("PV_ATTEMPT=" + std::to_string(task.attempt));
    return env;
}

SpawnSpec Supervisor::make_spawn_spec(const TaskInfo& task, const std::string& work_dir,
                                      int stdin_fd, const TaskCgroup* cgroup) {
    SpawnSpec spec;
    spec.argv = m_cfg.child_argv;
    for (std::string arg :
         {std::string("--request"), work_dir + "/request.json", std::string("--work-dir"), work_dir,
          std::string("--task-id"), task.id, std::string("--event-fd"), std::string("3")}) {
        spec.argv.push_back(std::move(arg));
    }
    spec.env = child_env(task, work_dir);
    spec.work_dir = work_dir;
    spec.stdin_fd = stdin_fd;
    spec.uid = m_cfg.child_uid;
    spec.gid = m_cfg.child_gid;
    spec.cgroup = cgroup;
    return spec;
}

void Supervisor::start_task(const TaskInfo& task) {
    std::string work_dir =
        (fs::path(m_cfg.work_root) / (task.id + "-" + std::to_string(task.attempt))).string();
    std::unique_ptr<TaskCgroup> cgroup;
    SpawnedChild spawned;
    try {
        int made = ::mkdir(work_dir.c_str(), 0700);
        if (made < 0 && errno == EEXIST) {
            // Left by an earlier life of this attempt: start from an empty one.
            std::error_code ec;
            fs::remove_all(work_dir, ec);
            made = ::mkdir(work_dir.c_str(), 0700);
        }
        check_sys(made, "mkdir " + work_dir);
        if (m_cfg.child_uid) {
            check_sys(::chown(work_dir.c_str(), *m_cfg.child_uid, m_cfg.child_gid),
                      "chown " + work_dir);
        }
        std::string request_path = work_dir + "/request.json";
        write_request(request_path, task.request, m_cfg.child_uid, m_cfg.child_gid);
        UniqueFd request_fd{
            check_sys(::open(request_path.c_str(), O_RDONLY | O_CLOEXEC), "open " + request_path)};

        auto limit = static_cast<std::uint64_t>(m_cfg.memory_limit_mb * 1048576.0);
        cgroup = m_cgroups->create("task-" + task.id + "-" + std::to_string(task.attempt), limit,
                                   kPidsMax);
        spawned = spawn_child(make_spawn_spec(task, work_dir, request_fd.get(), cgroup.get()));
    } catch (const std::exception& e) {
        // Nothing was started (or fork itself failed): record it as a spawn failure.
        log::error("Cannot start task", {{"task_id", task.id},
                                         {"attempt", task.attempt},
                                         {"error_type", error_type::kSpawn},
                                         {"error_message", e.what()}});
        if (cgroup)
            cgroup->remove();
        remove_work_dir(work_dir, task.id);
        Verdict v;
        v.error_type = error_type::kSpawn;
        v.error = std::string("Cannot start ") + m_cfg.child_argv[0] + ": " + e.what();
        v.retryable = true;
        record(task, v, nlohmann::json::object(), std::nullopt, "");
        m_claim_wanted = true;
        return;
    }

    pid_t pid = spawned.pid;
    auto child = std::make_unique<ChildProcess>(task, work_dir, std::move(cgroup));
    child->attach(pid, std::move(spawned.pidfd), std::move(spawned.event_read),
                  std::move(spawned.output_read));
    ChildProcess& c = *child;
    m_children.emplace(pid, std::move(child));
    if (m_children.size() == 1)
        m_memory_timer.arm(kMemorySamplePeriod, kMemorySamplePeriod);

    m_loop.add(c.event_fd(), EPOLLIN, [this, pid](std::uint32_t) { on_child_events(pid); });
    m_loop.add(c.output_fd(), EPOLLIN, [this, pid](std::uint32_t) { on_child_output(pid); });
    m_loop.add(c.timer().fd(), EPOLLIN, [this, pid](std::uint32_t) { on_child_timer(pid); });

    if (spawned.failure) {
        c.set_spawn_failure(spawned.failure->step, spawned.failure->err);
        return;  // exits 127 at once; reaped and recorded as a spawn failure
    }
    c.timer().arm(task.timeout_seconds);
    // Written a little later: a child that is done by then never needs this write.
    m_store.enqueue(DbWrite{"attempt_started",
                            {{"task_id", task.id},
                             {"attempt", task.attempt},
                             {"worker_id", m_worker.id},
                             {"pid", pid}},
                            1},
                    kPidWriteDelay);
    log::info(
        "Task started",
        {{"task_id", task.id}, {"attempt", task.attempt}, {"pid", pid}, {"work_dir", work_dir}});
}

// ---- children -----------------------------------------------------------------------

void Supervisor::reap_children() {
    for (;;) {
        siginfo_t info{};
        // Peek first: the zombie keeps its pid (and process group) pinned meanwhile.
        int rc = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            break;  // ECHILD: nothing left
        }
        pid_t pid = info.si_pid;
        if (pid == 0)
            break;
        ChildProcess* child = find(pid);
        if (child && child->state() == ChildState::Running) {
            // The rest of the task dies with its main process.
            ::kill(-pid, SIGKILL);
        }
        int status = 0;
        rusage ru{};
        pid_t r;
        do {
            r = ::wait4(pid, &status, 0, &ru);
        } while (r < 0 && errno == EINTR);
        if (r != pid)
            continue;
        if (child) {
            on_reaped(*child, status, ru);
        } else {
            log::debug("Reaped unknown process", {{"pid", pid}, {"status", status}});
        }
    }
}

void Supervisor::on_reaped(ChildProcess& child, int status, const rusage& ru) {
    child.mark_reaped(status, ru);
    if (child.cgroup() && !child.cgroup()->empty())
        child.cgroup()->signal_all(SIGKILL);
    child.drain_deadline = monotonic_seconds() + kTeardownDeadline;
    pid_t pid = child.pid();
    check_teardown(child);
    // Still draining (stragglers, open pipes): look again every kTeardownPoll.
    if (ChildProcess* still = find(pid))
        still->timer().arm(kTeardownPoll, kTeardownPoll);
}

void Supervisor::on_child_timer(pid_t pid) {
    ChildProcess* child = find(pid);
    if (!child)
        return;
    child->timer().consume();
    if (child->state() == ChildState::Draining) {
        check_teardown(*child);
        return;
    }
    if (child->action() == SupervisorAction::None) {
        log::warn("Task timed out", {{"task_id", child->task().id},
                                     {"pid", pid},
                                     {"timeout_seconds", child->task().timeout_seconds}});
        stop_child(*child, SupervisorAction::Timeout);
        return;
    }
    log::warn("[SIGNAL] Grace period over, killing task", {{"task_id", child->task().id},
                                                           {"pid", pid},
                                                           {"signal", "SIGKILL"},
                                                           {"reason", to_string(child->action())}});
    child->signal_task(SIGKILL);
}

void Supervisor::on_child_events(pid_t pid) {
    ChildProcess* child = find(pid);
    if (!child)
        return;
    drain_events(*child);
    if (child->state() == ChildState::Draining)
        check_teardown(*child);
}

void Supervisor::on_child_output(pid_t pid) {
    ChildProcess* child = find(pid);
    if (!child)
        return;
    drain_output(*child);
    if (child->state() == ChildState::Draining)
        check_teardown(*child);
}

void Supervisor::drain_events(ChildProcess& child) {
    if (!child.event_open())
        return;
    const std::string& task_id = child.task().id;
    pid_t pid = child.pid();
    bool open = child.read_events([&](const std::optional<ChildEvent>& ev, const std::string& why) {
        if (!ev) {
            log::warn("Invalid child event ignored",
                      {{"task_id", task_id}, {"pid", pid}, {"reason", why}});
            return;
        }
        if (auto* p = std::get_if<ProgressEvent>(&*ev)) {
            child.unsaved_progress = *p;
            save_progress(child, false);
        } else if (auto* e = std::get_if<ErrorEvent>(&*ev)) {
            log::info("Child reported an error", {{"task_id", task_id},
                                                  {"pid", pid},
                                                  {"error_type", e->error_type},
                                                  {"error_message", e->message},
                                                  {"retryable", e->retryable}});
        } else {
            log::debug("Child reported a result", {{"task_id", task_id}, {"pid", pid}});
        }
    });
    if (!open) {
        m_loop.remove(child.event_fd());
        child.close_event();
    }
}

void Supervisor::drain_output(ChildProcess& child) {
    if (!child.output_open())
        return;
    if (!child.read_output()) {
        m_loop.remove(child.output_fd());
        child.close_output();
    }
}

void Supervisor::save_progress(ChildProcess& child, bool force) {
    if (!child.unsaved_progress)
        return;
    double now = monotonic_seconds();
    if (!force && now - child.last_progress_write < kProgressEvery)
        return;
    child.last_progress_write = now;
    const auto& p = *child.unsaved_progress;
    m_store.enqueue(
        DbWrite{"progress",
                {{"task_id", child.task().id},
                 {"attempt", child.task().attempt},
                 {"worker_id", m_worker.id},
                 {"percent", p.percent},
                 {"stage", p.stage.empty() ? nlohmann::json() : nlohmann::json(p.stage)}},
                1});
    child.unsaved_progress.reset();
}

void Supervisor::check_teardown(ChildProcess& child) {
    if (child.state() != ChildState::Draining)
        return;
    double now = monotonic_seconds();
    bool late = now >= child.drain_deadline;
    if (child.cgroup() && !child.cgroup()->empty()) {
        if (!late) {
            // v1 has no atomic kill-all: repeat until nothing new appears.
            child.cgroup()->signal_all(SIGKILL);
            return;
        }
        log::error("Task processes survive SIGKILL, giving up on them",
                   {{"task_id", child.task().id}, {"cgroup", child.cgroup()->path()}});
    }
    // Read what the pipes still hold; a straggler outside the cgroup may keep them open.
    drain_events(child);
    drain_output(child);
    if ((child.event_open() || child.output_open()) && !late)
        return;
    finish_child(child);
}

void Supervisor::finish_child(ChildProcess& child) {
    pid_t pid = child.pid();
    TaskInfo task = child.task();
    m_loop.remove(child.timer().fd());
    if (child.event_open()) {
        m_loop.remove(child.event_fd());
        child.close_event();
    }
    if (child.output_open()) {
        m_loop.remove(child.output_fd());
        child.close_output();
    }

    CgroupStats stats;
    if (child.cgroup()) {
        try {
            stats = child.cgroup()->stats();
        } catch (const std::exception& e) {
            log::error("Cannot read task cgroup counters",
                       {{"task_id", task.id}, {"error_message", e.what()}});
        }
    }
    DeathFacts facts = child.facts(stats, m_cfg.child_argv[0]);
    if (m_cgroups->mode() == CgroupMode::Rlimit) {
        RlimitEvidence evidence;
        evidence.limit_bytes = static_cast<std::uint64_t>(m_cfg.memory_limit_mb * 1048576.0);
        evidence.memory_error_text =
            mentions_memory_failure(child.stderr_tail()) ||
            (child.child_error() && mentions_memory_failure(child.child_error()->message));
        facts.rlimit = evidence;
    }
    Verdict verdict = classify_death(facts);

    const rusage& ru = child.usage();
    nlohmann::json metrics = {
        {"pid", pid},
        {"exit_code", verdict.exit_code ? nlohmann::json(*verdict.exit_code) : nlohmann::json()},
        {"signal", verdict.signal ? nlohmann::json(*verdict.signal) : nlohmann::json()},
        {"core_dumped", verdict.core_dumped},
        {"oom_kills", stats.oom_kills},
        {"peak_memory_bytes",
         verdict.peak_bytes ? nlohmann::json(*verdict.peak_bytes) : nlohmann::json()},
        {"cpu_user_seconds", timeval_seconds(ru.ru_utime)},
        {"cpu_sys_seconds", timeval_seconds(ru.ru_stime)},
        {"wall_seconds", child.reaped_at() - child.started_at()},
    };
    if (verdict.signal && !verdict.success) {
        log::warn("[SIGNAL] Child terminated by signal",
                  {{"task_id", task.id},
                   {"pid", pid},
                   {"signal", signal_abbrev(*verdict.signal)},
                   {"core_dumped", verdict.core_dumped},
                   {"reason", to_string(child.action())}});
    }
    std::string tail = verdict.success ? std::string() : child.stderr_tail();
    // Every process of the attempt is gone (check_teardown), so nothing can
    // publish after this; a retry starts only once the failure is recorded.
    if (!verdict.success)
        m_published.withdraw(task.id);
    record(task, verdict, metrics, child.result(), tail);

    m_ended.push_back({child.take_cgroup(), child.work_dir(), task.id});
    m_children.erase(pid);
    m_claim_wanted = true;
}

void Supervisor::remove_ended_attempts() {
    for (EndedAttempt& ended : m_ended) {
        if (ended.cgroup)
            ended.cgroup->remove();
        remove_work_dir(ended.work_dir, ended.task_id);
    }
    m_ended.clear();
}

void Supervisor::record(const TaskInfo& task, const Verdict& verdict, const nlohmann::json& metrics,
                        const std::optional<nlohmann::json>& result,
                        const std::string& stderr_tail) {
    std::string status = "completed";
    RetryDecision retry;
    if (!verdict.success) {
        retry = decide_retry(verdict.error_type, verdict.retryable, task.attempt, task.max_attempts,
                             m_retry, [this] { return unit_random(); });
        status = retry.retry                                    ? "pending"
                 : verdict.error_type == error_type::kCancelled ? "cancelled"
                                                                : "failed";
    }
    nlohmann::json args = metrics;
    args["ended_at"] = to_iso8601(std::chrono::system_clock::now());
    args["task_id"] = task.id;
    args["attempt"] = task.attempt;
    args["worker_id"] = m_worker.id;
    args["status"] = status;
    args["outcome"] = verdict.success ? std::string("completed") : verdict.error_type;
    if (!verdict.success) {
        args["error"] = sanitize_text(verdict.error);
        args["error_type"] = verdict.error_type;
        args["retry_delay"] = retry.delay_seconds;
        if (!stderr_tail.empty())
            args["stderr_tail"] = sanitize_text(stderr_tail);
    } else if (result) {
        args["result"] = result->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    m_store.enqueue(DbWrite{"finish", std::move(args), m_cfg.db_retry_attempts});

    nlohmann::json fields = {{"task_id", task.id}, {"attempt", task.attempt}, {"status", status}};
    if (metrics.contains("wall_seconds"))
        fields["wall_seconds"] = metrics["wall_seconds"];
    if (verdict.success) {
        log::info("Task completed", fields);
        return;
    }
    if (status == "cancelled") {
        log::info("Task cancelled", fields);
        return;
    }
    fields["error_type"] = verdict.error_type;
    fields["error_message"] = verdict.error;
    if (retry.retry)
        fields["retry_in_seconds"] = retry.delay_seconds;
    if (verdict.error_type == error_type::kMemoryLimit) {
        if (verdict.peak_bytes)
            fields["memory_mb"] = static_cast<double>(*verdict.peak_bytes) / 1048576.0;
        log::error("[MEMORY] Task failed: memory limit exceeded", fields);
    } else {
        log::error(retry.retry ? "Task attempt failed, requeued" : "Task failed", fields);
    }
}

}  // namespace pv
