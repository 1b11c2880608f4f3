// SPDX-License-Identifier: MIT
// The status journal without a database: file format, torn and corrupt lines,
// reopening, the instance lock, compaction, record <-> JSON round trips, and the
// replay driver with a fake applier. Replay against PostgreSQL (fencing,
// idempotence) is in tests/integration_cpp/lease_test.cpp.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "journal.hpp"
#include "status_record.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/pv-journal-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        m_path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(m_path, ec);
    }
    const fs::path& path() const { return m_path; }

private:
    fs::path m_path;
};

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void append_raw(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::app);
    out << bytes;
}

pv::TimePoint at_micros(long long micros) {
    return pv::TimePoint(std::chrono::microseconds(micros));
}

pv::FinishRecord sample_finish() {
    pv::FinishRecord r;
    r.task_id = "0b6f3c1e-8a4e-4d7b-9c51-2f3a4b5c6d7e";
    r.attempt = 2;
    r.worker_id = "7d1c2b3a-1111-4222-8333-944455556666";
    r.pid = 4242;
    r.signal = 9;
    r.core_dumped = false;
    r.oom_kills = 1;
    r.peak_memory_bytes = 2148007936ULL;
    r.cpu_user_seconds = 12.25;
    r.cpu_sys_seconds = 0.5;
    r.wall_seconds = 30.125;
    r.outcome = "memory_limit";
    r.stderr_tail = "last words\n";
    r.error = "Memory limit exceeded: 2048.5MB";
    r.error_type = "memory_limit";
    r.status = pv::FinalStatus::Retry;
    r.not_before = at_micros(1796310000123456);
    r.ended_at = at_micros(1796309990654321);
    return r;
}

}  // namespace

TEST_CASE("crc32 matches the standard check value") {
    CHECK(pv::crc32("123456789") == 0xCBF43926u);
    CHECK(pv::crc32("") == 0u);
}

TEST_CASE("ISO 8601 timestamps round-trip with microseconds") {
    auto t = at_micros(1796309990654321);
    CHECK(pv::to_iso8601(t) == "2026-12-03T14:59:50.654321Z");
    CHECK(pv::parse_iso8601(pv::to_iso8601(t)) == t);
    CHECK(pv::parse_iso8601("2026-12-03T14:59:50Z") == at_micros(1796309990000000));
    CHECK(pv::parse_iso8601("2026-12-03T14:59:50.5Z") == at_micros(1796309990500000));
    CHECK_THROWS_AS(pv::parse_iso8601("2026-12-04 02:59:50Z"), std::invalid_argument);
    CHECK_THROWS_AS(pv::parse_iso8601("2026-12-04T02:59:50"), std::invalid_argument);
    CHECK_THROWS_AS(pv::parse_iso8601("2026-12-04T02:59:50+01:00"), std::invalid_argument);
}

TEST_CASE("FinishRecord round-trips through JSON") {
    auto rec = sample_finish();
    CHECK(pv::finish_from_json(pv::to_json(rec)) == rec);

    rec.status = pv::FinalStatus::Completed;
    rec.not_before.reset();
    rec.error.clear();
    rec.error_type.clear();
    rec.outcome = "completed";
    rec.signal.reset();
    rec.exit_code = 0;
    rec.result = json{{"output", "/srv/out/a.mp4"}, {"duration", 12.5}};
    rec.peak_memory_bytes.reset();
    json j = pv::to_json(rec);
    CHECK(j["kind"] == "finish_attempt");
    CHECK(j["status"] == "completed");
    CHECK(pv::finish_from_json(j) == rec);
}

TEST_CASE("FinishRecord reader rejects malformed entries") {
    json j = pv::to_json(sample_finish());
    json missing = j;
    missing.erase("task_id");
    CHECK_THROWS_AS(pv::finish_from_json(missing), std::invalid_argument);
    json bad_type = j;
    bad_type["attempt"] = "two";
    CHECK_THROWS_AS(pv::finish_from_json(bad_type), std::invalid_argument);
    json bad_status = j;
    bad_status["status"] = "inprogress";
    CHECK_THROWS_AS(pv::finish_from_json(bad_status), std::invalid_argument);
    json bad_time = j;
    bad_time["ended_at"] = "yesterday";
    CHECK_THROWS_AS(pv::finish_from_json(bad_time), std::invalid_argument);
    json wrong_kind = j;
    wrong_kind["kind"] = "progress";
    CHECK_THROWS_AS(pv::finish_from_json(wrong_kind), std::invalid_argument);
}

