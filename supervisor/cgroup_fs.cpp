// SPDX-License-Identifier: MIT
// cgroupfs helpers: discovery from /proc/self, control-file I/O, pid lists,
// kill loops and directory removal with EBUSY retries.
#include "cgroup_fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cgroup.hpp"
#include "log.hpp"
#include "sys_error.hpp"
#include "unique_fd.hpp"

namespace pv::cgroup_fs {
namespace {

std::vector<std::string> split(std::string_view text, char sep) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
        std::size_t end = text.find(sep, start);
        parts.emplace_back(text.substr(start, end - start));
        if (end == std::string_view::npos)
            return parts;
        start = end + 1;
    }
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view field) {
    std::string out;
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size()) {
            int value = 0;
            auto [ptr, ec] = std::from_chars(field.data() + i + 1, field.data() + i + 4, value, 8);
            if (ec == std::errc{} && ptr == field.data() + i + 4) {
                out.push_back(static_cast<char>(value));
                i += 3;
                continue;
            }
        }
        out.push_back(field[i]);
    }
    return out;
}

struct Mount {
    std::string root;
    std::string mount_point;
    std::string fstype;
    std::vector<std::string> super_options;
};

std::vector<Mount> cgroup_mounts(std::string_view mountinfo) {
    std::vector<Mount> mounts;
    std::istringstream in{std::string(mountinfo)};
    std::string line;
    while (std::getline(in, line)) {
        std::size_t dash = line.find(" - ");
        if (dash == std::string::npos)
            continue;
        std::istringstream head(line.substr(0, dash));
        std::istringstream tail(line.substr(dash + 3));
        std::string id, parent, devno, root, mount_point, fstype, source, options;
        head >> id >> parent >> devno >> root >> mount_point;
        tail >> fstype >> source >> options;
        if (fstype != "cgroup" && fstype != "cgroup2")
            continue;
        mounts.push_back({unescape_mountinfo(root), unescape_mountinfo(mount_point), fstype,
                          split(options, ',')});
    }
    return mounts;
}

struct Membership {
    std::vector<std::string> controllers;  // empty for the unified "0::" line
    std::string path;
    bool unified = false;
};

std::vector<Membership> memberships(std::string_view proc_cgroup) {
    std::vector<Membership> out;
    std::istringstream in{std::string(proc_cgroup)};
    std::string line;
    while (std::getline(in, line)) {
        // "id:controllers:path"; the path itself may contain ':'.
        std::size_t first = line.find(':');
        std::size_t second = first == std::string::npos ? first : line.find(':', first + 1);
        if (second == std::string::npos)
            continue;
        Membership m;
        std::string id = line.substr(0, first);
        std::string controllers = line.substr(first + 1, second - first - 1);
        m.path = line.substr(second + 1);
        m.unified = id == "0" && controllers.empty();
        if (!controllers.empty())
            m.controllers = split(controllers, ',');
        out.push_back(std::move(m));
    }
    return out;
}

// Joins the mount point with the part of `path` below the mount's root, or
// nullopt if this mount does not show our cgroup (a bind mount of a sibling).
std::optional<std::string> dir_under_mount(const Mount& mount, const std::string& path) {
    std::string rel;
    if (mount.root == "/") {
        rel = path;
    } else if (path == mount.root) {
        rel = "/";
    } else if (path.starts_with(mount.root + "/")) {
        rel = path.substr(mount.root.size());
    } else {
        return std::nullopt;
    }
    if (rel == "/")
        return mount.mount_point;
    return mount.mount_point + rel;
}

std::optional<OwnCgroup> resolve(const Membership& m, const std::vector<Mount>& mounts,
                                 std::string_view fstype, std::string_view controller) {
    for (const Mount& mount : mounts) {
        if (mount.fstype != fstype)
            continue;
        if (!controller.empty() && std::find(mount.super_options.begin(), mount.super_options.end(),
                                             controller) == mount.super_options.end()) {
            continue;
        }
        if (auto dir = dir_under_mount(mount, m.path)) {
            return OwnCgroup{mount.mount_point, m.path, *dir};
        }
    }
    return std::nullopt;
}

}  // namespace

