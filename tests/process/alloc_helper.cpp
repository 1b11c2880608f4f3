// SPDX-License-Identifier: MIT
// Child program for the cgroup tests. Modes:
//   alloc <MiB>   touch MiB of heap in 1 MiB steps; exit 3 if malloc fails, else 0
//   hold <MiB>    like alloc, then sleep 60 s (for usage sampling)
//   orphan        leave a setsid'd "sleep 60" behind and exit 0
//   orphan-alloc <MiB>  leave a setsid'd "sleep 60" behind, then alloc (for oom.group)
//   straggler     leave a "sleep 60" in our own session behind and exit 0
//   forks <n>     start n "sleep 60" children; exit 4 if a fork fails, else 0
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace {

constexpr std::size_t kMiB = 1024 * 1024;

int touch_mib(long mib) {
    for (long i = 0; i < mib; ++i) {
        void* block = std::malloc(kMiB);
        if (block == nullptr)
            return 3;
        std::memset(block, 0x5a, kMiB);
        // Keep the compiler from dropping the never-read allocation.
        asm volatile("" : : "r"(block) : "memory");
    }
    return 0;
}

int leave_sleeper(bool new_session) {
    pid_t pid = ::fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        if (new_session)
            ::setsid();
        ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    return 0;
}

int start_sleepers(long count) {
    for (long i = 0; i < count; ++i) {
        pid_t pid = ::fork();
        if (pid < 0)
            return 4;
        if (pid == 0) {
            ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "alloc") == 0)
        return touch_mib(std::atol(argv[2]));
    if (argc == 3 && std::strcmp(argv[1], "hold") == 0) {
        int rc = touch_mib(std::atol(argv[2]));
        if (rc == 0)
            ::sleep(60);
        return rc;
    }
    if (argc == 2 && std::strcmp(argv[1], "orphan") == 0)
        return leave_sleeper(true);
    if (argc == 3 && std::strcmp(argv[1], "orphan-alloc") == 0) {
        int rc = leave_sleeper(true);
        return rc != 0 ? rc : touch_mib(std::atol(argv[2]));
    }
    if (argc == 3 && std::strcmp(argv[1], "forks") == 0)
        return start_sleepers(std::atol(argv[2]));
    if (argc == 2 && std::strcmp(argv[1], "straggler") == 0)
        return leave_sleeper(false);
    return 2;
}