TEST_CASE("a queued TaskStore write reads as a FinishRecord") {
    json write = {{"kind", "finish"},
                  {"args",
                   {{"task_id", "0b6f3c1e-8a4e-4d7b-9c51-2f3a4b5c6d7e"},
                    {"attempt", 1},
                    {"worker_id", "7d1c2b3a-1111-4222-8333-944455556666"},
                    {"pid", 10},
                    {"exit_code", 3},
                    {"signal", nullptr},
                    {"status", "pending"},
                    {"outcome", "exit_code"},
                    {"error", "Process exited with code 3"},
                    {"error_type", "exit_code"},
                    {"retry_delay", 4.0},
                    {"result", "{\"a\":1}"}}},
                  {"journaled_at", "2026-12-03T16:00:00Z"},
                  {"seq", 7}};
    auto rec = pv::finish_from_json(write);
    CHECK(rec.attempt == 1);
    CHECK(rec.exit_code == 3);
    CHECK_FALSE(rec.signal.has_value());
    CHECK(rec.status == pv::FinalStatus::Retry);
    CHECK(rec.ended_at == pv::parse_iso8601("2026-12-03T16:00:00Z"));
    CHECK(rec.not_before == pv::parse_iso8601("2026-12-03T16:00:04Z"));
    CHECK(rec.result == json{{"a", 1}});
}

TEST_CASE("progress and worker_stopped records round-trip") {
    pv::ProgressRecord p{"0b6f3c1e-8a4e-4d7b-9c51-2f3a4b5c6d7e", 3,
                         "7d1c2b3a-1111-4222-8333-944455556666", 42.5, "render"};
    CHECK(pv::progress_from_json(pv::to_json(p)) == p);
    pv::WorkerStoppedRecord w{"7d1c2b3a-1111-4222-8333-944455556666", at_micros(5)};
    CHECK(pv::worker_stopped_from_json(pv::to_json(w)) == w);
    w.at.reset();
    CHECK(pv::worker_stopped_from_json(pv::to_json(w)) == w);
}

TEST_CASE("append and entries round-trip, in order, across reopen") {
    TempDir dir;
    auto path = pv::Journal::path_for(dir.path() / "state", "blue");
    CHECK(path == dir.path() / "state" / "journal-blue.jsonl");
    {
        pv::Journal journal(path);
        CHECK(journal.empty());
        CHECK(journal.append(pv::to_json(sample_finish())) == 1);
        CHECK(journal.append(json{{"kind", "progress"}, {"n", 2}}) == 2);
        auto entries = journal.entries();
        REQUIRE(entries.size() == 2);
        CHECK(entries[0]["seq"] == 1);
        CHECK(entries[0].contains("journaled_at"));
        CHECK(pv::finish_from_json(entries[0]) == sample_finish());
        CHECK(entries[1]["n"] == 2);
    }
    // Each line is "<crc32 hex> <json>\n".
    std::string text = slurp(path);
    auto first = text.substr(0, text.find('\n'));
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", pv::crc32(first.substr(9)));
    CHECK(first.substr(0, 9) == std::string(hex) + " ");

    pv::Journal reopened(path);
    auto entries = reopened.entries();
    REQUIRE(entries.size() == 2);
    CHECK(pv::finish_from_json(entries[0]) == sample_finish());
    // Sequence numbers continue after the ones on disk.
    CHECK(reopened.append(json{{"kind", "progress"}}) == 3);
}

TEST_CASE("a torn last line is ignored, then cut off on reopen") {
    TempDir dir;
    auto path = dir.path() / "journal-default.jsonl";
    {
        pv::Journal journal(path);
        journal.append(json{{"kind", "progress"}, {"n", 1}});
    }
    // A crash in the middle of the second append.
    std::string whole = slurp(path);
    append_raw(path, whole.substr(0, whole.size() / 2));
    {
        pv::Journal journal(path);
        auto entries = journal.entries();
        REQUIRE(entries.size() == 1);
        CHECK(entries[0]["n"] == 1);
        CHECK(slurp(path) == whole);  // the torn bytes are gone
        journal.append(json{{"kind", "progress"}, {"n", 2}});
        entries = journal.entries();
        REQUIRE(entries.size() == 2);
        CHECK(entries[1]["n"] == 2);
    }
}

TEST_CASE("a complete line with a wrong checksum is skipped") {
    TempDir dir;
    auto path = dir.path() / "j.jsonl";
    {
        pv::Journal journal(path);
        journal.append(json{{"kind", "progress"}, {"n", 1}});
    }
    append_raw(path, "00000000 {\"kind\":\"progress\",\"n\":99}\n");
    append_raw(path, "not a journal line\n");
    pv::Journal journal(path);
    journal.append(json{{"kind", "progress"}, {"n", 3}});
    auto entries = journal.entries();
    CHECK(journal.skipped_lines() == 2);
    REQUIRE(entries.size() == 2);
    CHECK(entries[0]["n"] == 1);
    CHECK(entries[1]["n"] == 3);
}

