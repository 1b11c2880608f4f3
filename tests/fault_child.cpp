// SPDX-License-Identifier: MIT
// fault_child: a workload that speaks the child protocol (common/PROTOCOL.md) and
// misbehaves on request, so tests can prove how the supervisor records each death.
// The request's "fault" field picks the behaviour; other fields are its parameters.
// `fault_child --help` lists them.

#include "events.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using nlohmann::json;

constexpr std::size_t kMiB = 1024 * 1024;

constexpr const char* kUsage =
    R"(usage: fault_child [--request FILE] [--work-dir DIR] [--task-id ID]
                   [--event-fd N] [--marker ANY] [--renderer PATH]
Reads the request JSON from --request FILE (or stdin) and behaves as its "fault" says:
  succeed              progress events, then a result          steps, step_ms, output
  sleep_then_succeed   sleep, then succeed                     seconds
  slow_progress        one progress event per interval         steps, interval
  exit                 exit with a code (after an error event  code, error_type, message,
                       when error_type is given)               retryable
  error                error event, then exit                  error_type, message,
                                                               retryable, code (1)
  error_then_exit0     error event, then exit 0                error_type, message
  exit0_no_result      exit 0 without a result
  result_then_exit     result event, then exit non-zero        code (1)
  result_then_sigsegv  result event, then SIGSEGV
  publish_then_sigkill write OUTPUT_DIR/<task id>.mp4 and .jpg
                       as the renderer publishes, then SIGKILL
  sigsegv              null-pointer write (method "raise": raise(SIGSEGV))
  abort                std::abort()
  sigkill              raise(SIGKILL)
  signal               raise a signal by number                signo
  alloc                allocate and touch memory 1 MiB a step  mb, step_mb, hold_seconds,
                       until done or OOM-killed                step_ms
  alloc_helper         fork a helper that runs "alloc"; when   mb, step_mb
                       the helper dies, report an error and
                       exit 1 (the OOM victim is not the main process)
  grandchild           fork a setsid'd grandchild that sleeps  then (succeed|exit|hang),
                       forever, then finish                    code, pid_file, close_fds,
                                                               setsid (false: own process
                                                               group, same session)
  spawn_helpers        fork helpers that sleep forever (until  count (100), then
                       fork fails), then finish                (succeed|exit|hang)
  progress_flood       many progress events, then succeed      count (100000)
  hang                 sleep forever
  ignore_sigterm       SIG_IGN SIGTERM (and SIGINT), then hang
  stderr_flood         write bytes to stderr, then succeed     bytes (10 MB), stream,
                       (or exit with code when code is set)    code
  flaky                retryable error event and exit 1 while  fail_attempts (1),
                       PV_ATTEMPT <= fail_attempts, then       error_type
                       succeed
  bad_events           invalid and overlong event lines, then succeed
  inspect              succeed; the result describes the process (fds, signal mask,
                       ignored signals, session, uid, cwd, cgroups, PV_* environment)
  render               exec the real renderer (--renderer PATH) with the same --request,
                       --work-dir, --task-id and --event-fd; stdin and the event fd
                       are passed on unchanged, the rest of the request is a real one
Every fault first sends progress(1, "start") unless "quiet" is true.
"on_attempt": {"N": "fault"} picks another fault when PV_ATTEMPT is N.
Extra --marker arguments are ignored; tests use them to find their processes.
The renderer takes no --marker: "render" exports it as FAULT_CHILD_MARKER instead.
)";

struct Args {
    std::string request_path;
    std::string work_dir;
    std::string task_id;
    std::string marker;
    std::string renderer;
    int event_fd = -1;
};

