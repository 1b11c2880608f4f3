// SPDX-License-Identifier: MIT
#include "journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "log.hpp"
#include "sys_error.hpp"

namespace pv {

namespace {

using nlohmann::json;

constexpr std::array<std::uint32_t, 256> make_crc_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}

constexpr auto kCrcTable = make_crc_table();

void fsync_dir(const std::filesystem::path& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd)
        throw_sys("open directory " + dir.string());
    check_sys(::fsync(fd.get()), "fsync directory " + dir.string());
}

void write_all(int fd, std::string_view data, const std::string& what) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_sys(what);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

std::string format_line(const json& entry) {
    // Invalid UTF-8 (from a child's stderr, say) must not make the append throw.
    std::string body = entry.dump(-1, ' ', false, json::error_handler_t::replace);
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "%08x ", crc32(body));
    return prefix + body + "\n";
}

// Parses one line (without its newline); nullopt when torn or corrupt.
std::optional<json> parse_line(std::string_view line) {
    if (line.size() < 10 || line[8] != ' ')
        return std::nullopt;
    std::uint32_t stored = 0;
    for (char c : line.substr(0, 8)) {
        int v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else
            return std::nullopt;
        stored = stored << 4 | static_cast<std::uint32_t>(v);
    }
    std::string_view body = line.substr(9);
    if (crc32(body) != stored)
        return std::nullopt;
    auto entry = json::parse(body, nullptr, false);
    if (entry.is_discarded() || !entry.is_object())
        return std::nullopt;
    return entry;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw_sys("open journal " + path.string());
    std::ostringstream data;
    data << in.rdbuf();
    return data.str();
}

std::uint64_t seq_of(const json& entry) {
    auto it = entry.find("seq");
    if (it == entry.end() || !it->is_number_unsigned())
        return 0;
    return it->get<std::uint64_t>();
}

json log_fields(const json& entry) {
    json f = json::object();
    for (const char* key : {"seq", "kind", "task_id", "attempt", "worker_id", "status", "outcome",
                            "error_type", "error"}) {
        if (auto it = entry.find(key); it != entry.end())
            f[key] = *it;
    }
    return f;
}

}  // namespace