TEST_CASE("one process per journal: a second open fails while the first holds it") {
    TempDir dir;
    auto path = dir.path() / "j.jsonl";
    pv::Journal first(path);
    CHECK_THROWS_AS(pv::Journal{path}, std::system_error);
}

TEST_CASE("clear and drop_through") {
    TempDir dir;
    auto path = dir.path() / "j.jsonl";
    pv::Journal journal(path);
    for (int i = 1; i <= 4; ++i) journal.append(json{{"kind", "progress"}, {"n", i}});
    journal.drop_through(2);
    CHECK(journal.size() == 2);
    auto entries = journal.entries();
    REQUIRE(entries.size() == 2);
    CHECK(entries[0]["n"] == 3);
    // Appends after the rename go to the new file.
    journal.append(json{{"kind", "progress"}, {"n", 5}});
    entries = pv::Journal(dir.path() / "other.jsonl").entries();
    CHECK(entries.empty());
    entries = journal.entries();
    REQUIRE(entries.size() == 3);
    CHECK(entries[2]["n"] == 5);
    CHECK(entries[2]["seq"] == 5);
    journal.clear();
    CHECK(journal.empty());
    CHECK(slurp(path).empty());
}

TEST_CASE("an append that cannot be written leaves no partial line") {
    TempDir dir;
    auto path = dir.path() / "j.jsonl";
    pv::Journal journal(path);
    journal.append(json{{"kind", "progress"}, {"n", 1}});
    CHECK_THROWS_AS(journal.append(json::array()), std::invalid_argument);

    // A file size limit makes the write stop part-way (EFBIG), like a full disk.
    auto size = fs::file_size(path);
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    rlimit small = old;
    small.rlim_cur = size + 20;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    CHECK_THROWS_AS(journal.append(json{{"kind", "progress"}, {"text", std::string(200, 'x')}}),
                    std::system_error);
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);

    CHECK(fs::file_size(path) == size);
    CHECK(journal.entries().size() == 1);
    CHECK(journal.skipped_lines() == 0);
    journal.append(json{{"kind", "progress"}, {"n", 2}});
    CHECK(journal.entries().size() == 2);
}

TEST_CASE("replay applies in order, counts outcomes and empties the journal") {
    TempDir dir;
    pv::Journal journal(dir.path() / "j.jsonl");
    for (int i = 1; i <= 4; ++i) journal.append(json{{"kind", "progress"}, {"n", i}});

    std::vector<int> seen;
    auto stats = pv::replay_journal(journal, [&](const json& e) {
        int n = e["n"].get<int>();
        seen.push_back(n);
        if (n == 2)
            return pv::ApplyResult{};  // fenced off
        if (n == 3)
            throw std::invalid_argument("malformed");
        return pv::ApplyResult{true, true};
    });
    CHECK(seen == std::vector<int>{1, 2, 3, 4});
    CHECK(stats.applied == 2);
    CHECK(stats.skipped == 1);
    CHECK(stats.rejected == 1);
    CHECK(journal.empty());
}

TEST_CASE("replay that loses the database keeps what was not committed") {
    TempDir dir;
    pv::Journal journal(dir.path() / "j.jsonl");
    for (int i = 1; i <= 4; ++i) journal.append(json{{"kind", "progress"}, {"n", i}});

    auto failing = [](const json& e) {
        if (e["n"] == 3)
            throw std::runtime_error("connection lost");
        return pv::ApplyResult{true, true};
    };
    CHECK_THROWS_AS(pv::replay_journal(journal, failing), std::runtime_error);
    auto rest = journal.entries();
    REQUIRE(rest.size() == 2);
    CHECK(rest[0]["n"] == 3);
    CHECK(rest[1]["n"] == 4);

    // The database is back: the remaining entries apply, once.
    int calls = 0;
    auto stats = pv::replay_journal(journal, [&](const json&) {
        ++calls;
        return pv::ApplyResult{true, true};
    });
    CHECK(calls == 2);
    CHECK(stats.applied == 2);
    CHECK(journal.empty());
}

TEST_CASE("replay of an empty journal does nothing") {
    TempDir dir;
    pv::Journal journal(dir.path() / "j.jsonl");
    int calls = 0;
    auto stats = pv::replay_journal(journal, [&](const json&) {
        ++calls;
        return pv::ApplyResult{};
    });
    CHECK(calls == 0);
    CHECK(stats.applied + stats.skipped + stats.rejected == 0);
}
