// SPDX-License-Identifier: MIT
#include "spawner.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "sys_error.hpp"

namespace pv {

namespace {

// Step codes written over the error pipe; the parent turns them into text.
enum ChildStep : int {
    kStepSetsid = 1,
    kStepCgroup,
    kStepFds,
    kStepUser,
    kStepParent,
    kStepChdir,
    kStepExec,
};

const char* step_name(int step) {
    switch (step) {
        case kStepSetsid:
            return "create a session for";
        case kStepCgroup:
            return "join the task cgroup for";
        case kStepFds:
            return "set up descriptors for";
        case kStepUser:
            return "switch user for";
        case kStepParent:
            return "start (supervisor gone) for";
        case kStepChdir:
            return "enter the work directory for";
        default:
            return "execute";
    }
}

struct ChildReport {
    int step;
    int err;
};

[[noreturn]] void child_fail(int report_fd, int step, int err) noexcept {
    ChildReport report{step, err};
    ssize_t rc;
    do {
        rc = ::write(report_fd, &report, sizeof report);
    } while (rc < 0 && errno == EINTR);
    ::_exit(127);
}

/// Moves `fd` above the target range so dup2 onto 0..3 never clobbers a source.
int lift_fd(int fd) noexcept {
    return ::fcntl(fd, F_DUPFD, 16);
}

/// Runs in the child between clone and exec, on memory shared with the supervisor:
/// async-signal-safe calls only, and nothing written outside its own stack.
[[noreturn]] void run_child(const SpawnSpec& spec, pid_t parent, int report_fd, int event_fd,
                            int output_fd, char* const* argv, char* const* envp) noexcept {
    if (::setsid() < 0)
        child_fail(report_fd, kStepSetsid, errno);

    // SIG_IGN survives exec and the blocked mask survives both fork and exec.
    for (int sig = 1; sig < NSIG; ++sig) {
        struct sigaction sa {};
        sa.sa_handler = SIG_DFL;
        ::sigaction(sig, &sa, nullptr);
    }
    sigset_t empty;
    ::sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);

    // Join the cgroup while still privileged; limits then apply to everything below.
    if (spec.cgroup != nullptr) {
        int err = spec.cgroup->join_from_child();
        if (err != 0)
            child_fail(report_fd, kStepCgroup, err);
    }

    // The supervisor may run with a lowered OOM score; the task must not inherit it.
    int oom = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        (void)!::write(oom, "0", 1);
        ::close(oom);
    }

    int in = lift_fd(spec.stdin_fd);
    int ev = lift_fd(event_fd);
    int out = lift_fd(output_fd);
    int rep = ::fcntl(report_fd, F_DUPFD_CLOEXEC, 16);
    if (in < 0 || ev < 0 || out < 0 || rep < 0)
        child_fail(report_fd, kStepFds, errno);
    report_fd = rep;
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0 || ::dup2(ev, 3) < 0) {
        child_fail(report_fd, kStepFds, errno);
    }
    // Close everything from 4 up except the report pipe (close-on-exec).
    if (report_fd > 4)
        ::close_range(4, static_cast<unsigned>(report_fd) - 1, 0);
    ::close_range(static_cast<unsigned>(report_fd) + 1, ~0U, 0);

    // Raw system calls: glibc's wrappers would try to switch the ids of the
    // threads of the memory we share with the supervisor.
    if (spec.uid) {
        if (::syscall(SYS_setgroups, 0, nullptr) < 0 || ::syscall(SYS_setgid, spec.gid) < 0 ||
            ::syscall(SYS_setuid, *spec.uid) < 0) {
            child_fail(report_fd, kStepUser, errno);
        }
    }

    // After the credential change: changing ids clears the parent death signal.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
        child_fail(report_fd, kStepParent, ESRCH);

    if (::chdir(spec.work_dir.c_str()) < 0)
        child_fail(report_fd, kStepChdir, errno);
    ::execve(argv[0], argv, envp);
    child_fail(report_fd, kStepExec, errno);
}

struct ChildArgs {
    const SpawnSpec* spec;
    pid_t parent;
    int report_fd;
    int event_fd;
    int output_fd;
    char* const* argv;
    char* const* envp;
};

int child_entry(void* raw) {
    const auto* a = static_cast<const ChildArgs*>(raw);
    run_child(*a->spec, a->parent, a->report_fd, a->event_fd, a->output_fd, a->argv, a->envp);
}

// The child's stack until it execs. One is enough: CLONE_VFORK holds the
// (single-threaded) supervisor until the child has exec'd or exited.
constexpr std::size_t kChildStackSize = 256 * 1024;
alignas(64) unsigned char g_child_stack[kChildStackSize];

// Limitation: the supervisor's one thread waits here until the child has joined
// its cgroups and exec'd (about 0.25 ms per no-op task), and for one database
// statement per task, so 2 slots dispatch a few hundred no-op tasks/s on 2
// cores (386 in the last benchmark), not 1,000.

/// Starts run_child in a process that shares our memory until it execs (like
/// posix_spawn), so no page tables are copied: a fork of the supervisor costs
/// more than the rest of a task's start. Every signal is blocked meanwhile, so
/// none of our handlers can run on the shared memory before the child resets them.
pid_t clone_child(ChildArgs& args) {
    sigset_t all, saved;
    ::sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &saved);
    pid_t pid = ::clone(child_entry, g_child_stack + kChildStackSize,
                        CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
    int err = errno;
    ::sigprocmask(SIG_SETMASK, &saved, nullptr);
    errno = err;
    return pid;
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

UniqueFd make_pipe_end(int (&fds)[2], UniqueFd& write_end) {
    check_sys(::pipe2(fds, O_CLOEXEC), "pipe2");
    write_end.reset(fds[1]);
    return UniqueFd{fds[0]};
}

}  // namespace

SpawnedChild spawn_child(const SpawnSpec& spec) {
    if (spec.argv.empty())
        throw std::invalid_argument("spawn_child: empty argv");
    std::vector<char*> argv = c_strings(spec.argv);
    std::vector<char*> envp = c_strings(spec.env);

    int fds[2];
    UniqueFd event_write, output_write, report_write;
    SpawnedChild child;
    child.event_read = make_pipe_end(fds, event_write);
    child.output_read = make_pipe_end(fds, output_write);
    UniqueFd report_read = make_pipe_end(fds, report_write);
    for (int fd : {child.event_read.get(), child.output_read.get()}) {
        check_sys(::fcntl(fd, F_SETFL, O_NONBLOCK), "fcntl O_NONBLOCK");
    }

    ChildArgs args{&spec,          ::getpid(),  report_write.get(), event_write.get(),
                   output_write.get(), argv.data(), envp.data()};
    pid_t pid = clone_child(args);
    if (pid < 0)
        throw_sys("clone");
    child.pid = pid;
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
        child.pidfd.reset(pidfd);  // pidfd_open sets close-on-exec itself
    }

    // Our copies of the write ends must go, or EOF never arrives.
    event_write.reset();
    output_write.reset();
    report_write.reset();

    // The child has exec'd or exited by now (CLONE_VFORK): EOF means exec
    // succeeded, a report means the child failed before it.
    ChildReport report{};
    ssize_t n;
    do {
        n = ::read(report_read.get(), &report, sizeof report);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof report)) {
        child.failure = SpawnFailure{step_name(report.step), report.err};
    }
    return child;
}

}  // namespace pv