std::uint32_t crc32(std::string_view data) {
    std::uint32_t c = 0xFFFFFFFFu;
    for (unsigned char byte : data) c = kCrcTable[(c ^ byte) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

Journal::Journal(std::filesystem::path path) : m_path(std::move(path)) {
    auto dir = m_path.parent_path();
    if (dir.empty())
        dir = ".";
    std::filesystem::create_directories(dir);

    auto lock_path = m_path;
    lock_path += ".lock";
    m_lock.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!m_lock)
        throw_sys("open " + lock_path.string());
    if (::flock(m_lock.get(), LOCK_EX | LOCK_NB) < 0) {
        throw_sys("journal " + m_path.string() + " is in use by another process");
    }

    bool existed = std::filesystem::exists(m_path);
    open_file();
    if (!existed)
        fsync_dir(dir);

    // A crash mid-append leaves a line without its newline; cut it off so the
    // next append starts on a fresh line.
    std::string data = read_file(m_path);
    auto keep = data.rfind('\n');
    std::size_t good = keep == std::string::npos ? 0 : keep + 1;
    if (good != data.size()) {
        log::warn("Journal torn tail cut off",
                  {{"path", m_path.string()}, {"bytes", data.size() - good}});
        check_sys(::ftruncate(m_fd.get(), static_cast<off_t>(good)), "truncate journal");
        check_sys(::fsync(m_fd.get()), "fsync journal");
    }
    auto existing = entries();
    m_count = existing.size();
    for (const auto& e : existing) m_next_seq = std::max(m_next_seq, seq_of(e) + 1);
}

std::filesystem::path Journal::path_for(const std::filesystem::path& state_dir,
                                        std::string_view instance) {
    return state_dir / ("journal-" + std::string(instance) + ".jsonl");
}

void Journal::open_file() {
    m_fd.reset(::open(m_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
    if (!m_fd)
        throw_sys("open journal " + m_path.string());
}

std::uint64_t Journal::append(json entry) {
    if (!entry.is_object())
        throw std::invalid_argument("journal entry must be a JSON object");
    entry["seq"] = m_next_seq;
    if (!entry.contains("journaled_at")) {
        entry["journaled_at"] = to_iso8601(std::chrono::system_clock::now());
    }
    std::string line = format_line(entry);

    struct stat st {};
    check_sys(::fstat(m_fd.get(), &st), "fstat journal");
    try {
        write_all(m_fd.get(), line, "append to journal " + m_path.string());
        check_sys(::fsync(m_fd.get()), "fsync journal " + m_path.string());
    } catch (const std::system_error&) {
        // Leave no partial line behind (ENOSPC, EIO); the caller still holds the entry.
        if (::ftruncate(m_fd.get(), st.st_size) == 0)
            ::fsync(m_fd.get());
        throw;
    }
    ++m_count;
    return m_next_seq++;
}

std::vector<json> Journal::entries() const {
    std::string data = read_file(m_path);
    std::vector<json> out;
    m_skipped = 0;
    std::size_t start = 0;
    while (start < data.size()) {
        auto end = data.find('\n', start);
        if (end == std::string::npos) {
            ++m_skipped;  // no newline: a torn write
            break;
        }
        auto entry = parse_line(std::string_view(data).substr(start, end - start));
        if (entry) {
            out.push_back(std::move(*entry));
        } else {
            ++m_skipped;
        }
        start = end + 1;
    }
    if (m_skipped > 0) {
        log::warn("Journal lines ignored", {{"path", m_path.string()}, {"lines", m_skipped}});
    }
    return out;
}

void Journal::clear() {
    check_sys(::ftruncate(m_fd.get(), 0), "truncate journal " + m_path.string());
    check_sys(::fsync(m_fd.get()), "fsync journal " + m_path.string());
    m_count = 0;
}

void Journal::drop_through(std::uint64_t seq) {
    std::string rest;
    std::size_t kept = 0;
    for (const auto& e : entries()) {
        if (seq_of(e) > seq) {
            rest += format_line(e);
            ++kept;
        }
    }
    if (rest.empty()) {
        clear();
        return;
    }
    auto tmp = m_path;
    tmp += ".tmp";
    {
        UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!fd)
            throw_sys("open " + tmp.string());
        write_all(fd.get(), rest, "write " + tmp.string());
        check_sys(::fsync(fd.get()), "fsync " + tmp.string());
    }
    check_sys(::rename(tmp.c_str(), m_path.c_str()), "rename " + tmp.string());
    auto dir = m_path.parent_path();
    fsync_dir(dir.empty() ? "." : dir);
    open_file();
    m_count = kept;
}

ReplayStats replay_journal(Journal& journal, const EntryApplier& apply) {
    ReplayStats stats;
    auto entries = journal.entries();
    if (entries.empty())
        return stats;
    log::info("Journal replay started",
              {{"path", journal.path().string()}, {"entries", entries.size()}});

    std::uint64_t done_through = 0;
    for (const auto& entry : entries) {
        try {
            ApplyResult r = apply(entry);
            if (r.applied()) {
                ++stats.applied;
            } else {
                // Fenced off: the task moved on (recovered, re-claimed, finished
                // elsewhere) or this entry was applied before. Logged so the
                // lost account stays visible.
                ++stats.skipped;
                log::warn("Journal entry fenced off", log_fields(entry));
            }
        } catch (const std::invalid_argument& e) {
            ++stats.rejected;
            auto fields = log_fields(entry);
            fields["error_message"] = e.what();
            fields["entry"] = entry;
            log::error("Journal entry rejected", fields);
        } catch (...) {
            if (done_through > 0)
                journal.drop_through(done_through);
            throw;
        }
        done_through = seq_of(entry);
    }
    journal.clear();
    log::info(
        "Journal replay done",
        {{"applied", stats.applied}, {"skipped", stats.skipped}, {"rejected", stats.rejected}});
    return stats;
}

ReplayStats replay_journal(Journal& journal, pqxx::connection_base& conn) {
    return replay_journal(journal, [&conn](const json& entry) {
        try {
            pqxx::work tx(conn, "journal_replay");
            ApplyResult r = apply_entry(tx, entry);
            tx.commit();
            return r;
        } catch (const pqxx::sql_error& e) {
            // Class 22 (data exception: bad uuid, out of range) and 23 (constraint
            // violation) will fail the same way forever.
            std::string state = e.sqlstate();
            if (state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0) {
                throw std::invalid_argument(std::string("database refused entry: ") + e.what());
            }
            throw;
        }
    });
}

}  // namespace pv
