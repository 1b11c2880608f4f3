// SPDX-License-Identifier: MIT
// bench_child: the smallest workload that speaks the child protocol
// (common/PROTOCOL.md), so that benchmarks measure the supervisor, not the work.
//   bench_child noop            result {"started_ns": CLOCK_REALTIME at start}
//   bench_child sleep DIR       writes DIR/<task-id> = "pid started_ns", then
//                               sleeps until killed (at most an hour)
//   bench_child alloc MB        touches MB MiB of memory, 4 MiB at a time, then
//                               reports a result (for the memory-limit runs)
// The supervisor's own arguments (--request ... --event-fd 3) follow and are
// ignored, except --task-id.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// One write(2): the line is far below PIPE_BUF, so it arrives whole.
static void emit(const char* line) {
    size_t len = strlen(line);
    if (write(3, line, len) != (ssize_t)len) _exit(3);
}

static const char* task_id(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (strcmp(argv[i], "--task-id") == 0) return argv[i + 1];
    }
    const char* env = getenv("PV_TASK_ID");
    return env ? env : "unknown";
}

static int run_sleep(const char* dir, long long started, const char* id) {
    char path[4096];
    char tmp[4096];
    snprintf(path, sizeof path, "%s/%s", dir, id);
    snprintf(tmp, sizeof tmp, "%s/.%s", dir, id);
    FILE* f = fopen(tmp, "w");
    if (!f) return 4;
    fprintf(f, "%d %lld\n", (int)getpid(), started);
    fclose(f);
    // rename makes the file appear complete to a watcher.
    if (rename(tmp, path) != 0) return 4;
    sleep(3600);
    emit("{\"type\":\"error\",\"error_type\":\"bench\",\"message\":\"never killed\"}\n");
    return 1;
}

static int run_alloc(long mib, long long started) {
    const size_t step = 4u << 20;
    size_t total = 0;
    while (total < (size_t)mib << 20) {
        char* p = malloc(step);
        if (!p) return 5;
        memset(p, 0xa5, step);  // touch every page so it counts as resident
        total += step;
    }
    char line[160];
    snprintf(line, sizeof line, "{\"type\":\"result\",\"started_ns\":%lld,\"allocated_mib\":%ld}\n",
             started, mib);
    emit(line);
    return 0;
}

int main(int argc, char** argv) {
    long long started = realtime_ns();
    const char* mode = argc > 1 ? argv[1] : "noop";
    if (strcmp(mode, "sleep") == 0 && argc > 2) return run_sleep(argv[2], started, task_id(argc, argv));
    if (strcmp(mode, "alloc") == 0 && argc > 2) return run_alloc(atol(argv[2]), started);
    if (strcmp(mode, "noop") != 0) {
        fprintf(stderr, "usage: bench_child noop | sleep DIR | alloc MB\n");
        return 2;
    }
    char line[96];
    snprintf(line, sizeof line, "{\"type\":\"result\",\"started_ns\":%lld}\n", started);
    emit(line);
    return 0;
}
