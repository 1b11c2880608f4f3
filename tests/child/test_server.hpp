// SPDX-License-Identifier: MIT
// Starts tests/fixtures/http_server.py on a free loopback port for one test
// and kills it afterwards.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "unique_fd.hpp"

extern char** environ;

namespace pv::test {

/// What a test caught from a failing fetch or service call.
struct Caught {
    std::string type;
    std::string message;
    bool retryable = false;
};

/// Directory of the shared test media (images/, audio/).
inline std::string media_dir() {
    const char* env = std::getenv("PV_MEDIA_DIR");
    return env && *env ? env : PV_MEDIA_DIR;
}

class TestServer {
public:
    TestServer() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe2");
        UniqueFd read_end{fds[0]};
        UniqueFd write_end{fds[1]};
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
        std::string script = std::string(PV_FIXTURES_DIR) + "/http_server.py";
        std::string media = media_dir();
        std::vector<std::string> args = {"python3", script, "--media", media};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int rc = ::posix_spawnp(&m_pid, "python3", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            throw std::runtime_error("cannot start python3");
        write_end.reset();

        std::string line;
        char c;
        while (::read(read_end.get(), &c, 1) == 1 && c != '\n') line.push_back(c);
        if (line.rfind("PORT ", 0) != 0) {
            stop();
            throw std::runtime_error("test server did not report its port: " + line);
        }
        m_port = std::stoi(line.substr(5));
    }
    ~TestServer() { stop(); }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    int port() const { return m_port; }
    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(m_port) + path;
    }

private:
    void stop() {
        if (m_pid <= 0)
            return;
        ::kill(m_pid, SIGTERM);
        int status = 0;
        ::waitpid(m_pid, &status, 0);
        m_pid = -1;
    }

    pid_t m_pid = -1;
    int m_port = 0;
};

/// Sets an environment variable for the lifetime of the object.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::string& value) : m_name(name) {
        if (const char* old = std::getenv(name))
            m_old = old;
        m_had = std::getenv(name) != nullptr;
        ::setenv(name, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (m_had) {
            ::setenv(m_name.c_str(), m_old.c_str(), 1);
        } else {
            ::unsetenv(m_name.c_str());
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    std::string m_name;
    std::string m_old;
    bool m_had = false;
};

/// A temporary directory removed with its contents at scope exit.
class TempDir {
public:
    TempDir() {
        std::string tmpl = "/tmp/pv-test-XXXXXX";
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp");
        m_path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return m_path; }

private:
    std::string m_path;
};

}  // namespace pv::test