Args parse_args(int argc, char** argv) {
    Args args;
    if (const char* env = std::getenv("PV_EVENT_FD"); env && *env)
        args.event_fd = std::atoi(env);
    if (const char* env = std::getenv("PV_WORK_DIR"); env)
        args.work_dir = env;
    if (const char* env = std::getenv("PV_TASK_ID"); env)
        args.task_id = env;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "fault_child: " << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--request") {
            args.request_path = value();
        } else if (a == "--work-dir") {
            args.work_dir = value();
        } else if (a == "--task-id") {
            args.task_id = value();
        } else if (a == "--event-fd") {
            args.event_fd = std::atoi(value().c_str());
        } else if (a == "--marker") {
            args.marker = value();
        } else if (a == "--renderer") {
            args.renderer = value();
        } else if (a == "--help" || a == "-h") {
            std::cout << kUsage;
            std::exit(0);
        } else {
            std::cerr << "fault_child: ignoring unknown argument " << a << "\n";
        }
    }
    return args;
}

std::string read_all(std::istream& in) {
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return {};
    return read_all(in);
}

double num(const json& req, const char* key, double fallback) {
    auto it = req.find(key);
    return it != req.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string str(const json& req, const char* key, const std::string& fallback) {
    auto it = req.find(key);
    return it != req.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool flag(const json& req, const char* key, bool fallback) {
    auto it = req.find(key);
    return it != req.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

void sleep_seconds(double seconds) {
    if (seconds > 0)
        std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

[[noreturn]] void hang_forever() {
    for (;;) ::pause();
}

// Writes all of `data` to `fd`, retrying short writes; returns false on error.
bool write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

// Reads stdin until EOF, giving up after `seconds` in case the writer keeps
// its end open.
std::string read_stdin(double seconds) {
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    char buf[4096];
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        pollfd pfd{0, POLLIN, 0};
        int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    return text;
}

class FaultChild {
public:
    FaultChild(Args args, json request)
        : m_args(std::move(args)), m_req(std::move(request)), m_events(m_args.event_fd) {}

    int run() {
        const std::string fault = chosen_fault();
        const std::map<std::string, std::function<int()>> table{
            {"succeed", [&] { return succeed(); }},
            {"sleep_then_succeed", [&] { return sleep_then_succeed(); }},
            {"slow_progress", [&] { return slow_progress(); }},
            {"exit", [&] { return exit_code(); }},
            {"error", [&] { return error(); }},
            {"error_then_exit0", [&] { return error_then_exit0(); }},
            {"exit0_no_result", [&] { return 0; }},
            {"result_then_exit", [&] { return result_then_exit(); }},
            {"result_then_sigsegv", [&] { return result_then_sigsegv(); }},
            {"publish_then_sigkill", [&] { return publish_then_sigkill(); }},
            {"sigsegv", [&] { return sigsegv(); }},
            {"abort", [&]() -> int { std::abort(); }},
            {"sigkill", [&] { return raise_signal(SIGKILL); }},
            {"signal", [&] { return raise_signal(static_cast<int>(num(m_req, "signo", 15))); }},
            {"alloc", [&] { return alloc(); }},
            {"grandchild", [&] { return grandchild(); }},
            {"alloc_helper", [&] { return alloc_helper(); }},
            {"spawn_helpers", [&] { return spawn_helpers(); }},
            {"progress_flood", [&] { return progress_flood(); }},
            {"hang", [&]() -> int { hang_forever(); }},
            {"ignore_sigterm", [&] { return ignore_sigterm(); }},
            {"stderr_flood", [&] { return stderr_flood(); }},
            {"bad_events", [&] { return bad_events(); }},
            {"flaky", [&] { return flaky(); }},
            {"inspect", [&] { return inspect(); }},
            {"render", [&] { return exec_renderer(); }},
        };
        auto it = table.find(fault);
        if (it == table.end()) {
            m_events.error("invalid_request", "fault_child: unknown fault \"" + fault + "\"",
                           false);
            return 2;
        }
        if (!flag(m_req, "quiet", false))
            m_events.progress(1, "start");
        return it->second();
    }

private:
    // "fault", unless "on_attempt" names another one for this PV_ATTEMPT, e.g.
    // {"fault": "succeed", "on_attempt": {"1": "hang"}}.
    std::string chosen_fault() const {
        std::string fault = str(m_req, "fault", "succeed");
        auto it = m_req.find("on_attempt");
        const char* attempt = std::getenv("PV_ATTEMPT");
        if (it != m_req.end() && it->is_object() && attempt) {
            fault = str(*it, attempt, fault);
        }
        return fault;
    }

    json result_body(json extra = json::object()) const {
        json body = {
            {"output", str(m_req, "output", m_args.work_dir + "/output.mp4")},
            {"duration", 1.0},
            {"fault", chosen_fault()},
            {"pid", ::getpid()},
        };
        body.update(extra);
        return body;
    }

    int succeed() {
        const int steps = static_cast<int>(num(m_req, "steps", 3));
        const double step_seconds = num(m_req, "step_ms", 20) / 1000.0;
        for (int i = 1; i <= steps; ++i) {
            sleep_seconds(step_seconds);
            m_events.progress(100.0 * i / (steps + 1), "render");
        }
        m_events.result(result_body());
        return 0;
    }

    int sleep_then_succeed() {
        const double seconds = num(m_req, "seconds", 1);
        sleep_seconds(seconds / 2);
        m_events.progress(50, "render");
        sleep_seconds(seconds / 2);
        m_events.result(result_body({{"slept", seconds}}));
        return 0;
    }

    int slow_progress() {
        const int steps = static_cast<int>(num(m_req, "steps", 5));
        const double interval = num(m_req, "interval", 0.5);
        for (int i = 1; i <= steps; ++i) {
            sleep_seconds(interval);
            m_events.progress(100.0 * i / steps, "step-" + std::to_string(i));
        }
        m_events.result(result_body());
        return 0;
    }

    void maybe_error_event() {
        if (!m_req.contains("error_type"))
            return;
        m_events.error(str(m_req, "error_type", "internal"),
                       str(m_req, "message", "fault_child: injected failure"),
                       flag(m_req, "retryable", false));
    }

    int exit_code() {
        maybe_error_event();
        return static_cast<int>(num(m_req, "code", 1));
    }

    int error() {
        m_events.error(str(m_req, "error_type", "internal"),
                       str(m_req, "message", "fault_child: injected error"),
                       flag(m_req, "retryable", false));
        return static_cast<int>(num(m_req, "code", 1));
    }

    int error_then_exit0() {
        m_events.error(str(m_req, "error_type", "internal"),
                       str(m_req, "message", "fault_child: error reported, then exit 0"),
                       flag(m_req, "retryable", false));
        return 0;
    }

    int result_then_exit() {
        m_events.result(result_body());
        return static_cast<int>(num(m_req, "code", 1));
    }

    int result_then_sigsegv() {
        m_events.result(result_body());
        return sigsegv();
    }

    // The renderer's publish step (child/output.cpp) followed by a death before
    // its result event: what a kill at the worst moment leaves behind.
    int publish_then_sigkill() {
        const char* dir = std::getenv("OUTPUT_DIR");
        if (!dir || !*dir || m_args.task_id.empty()) {
            std::cerr << "fault_child: publish_then_sigkill needs OUTPUT_DIR and a task id\n";
            return 2;
        }
        for (const char* suffix : {".jpg", ".mp4"}) {
            std::ofstream(std::string(dir) + "/" + m_args.task_id + suffix) << "published\n";
        }
        return raise_signal(SIGKILL);
    }

    int sigsegv() {
        if (str(m_req, "method", "null") == "raise")
            return raise_signal(SIGSEGV);
        // The address comes from a volatile so the compiler cannot see a null
        // store and replace it with a trap instruction (SIGILL).
        static volatile std::uintptr_t address = 0;
        *reinterpret_cast<volatile int*>(address) = 42;
        return raise_signal(SIGSEGV);
    }

    int raise_signal(int signo) {
        // Default disposition, unblocked: the signal must kill us, not be caught.
        ::signal(signo, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, signo);
        ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
        ::raise(signo);
        // Only reached for signals whose default action is to ignore or stop.
        return 0;
    }

    int alloc() {
        const double limit_mb = num(m_req, "mb", 1 << 20);
        const std::size_t step = static_cast<std::size_t>(num(m_req, "step_mb", 1)) * kMiB;
        const double step_seconds = num(m_req, "step_ms", 0) / 1000.0;
        std::vector<void*> blocks;
        std::size_t total = 0;
        while (static_cast<double>(total) < limit_mb * kMiB) {
            // mmap rather than malloc: nothing caches the pages, and every page
            // is written so it is charged to the cgroup at once.
            void* p =
                ::mmap(nullptr, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                m_events.error(
                    "internal",
                    "fault_child: mmap failed after " + std::to_string(total / kMiB) + " MiB",
                    false);
                return 1;
            }
            std::memset(p, 0x5a, step);
            blocks.push_back(p);
            total += step;
            if ((total / kMiB) % 16 == 0) {
                m_events.progress(std::fmin(99.0, 100.0 * total / (limit_mb * kMiB)), "alloc");
            }
            sleep_seconds(step_seconds);
        }
        sleep_seconds(num(m_req, "hold_seconds", 0));
        m_events.result(result_body({{"allocated_mb", total / kMiB}}));
        return 0;
    }

    int spawn_helpers() {
        const int count = static_cast<int>(num(m_req, "count", 100));
        int started = 0;
        for (; started < count; ++started) {
            pid_t pid = ::fork();
            if (pid < 0)
                break;  // e.g. the task's pids limit
            if (pid == 0) {
                for (;;) ::pause();
            }
        }
        m_events.progress(50, "helpers");
        const std::string then = str(m_req, "then", "succeed");
        if (then == "hang")
            hang_forever();
        if (then == "exit")
            return static_cast<int>(num(m_req, "code", 1));
        m_events.result(result_body({{"helpers", started}}));
        return 0;
    }

    int progress_flood() {
        const int count = static_cast<int>(num(m_req, "count", 100000));
        for (int i = 0; i < count; ++i) m_events.progress(100.0 * i / count, "flood");
        m_events.result(result_body({{"progress_events", count}}));
        return 0;
    }

    int alloc_helper() {
        pid_t pid = ::fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            // The helper must not speak for the task: its events would be the
            // main process's.
            m_events = pv::EventWriter(-1);
            ::_exit(alloc());
        }
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        std::string how = WIFSIGNALED(status)
                              ? "killed by signal " + std::to_string(WTERMSIG(status))
                              : "exited with " + std::to_string(WEXITSTATUS(status));
        m_events.error("internal", "fault_child: helper " + how, false);
        return 1;
    }

    int grandchild() {
        const std::string pid_file = str(m_req, "pid_file", "");
        const bool close_fds = flag(m_req, "close_fds", false);
        const bool stay_in_session = !flag(m_req, "setsid", true);
        int ready[2];
        if (::pipe2(ready, O_CLOEXEC) != 0)
            return 1;
        pid_t pid = ::fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            // The grandchild leaves the task's session and, unless asked to close
            // them, keeps the event pipe and stdio open, as a careless helper would.
            ::close(ready[0]);
            if (stay_in_session)
                ::setpgid(0, 0);
            else
                ::setsid();
            ::signal(SIGTERM, SIG_DFL);
            ::signal(SIGHUP, SIG_IGN);
            if (close_fds) {
                int devnull = ::open("/dev/null", O_RDWR);
                ::dup2(devnull, 0);
                ::dup2(devnull, 1);
                ::dup2(devnull, 2);
                for (int fd = 3; fd < 1024; ++fd) {
                    if (fd != ready[1])
                        ::close(fd);
                }
            }
            if (!pid_file.empty()) {
                std::string tmp = pid_file + ".tmp";
                std::ofstream(tmp) << ::getpid() << "\n";
                std::rename(tmp.c_str(), pid_file.c_str());
            }
            ::write(ready[1], "r", 1);
            ::close(ready[1]);
            hang_forever();
        }
        ::close(ready[1]);
        char c;
        while (::read(ready[0], &c, 1) < 0 && errno == EINTR) {
        }
        ::close(ready[0]);
        m_events.progress(50, "grandchild");

        const std::string then = str(m_req, "then", "succeed");
        if (then == "hang")
            hang_forever();
        if (then == "exit")
            return static_cast<int>(num(m_req, "code", 1));
        m_events.result(result_body({{"grandchild_pid", pid}}));
        return 0;
    }

    int ignore_sigterm() {
        ::signal(SIGTERM, SIG_IGN);
        ::signal(SIGINT, SIG_IGN);
        ::signal(SIGHUP, SIG_IGN);
        m_events.progress(5, "ignoring-sigterm");
        hang_forever();
    }

    int stderr_flood() {
        const auto bytes = static_cast<std::size_t>(num(m_req, "bytes", 10.0 * 1000 * 1000));
        const int fd = str(m_req, "stream", "stderr") == "stdout" ? 1 : 2;
        std::string chunk(64 * 1024, 'x');
        for (std::size_t i = 0; i < chunk.size(); i += 100) chunk[i] = '\n';
        auto start = std::chrono::steady_clock::now();
        std::size_t written = 0;
        while (written < bytes) {
            std::size_t n = std::min(chunk.size(), bytes - written);
            if (!write_all(fd, chunk.data(), n)) {
                m_events.error(
                    "io", std::string("fault_child: flood write failed: ") + std::strerror(errno),
                    false);
                return 1;
            }
            written += n;
        }
        const std::string tail = "\nfault_child: flood done\n";
        write_all(fd, tail.data(), tail.size());
        std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        if (m_req.contains("code"))
            return static_cast<int>(num(m_req, "code", 1));
        m_events.result(result_body({{"flood_bytes", written}, {"flood_seconds", took.count()}}));
        return 0;
    }

    int flaky() {
        const char* env = std::getenv("PV_ATTEMPT");
        const int attempt = env ? std::atoi(env) : 1;
        if (attempt <= static_cast<int>(num(m_req, "fail_attempts", 1))) {
            m_events.error(str(m_req, "error_type", "asset"),
                           "fault_child: flaky failure on attempt " + std::to_string(attempt),
                           true);
            return 1;
        }
        m_events.result(result_body({{"attempt", attempt}}));
        return 0;
    }

    int bad_events() {
        auto raw = [&](const std::string& line) {
            if (m_args.event_fd >= 0)
                write_all(m_args.event_fd, line.data(), line.size());
        };
        raw("this is not json\n");
        raw("[1,2,3]\n");
        raw("{\"type\":\"progress\"}\n");
        raw("{\"type\":\"mystery\",\"percent\":3}\n");
        raw("{\"type\":\"error\",\"message\":\"no error_type\"}\n");
        // Longer than the protocol's 1 MiB line limit: must be skipped whole.
        std::string overlong = "{\"type\":\"result\",\"output\":\"";
        overlong.append(pv::LineSplitter::kMaxLine + 4096, 'y');
        overlong += "\"}\n";
        raw(overlong);
        m_events.progress(60, "after-garbage");
        m_events.result(result_body({{"survived", "bad_events"}}));
        return 0;
    }

    int inspect() {
        json fds = json::array();
        for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
            int fd = std::atoi(entry.path().filename().c_str());
            std::error_code ec;
            auto target = std::filesystem::read_symlink(entry.path(), ec);
            fds.push_back({{"fd", fd}, {"target", ec ? "" : target.string()}});
        }
        sigset_t blocked;
        ::sigprocmask(SIG_BLOCK, nullptr, &blocked);
        json blocked_list = json::array();
        json ignored_list = json::array();
        for (int s = 1; s < NSIG; ++s) {
            if (s == SIGKILL || s == SIGSTOP)
                continue;
            if (sigismember(&blocked, s) == 1)
                blocked_list.push_back(s);
            struct sigaction sa {};
            if (::sigaction(s, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) {
                ignored_list.push_back(s);
            }
        }
        json env = json::object();
        for (char** e = environ; *e; ++e) {
            std::string_view kv = *e;
            if (kv.starts_with("PV_") || kv.starts_with("DATABASE_URL") || kv.starts_with("PG")) {
                auto eq = kv.find('=');
                env[std::string(kv.substr(0, eq))] =
                    eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
            }
        }
        std::error_code ec;
        auto cwd = std::filesystem::current_path(ec);
        std::string oom_score_adj = read_file("/proc/self/oom_score_adj");
        while (!oom_score_adj.empty() && oom_score_adj.back() == '\n') oom_score_adj.pop_back();
        const std::string stdin_text = read_stdin(2.0);
        json body = result_body({
            {"fds", fds},
            {"blocked_signals", blocked_list},
            {"ignored_signals", ignored_list},
            {"pid", ::getpid()},
            {"ppid", ::getppid()},
            {"sid", ::getsid(0)},
            {"pgid", ::getpgid(0)},
            {"uid", ::getuid()},
            {"gid", ::getgid()},
            {"cwd", ec ? "" : cwd.string()},
            {"work_dir_arg", m_args.work_dir},
            {"task_id_arg", m_args.task_id},
            {"event_fd_arg", m_args.event_fd},
            {"request_file", m_args.request_path},
            {"cgroup", read_file("/proc/self/cgroup")},
            {"oom_score_adj", oom_score_adj},
            {"env", env},
            {"stdin_bytes", stdin_text.size()},
            {"stdin_matches_request",
             !m_args.request_path.empty() && stdin_text == read_file(m_args.request_path)},
        });
        m_events.result(body);
        return 0;
    }

    // Becomes the renderer: same process, so the supervisor sees the renderer's
    // own exit, signal and memory. fd 3 must survive the exec; stdin is untouched
    // (the request was read from --request).
    int exec_renderer() {
        if (m_args.renderer.empty() || m_args.request_path.empty()) {
            m_events.error("invalid_request", "fault_child: render needs --renderer and --request",
                           false);
            return 2;
        }
        std::vector<std::string> args = {m_args.renderer, "--request", m_args.request_path};
        if (!m_args.work_dir.empty())
            args.insert(args.end(), {"--work-dir", m_args.work_dir});
        if (!m_args.task_id.empty())
            args.insert(args.end(), {"--task-id", m_args.task_id});
        if (m_args.event_fd >= 0) {
            args.insert(args.end(), {"--event-fd", std::to_string(m_args.event_fd)});
            const int flags = ::fcntl(m_args.event_fd, F_GETFD);
            if (flags >= 0)
                ::fcntl(m_args.event_fd, F_SETFD, flags & ~FD_CLOEXEC);
        }
        if (!m_args.marker.empty())
            ::setenv("FAULT_CHILD_MARKER", m_args.marker.c_str(), 1);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        m_events.error("internal",
                       "fault_child: cannot exec " + m_args.renderer + ": " + std::strerror(errno),
                       false);
        return 127;
    }

    Args m_args;
    json m_req;
    pv::EventWriter m_events;
};

}  // namespace

int main(int argc, char** argv) {
    Args args = parse_args(argc, argv);
    pv::EventWriter events(args.event_fd);

    std::string text;
    if (!args.request_path.empty()) {
        std::ifstream in(args.request_path, std::ios::binary);
        if (!in) {
            events.error("invalid_request",
                         "fault_child: cannot read request file " + args.request_path, false);
            return 2;
        }
        text = read_all(in);
    } else {
        text = read_all(std::cin);
    }
    json request = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded() || !request.is_object()) {
        events.error("invalid_request", "fault_child: request is not a JSON object", false);
        return 2;
    }
    try {
        return FaultChild(std::move(args), std::move(request)).run();
    } catch (const std::exception& e) {
        events.error("internal", std::string("fault_child: ") + e.what(), false);
        return 1;
    }
}