std::optional<OwnCgroup> find_own_cgroup(std::string_view proc_cgroup, std::string_view mountinfo,
                                         std::string_view controller) {
    auto mounts = cgroup_mounts(mountinfo);
    for (const Membership& m : memberships(proc_cgroup)) {
        if (controller.empty()) {
            if (m.unified)
                return resolve(m, mounts, "cgroup2", "");
            continue;
        }
        if (std::find(m.controllers.begin(), m.controllers.end(), controller) !=
            m.controllers.end()) {
            return resolve(m, mounts, "cgroup", controller);
        }
    }
    return std::nullopt;
}

std::optional<OwnCgroup> own_v1_cgroup(std::string_view controller) {
    return find_own_cgroup(read_file("/proc/self/cgroup").value_or(""),
                           read_file("/proc/self/mountinfo").value_or(""), controller);
}

std::optional<OwnCgroup> own_v2_cgroup() {
    return find_own_cgroup(read_file("/proc/self/cgroup").value_or(""),
                           read_file("/proc/self/mountinfo").value_or(""), "");
}

int join_cgroup(const char* procs_path) noexcept {
    UniqueFd fd{::open(procs_path, O_WRONLY | O_CLOEXEC)};
    if (!fd)
        return errno;
    ssize_t n = ::write(fd.get(), "0", 1);
    if (n < 0)
        return errno;
    return n == 1 ? 0 : EIO;
}

std::optional<std::string> read_file(const std::string& path, int* err) {
    UniqueFd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (!fd) {
        if (err)
            *err = errno;
        return std::nullopt;
    }
    std::string text;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (err)
                *err = errno;
            return std::nullopt;
        }
        if (n == 0)
            return text;
        text.append(buf, static_cast<std::size_t>(n));
    }
}

int write_file(const std::string& path, std::string_view value) {
    UniqueFd fd{::open(path.c_str(), O_WRONLY | O_CLOEXEC)};
    if (!fd)
        return errno;
    while (true) {
        ssize_t n = ::write(fd.get(), value.data(), value.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        return static_cast<std::size_t>(n) == value.size() ? 0 : EIO;
    }
}

void write_file_or_throw(const std::string& path, std::string_view value) {
    if (int err = write_file(path, value); err != 0) {
        throw_sys("write " + std::string(value) + " to " + path, err);
    }
}

std::optional<std::uint64_t> read_u64(const std::string& path) {
    auto text = read_file(path);
    if (!text)
        return std::nullopt;
    std::uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc{})
        return std::nullopt;
    return value;
}

std::optional<std::uint64_t> read_keyed(const std::string& path, std::string_view key) {
    auto text = read_file(path);
    if (!text)
        return std::nullopt;
    std::istringstream in(*text);
    std::string name;
    std::uint64_t value = 0;
    while (in >> name >> value) {
        if (name == key)
            return value;
    }
    return std::nullopt;
}

