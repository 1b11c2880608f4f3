// SPDX-License-Identifier: MIT
// The status journal: status writes that still failed after their retries are
// appended to a local, fsync'd file and replayed, in order, once the database
// answers again (and at startup). Replay applies fenced SQL (status_record.hpp),
// so an entry is never applied twice and never over a newer state.
//
// File format, one entry per line:  <crc32 of JSON, 8 hex digits> <JSON>\n
// A line without its newline or with a wrong checksum (a crash mid-write) is
// ignored; a torn tail is cut off when the journal is opened.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "status_record.hpp"
#include "unique_fd.hpp"

namespace pv {

/// CRC-32 (IEEE 802.3, as zlib computes it) of `data`.
std::uint32_t crc32(std::string_view data);

/// Append-only journal of JSON entries. Not thread-safe (the supervisor is
/// single-threaded). Every member throws std::system_error on I/O failure.
class Journal {
public:
    /// Opens or creates the journal at `path` (creating its directory; the
    /// directory is fsync'd when the file is new). Takes an exclusive lock on
    /// "<path>.lock" for the object's lifetime, so a second supervisor with the
    /// same state directory and instance fails here with std::system_error
    /// (EWOULDBLOCK) instead of sharing the file. Cuts off a torn last line.
    explicit Journal(std::filesystem::path path);

    Journal(Journal&&) noexcept = default;
    Journal& operator=(Journal&&) noexcept = default;

    /// "<state_dir>/journal-<instance>.jsonl".
    static std::filesystem::path path_for(const std::filesystem::path& state_dir,
                                          std::string_view instance);

    /// Appends `entry` (a JSON object) with a "seq" field set to the next sequence
    /// number and "journaled_at" (UTC now) unless present, as one write()
    /// followed by fsync. Returns the seq. On failure the
    /// file is cut back to its previous length and std::system_error is thrown.
    std::uint64_t append(nlohmann::json entry);

    /// Valid entries in file order (each with its "seq").
    std::vector<nlohmann::json> entries() const;

    /// True when the journal holds no valid entry. Cheap (no file read), so the
    /// event loop may ask every turn.
    bool empty() const { return m_count == 0; }

    /// Number of valid entries.
    std::size_t size() const { return m_count; }

    /// Removes every entry (truncate + fsync).
    void clear();

    /// Removes the entries with seq <= `seq`, keeping later ones: the rest is
    /// written to a temporary file, fsync'd and renamed over the journal.
    void drop_through(std::uint64_t seq);

    /// Lines ignored by the last entries() call (torn or bad checksum).
    std::size_t skipped_lines() const { return m_skipped; }

    const std::filesystem::path& path() const { return m_path; }

private:
    void open_file();

    std::filesystem::path m_path;
    UniqueFd m_lock;
    UniqueFd m_fd;
    std::uint64_t m_next_seq = 1;
    std::size_t m_count = 0;
    mutable std::size_t m_skipped = 0;
};

/// What a replay did.
struct ReplayStats {
    int applied = 0;   // entries that changed at least one row
    int skipped = 0;   // fenced off: already applied, or the task moved on
    int rejected = 0;  // malformed or refused by the database's constraints; dropped
};

/// Applies one entry inside its own transaction. Throws std::invalid_argument for
/// an entry that can never apply (it is then rejected and dropped); any other
/// exception stops the replay.
using EntryApplier = std::function<ApplyResult(const nlohmann::json& entry)>;

/// Replays every entry in order through `apply`. When all are done the journal
/// is cleared. If `apply` throws anything but std::invalid_argument, the entries
/// already committed are dropped from the journal, the rest stay, and the
/// exception propagates (call again once the database answers).
ReplayStats replay_journal(Journal& journal, const EntryApplier& apply);

/// Replays against PostgreSQL: one transaction per entry, using apply_entry().
/// Data and constraint errors (SQLSTATE classes 22 and 23) reject the entry;
/// everything else (pqxx::broken_connection, in_doubt_error, serialization
/// failures...) stops the replay and propagates, leaving the entry in the journal.
/// Call at startup before claiming tasks, and before any new status write once
/// the database answers again after a failure.
ReplayStats replay_journal(Journal& journal, pqxx::connection_base& conn);

}  // namespace pv