std::vector<pid_t> read_procs(const std::string& dir) {
    std::vector<pid_t> pids;
    auto text = read_file(dir + "/cgroup.procs");
    if (!text)
        return pids;
    std::istringstream in(*text);
    pid_t pid = 0;
    while (in >> pid) pids.push_back(pid);
    return pids;
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

int make_dir(const std::string& path) {
    return ::mkdir(path.c_str(), 0755) == 0 ? 0 : errno;
}

DirPtr open_dir(const std::string& path) {
    return DirPtr{::opendir(path.c_str()), &::closedir};
}

std::vector<std::string> list_task_dirs(const std::string& dir) {
    std::vector<std::string> names;
    DirPtr d = open_dir(dir);
    if (!d)
        return names;
    while (dirent* entry = ::readdir(d.get())) {
        std::string_view name = entry->d_name;
        if (entry->d_type == DT_DIR && name.starts_with("task-") && is_safe_component(name)) {
            names.emplace_back(name);
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

bool remove_dirs(const std::vector<std::string>& dirs) {
    // Ten tries, 20 ms apart: the kernel needs a moment after the last exit
    // before an emptied cgroup can be removed. Only EBUSY is worth a retry.
    constexpr int kTries = 10;
    constexpr auto kPause = std::chrono::milliseconds(20);
    struct Left {
        std::string dir;
        int err;
    };
    std::vector<Left> left;
    for (const std::string& dir : dirs) left.push_back({dir, EBUSY});
    for (int attempt = 0; attempt < kTries; ++attempt) {
        bool any_busy = false;
        for (Left& item : left) {
            if (item.err != EBUSY)
                continue;
            item.err = ::rmdir(item.dir.c_str()) == 0 ? 0 : errno;
            any_busy = any_busy || item.err == EBUSY;
        }
        if (!any_busy)
            break;
        if (attempt + 1 < kTries)
            std::this_thread::sleep_for(kPause);
    }
    bool all_gone = true;
    for (const Left& item : left) {
        if (item.err == 0 || item.err == ENOENT)
            continue;
        all_gone = false;
        log::warn("cgroup left behind", {{"path", item.dir}, {"error", std::strerror(item.err)}});
    }
    return all_gone;
}

bool is_safe_component(std::string_view name) {
    if (name.empty() || name == "." || name == ".." || name.size() > 200)
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

void check_task_name(const std::string& name) {
    if (!name.starts_with("task-") || !is_safe_component(name)) {
        throw std::invalid_argument("bad task cgroup name: \"" + name + "\"");
    }
}

std::uint64_t read_xattr_counter(const std::string& path, const char* name) {
    char buf[32];
    ssize_t n = ::getxattr(path.c_str(), name, buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    std::uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(buf, buf + n, value);
    // A present but unparsable value still means the attribute was set.
    return ec == std::errc{} ? value : 1;
}

void kill_until_stable(int sig, const std::function<std::vector<pid_t>()>& list_pids) {
    // A fork bomb under a pids limit is bounded; the cap only stops a livelock.
    constexpr int kMaxRounds = 1000;
    std::vector<pid_t> signalled;
    for (int round = 0; round < kMaxRounds; ++round) {
        bool any_new = false;
        for (pid_t pid : list_pids()) {
            if (std::find(signalled.begin(), signalled.end(), pid) != signalled.end())
                continue;
            ::kill(pid, sig);
            signalled.push_back(pid);
            any_new = true;
        }
        if (!any_new)
            return;
    }
}

}  // namespace pv::cgroup_fs

namespace pv {

DynmodsState favor_dynmods(bool enable) {
    DynmodsState state;
    auto mountinfo = cgroup_fs::read_file("/proc/self/mountinfo").value_or("");
    const auto mounts = cgroup_fs::cgroup_mounts(mountinfo);
    const cgroup_fs::Mount* unified = nullptr;
    for (const cgroup_fs::Mount& m : mounts) {
        if (m.fstype != "cgroup2")
            continue;
        if (!unified)
            unified = &m;
        if (std::find(m.super_options.begin(), m.super_options.end(), "favordynmods") !=
            m.super_options.end()) {
            state.on = true;
            state.mount_point = m.mount_point;
            return state;
        }
    }
    if (!unified) {
        state.error = "no cgroup2 hierarchy is mounted (cgroup v1 cannot change it on remount)";
        return state;
    }
    state.mount_point = unified->mount_point;
    if (!enable)
        return state;

    // A reconfiguration sets all of the superblock's cgroup2 flags at once.
    UniqueFd fd{::fspick(AT_FDCWD, unified->mount_point.c_str(), FSPICK_CLOEXEC)};
    auto fail = [&](const char* step) {
        state.error = std::string(step) + ": " + std::strerror(errno);
        return state;
    };
    if (!fd)
        return fail("fspick");
    for (const std::string& option : unified->super_options) {
        if (option == "rw" || option == "ro")
            continue;
        if (::fsconfig(fd.get(), FSCONFIG_SET_FLAG, option.c_str(), nullptr, 0) < 0)
            return fail(("keep option " + option).c_str());
    }
    if (::fsconfig(fd.get(), FSCONFIG_SET_FLAG, "favordynmods", nullptr, 0) < 0)
        return fail("set favordynmods");
    if (::fsconfig(fd.get(), FSCONFIG_CMD_RECONFIGURE, nullptr, nullptr, 0) < 0)
        return fail("reconfigure");
    state.on = true;
    return state;
}

}  // namespace pv
