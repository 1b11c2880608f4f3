// SPDX-License-Identifier: MIT
#include "status_record.hpp"

#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "log.hpp"
#include "sql_text.hpp"

namespace pv {

namespace {

using nlohmann::json;

using sql::arg;
using sql::Text;
using sql::text_of;

Text text_of(const std::string& value) {
    if (value.empty())
        return std::nullopt;
    return value;
}

Text text_of(const std::optional<json>& value) {
    if (!value || value->is_null())
        return std::nullopt;
    return value->dump(-1, ' ', false, json::error_handler_t::replace);
}

std::invalid_argument bad_field(const char* key, const std::string& why) {
    return std::invalid_argument(std::string("journal entry field '") + key + "': " + why);
}

template <class T>
std::optional<T> optional_field(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
        return std::nullopt;
    try {
        return it->get<T>();
    } catch (const json::exception& e) {
        throw bad_field(key, e.what());
    }
}

template <class T>
T required_field(const json& j, const char* key) {
    auto value = optional_field<T>(j, key);
    if (!value)
        throw bad_field(key, "missing");
    return *value;
}

TimePoint required_time(const json& j, const char* key) {
    try {
        return parse_iso8601(required_field<std::string>(j, key));
    } catch (const std::invalid_argument& e) {
        throw bad_field(key, e.what());
    }
}

// "finish" is the TaskStore's name for a finish_attempt write.
std::string canonical_kind(std::string kind) {
    return kind == "finish" ? std::string(kFinishAttempt) : kind;
}

// {"kind": K, "args": {...}} (a queued TaskStore write) reads as args + kind.
json flatten(const json& j) {
    if (!j.is_object())
        throw std::invalid_argument("journal entry is not an object");
    auto args = j.find("args");
    if (args == j.end() || !args->is_object())
        return j;
    json flat = *args;
    for (const char* key : {"kind", "seq", "journaled_at"}) {
        if (j.contains(key))
            flat[key] = j[key];
    }
    return flat;
}

void expect_kind(const json& j, std::string_view kind) {
    if (!j.is_object())
        throw std::invalid_argument("journal entry is not an object");
    auto actual = canonical_kind(required_field<std::string>(j, "kind"));
    if (actual != kind) {
        throw std::invalid_argument("journal entry kind '" + actual + "', expected '" +
                                    std::string(kind) + "'");
    }
}

template <class T>
void put_optional(json& j, const char* key, const std::optional<T>& value) {
    if (value)
        j[key] = *value;
}

void put_fence(json& j, const std::string& task_id, int attempt, const std::string& worker_id) {
    j["task_id"] = task_id;
    j["attempt"] = attempt;
    j["worker_id"] = worker_id;
}

}  // namespace

std::string to_iso8601(TimePoint t) {
    using namespace std::chrono;
    auto micros = floor<microseconds>(t.time_since_epoch()).count();
    auto secs = micros / 1000000;
    auto frac = micros % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    std::time_t tt = static_cast<std::time_t>(secs);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long>(frac));
    return buf;
}

TimePoint parse_iso8601(std::string_view text) {
    auto fail = [&] {
        return std::invalid_argument("bad UTC timestamp '" + std::string(text) + "'");
    };
    std::string s(text);
    std::tm tm{};
    int consumed = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
        consumed != 19) {
        throw fail();
    }
    std::size_t pos = 19;
    long micros = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int digits = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (digits < 6)
                micros = micros * 10 + (s[pos] - '0');
            ++digits;
            ++pos;
        }
        if (digits == 0)
            throw fail();
        for (; digits < 6; ++digits) micros *= 10;
    }
    if (pos + 1 != s.size() || s[pos] != 'Z')
        throw fail();
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60) {
        throw fail();
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    std::time_t secs = ::timegm(&tm);
    return TimePoint(std::chrono::seconds(secs) + std::chrono::microseconds(micros));
}

const char* to_status_word(FinalStatus status) {
    switch (status) {
        case FinalStatus::Completed:
            return "completed";
        case FinalStatus::Failed:
            return "failed";
        case FinalStatus::Cancelled:
            return "cancelled";
        case FinalStatus::Retry:
            return "pending";
    }
    return "failed";
}

FinalStatus parse_status_word(std::string_view word) {
    if (word == "completed")
        return FinalStatus::Completed;
    if (word == "failed")
        return FinalStatus::Failed;
    if (word == "cancelled")
        return FinalStatus::Cancelled;
    if (word == "pending")
        return FinalStatus::Retry;
    throw std::invalid_argument("unknown final task status '" + std::string(word) + "'");
}

json to_json(const FinishRecord& r) {
    json j{{"kind", kFinishAttempt}};
    put_fence(j, r.task_id, r.attempt, r.worker_id);
    put_optional(j, "pid", r.pid);
    put_optional(j, "exit_code", r.exit_code);
    put_optional(j, "signal", r.signal);
    j["core_dumped"] = r.core_dumped;
    j["oom_kills"] = r.oom_kills;
    put_optional(j, "peak_memory_bytes", r.peak_memory_bytes);
    put_optional(j, "cpu_user_seconds", r.cpu_user_seconds);
    put_optional(j, "cpu_sys_seconds", r.cpu_sys_seconds);
    put_optional(j, "wall_seconds", r.wall_seconds);
    j["outcome"] = r.outcome;
    j["stderr_tail"] = r.stderr_tail;
    j["error"] = r.error;
    j["error_type"] = r.error_type;
    if (r.result)
        j["result"] = *r.result;
    j["status"] = to_status_word(r.status);
    if (r.not_before)
        j["not_before"] = to_iso8601(*r.not_before);
    j["ended_at"] = to_iso8601(r.ended_at);
    return j;
}

FinishRecord finish_from_json(const json& entry) {
    json j = flatten(entry);
    expect_kind(j, kFinishAttempt);
    FinishRecord r;
    r.task_id = required_field<std::string>(j, "task_id");
    r.attempt = required_field<int>(j, "attempt");
    r.worker_id = required_field<std::string>(j, "worker_id");
    r.pid = optional_field<int>(j, "pid");
    r.exit_code = optional_field<int>(j, "exit_code");
    r.signal = optional_field<int>(j, "signal");
    r.core_dumped = optional_field<bool>(j, "core_dumped").value_or(false);
    r.oom_kills = optional_field<int>(j, "oom_kills").value_or(0);
    r.peak_memory_bytes = optional_field<std::uint64_t>(j, "peak_memory_bytes");
    r.cpu_user_seconds = optional_field<double>(j, "cpu_user_seconds");
    r.cpu_sys_seconds = optional_field<double>(j, "cpu_sys_seconds");
    r.wall_seconds = optional_field<double>(j, "wall_seconds");
    r.outcome = required_field<std::string>(j, "outcome");
    r.stderr_tail = optional_field<std::string>(j, "stderr_tail").value_or("");
    r.error = optional_field<std::string>(j, "error").value_or("");
    r.error_type = optional_field<std::string>(j, "error_type").value_or("");
    if (auto it = j.find("result"); it != j.end() && !it->is_null()) {
        r.result = *it;
        if (it->is_string()) {
            auto parsed = json::parse(it->get<std::string>(), nullptr, false);
            if (!parsed.is_discarded())
                r.result = std::move(parsed);
        }
    }
    r.status = parse_status_word(required_field<std::string>(j, "status"));
    bool has_end = j.contains("ended_at") && !j["ended_at"].is_null();
    r.ended_at = required_time(j, has_end ? "ended_at" : "journaled_at");
    if (j.contains("not_before") && !j["not_before"].is_null()) {
        r.not_before = required_time(j, "not_before");
    } else if (auto delay = optional_field<double>(j, "retry_delay");
               delay && r.status == FinalStatus::Retry) {
        r.not_before = r.ended_at + std::chrono::duration_cast<TimePoint::duration>(
                                        std::chrono::duration<double>(*delay));
    }
    return r;
}

json to_json(const ProgressRecord& r) {
    json j{{"kind", kProgress}};
    put_fence(j, r.task_id, r.attempt, r.worker_id);
    j["percent"] = r.percent;
    j["stage"] = r.stage;
    return j;
}

ProgressRecord progress_from_json(const json& entry) {
    json j = flatten(entry);
    expect_kind(j, kProgress);
    ProgressRecord r;
    r.task_id = required_field<std::string>(j, "task_id");
    r.attempt = required_field<int>(j, "attempt");
    r.worker_id = required_field<std::string>(j, "worker_id");
    r.percent = required_field<double>(j, "percent");
    r.stage = optional_field<std::string>(j, "stage").value_or("");
    return r;
}

json to_json(const WorkerStoppedRecord& r) {
    json j{{"kind", kWorkerStopped}, {"worker_id", r.worker_id}};
    if (r.at)
        j["at"] = to_iso8601(*r.at);
    return j;
}

WorkerStoppedRecord worker_stopped_from_json(const json& entry) {
    json j = flatten(entry);
    expect_kind(j, kWorkerStopped);
    WorkerStoppedRecord r;
    r.worker_id = required_field<std::string>(j, "worker_id");
    if (j.contains("at") && !j["at"].is_null())
        r.at = required_time(j, "at");
    return r;
}

namespace {

// One statement, so that a write costs one round trip.
ApplyResult apply_finish_once(pqxx::transaction_base& tx, const FinishRecord& r) {
    static const std::string kSql = std::string(finish_attempts_ctes()) + " SELECT answer FROM f";
    auto res = sql::exec_prepared(tx, "pv_finish_attempt", kSql, finish_attempts_param({r}));
    return parse_finish_answer(res[0][0].as<std::string>()).at(0);
}

}  // namespace

// The task row is the authority on who owns the attempt: a writer whose task row
// moved on may still close its own attempt row if nobody else did (ended_at IS
// NULL), but only the owner creates a missing attempt row (host from the workers
// row), so every death has a row. An existing, already closed row is left alone.
const char* finish_attempts_ctes() {
    // r: one row per record, from $1, a JSON array of finish_values() arrays.
    return "WITH r AS ("
           "  SELECT x.n, (x.e->>0)::uuid AS task_id, (x.e->>1)::integer AS attempt,"
           "   (x.e->>2)::uuid AS worker_id, x.e->>3 AS status, x.e->>4 AS error,"
           "   x.e->>5 AS error_type, (x.e->>6)::jsonb AS result,"
           "   (x.e->>7)::timestamptz AS not_before, (x.e->>8)::timestamptz AS ended_at,"
           "   (x.e->>9)::integer AS pid, (x.e->>10)::integer AS exit_code,"
           "   (x.e->>11)::integer AS signal, (x.e->>12)::boolean AS core_dumped,"
           "   (x.e->>13)::integer AS oom_kills, (x.e->>14)::bigint AS peak_memory_bytes,"
           "   (x.e->>15)::float8 AS cpu_user_seconds, (x.e->>16)::float8 AS cpu_sys_seconds,"
           "   (x.e->>17)::float8 AS wall_seconds, x.e->>18 AS outcome, x.e->>19 AS stderr_tail"
           "  FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n)),"
           " t AS ("
           "  UPDATE tasks SET status = r.status, error = r.error, error_type = r.error_type,"
           "   result = r.result,"
           "   progress = CASE r.status WHEN 'completed' THEN 100 WHEN 'pending' THEN 0"
           "              ELSE tasks.progress END,"
           "   stage = CASE WHEN r.status = 'pending' THEN NULL ELSE tasks.stage END,"
           "   worker_id = CASE WHEN r.status = 'pending' THEN NULL ELSE tasks.worker_id END,"
           "   not_before = CASE WHEN r.status = 'pending' THEN r.not_before"
           "                ELSE tasks.not_before END,"
           "   finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE r.ended_at END,"
           "   updated_at = now()"
           "  FROM r WHERE tasks.id = r.task_id AND tasks.attempts = r.attempt"
           "   AND tasks.status = 'inprogress' AND tasks.worker_id = r.worker_id"
           "  RETURNING r.n, tasks.started_at),"
           " a AS ("
           "  UPDATE task_attempts ta SET"
           "   ended_at = r.ended_at, pid = COALESCE(r.pid, ta.pid), exit_code = r.exit_code,"
           "   signal = r.signal, core_dumped = r.core_dumped, oom_kills = r.oom_kills,"
           "   peak_memory_bytes = r.peak_memory_bytes, cpu_user_seconds = r.cpu_user_seconds,"
           "   cpu_sys_seconds = r.cpu_sys_seconds, wall_seconds = r.wall_seconds,"
           "   outcome = r.outcome, error = r.error, stderr_tail = r.stderr_tail"
           "  FROM r WHERE ta.task_id = r.task_id AND ta.attempt = r.attempt"
           "   AND ta.worker_id = r.worker_id AND ta.ended_at IS NULL"
           "  RETURNING r.n),"
           " i AS ("
           "  INSERT INTO task_attempts (task_id, attempt, worker_id, host, pid, started_at,"
           "   ended_at, exit_code, signal, core_dumped, oom_kills, peak_memory_bytes,"
           "   cpu_user_seconds, cpu_sys_seconds, wall_seconds, outcome, error, stderr_tail)"
           "  SELECT r.task_id, r.attempt, w.id, w.host, r.pid,"
           "   COALESCE(t.started_at, r.ended_at), r.ended_at, r.exit_code, r.signal,"
           "   r.core_dumped, r.oom_kills, r.peak_memory_bytes, r.cpu_user_seconds,"
           "   r.cpu_sys_seconds, r.wall_seconds, r.outcome, r.error, r.stderr_tail"
           "  FROM r JOIN t ON t.n = r.n JOIN workers w ON w.id = r.worker_id"
           "  WHERE NOT EXISTS (SELECT 1 FROM a WHERE a.n = r.n)"
           "  ON CONFLICT (task_id, attempt) DO NOTHING"
           "  RETURNING task_id, attempt),"
           " f AS ("
           "  SELECT COALESCE(jsonb_agg(jsonb_build_array("
           "   EXISTS (SELECT 1 FROM t WHERE t.n = r.n),"
           "   EXISTS (SELECT 1 FROM a WHERE a.n = r.n) OR EXISTS (SELECT 1 FROM i"
           "    WHERE i.task_id = r.task_id AND i.attempt = r.attempt)) ORDER BY r.n),"
           "   '[]'::jsonb)::text AS answer FROM r)";
}

namespace {

// The record's values in the order finish_attempts_ctes() reads them, as JSON
// strings (or null). jsonb refuses NUL characters and bytes that are not UTF-8
// do not survive the JSON text, so both are stored as U+FFFD (a child's stderr
// may hold anything). A NUL escaped inside the result's own JSON text is still
// refused when that text is cast to jsonb: apply_finish trims the payload then.
json finish_values(const FinishRecord& r) {
    auto value = [](const Text& t) {
        if (!t)
            return json();
        std::string s;
        s.reserve(t->size());
        for (char c : *t) {
            if (c == '\0') {
                s += "\xEF\xBF\xBD";
            } else {
                s += c;
            }
        }
        return json(std::move(s));
    };
    return json::array({r.task_id,
                        r.attempt,
                        r.worker_id,
                        std::string(to_status_word(r.status)),
                        value(text_of(r.error)),
                        value(text_of(r.error_type)),
                        value(text_of(r.result)),
                        to_iso8601(r.not_before.value_or(r.ended_at)),
                        to_iso8601(r.ended_at),
                        value(text_of(r.pid)),
                        value(text_of(r.exit_code)),
                        value(text_of(r.signal)),
                        r.core_dumped,
                        r.oom_kills,
                        value(text_of(r.peak_memory_bytes)),
                        value(text_of(r.cpu_user_seconds)),
                        value(text_of(r.cpu_sys_seconds)),
                        value(text_of(r.wall_seconds)),
                        value(text_of(r.outcome)),
                        value(text_of(r.stderr_tail))});
}

}  // namespace

std::string finish_attempts_param(const std::vector<FinishRecord>& records) {
    json all = json::array();
    for (const FinishRecord& r : records) all.push_back(finish_values(r));
    return all.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<ApplyResult> parse_finish_answer(const std::string& answer) {
    std::vector<ApplyResult> out;
    for (const json& pair : json::parse(answer)) {
        ApplyResult a;
        a.task_row = pair.at(0).get<bool>();
        a.attempt_row = pair.at(1).get<bool>();
        out.push_back(a);
    }
    return out;
}

ApplyResult apply_finish(pqxx::work& tx, const FinishRecord& r) {
    // A plain SAVEPOINT: pqxx 6's subtransaction does not recover from a failed
    // parameterised statement (the parent stays aborted).
    tx.exec0("SAVEPOINT pv_apply_finish");
    try {
        ApplyResult out = apply_finish_once(tx, r);
        tx.exec0("RELEASE SAVEPOINT pv_apply_finish");
        return out;
    } catch (const pqxx::data_exception& e) {
        // Text the database cannot store (a NUL in the result's JSON, say) must
        // not leave the task in progress: record the end without the payload.
        if (!r.result && r.stderr_tail.empty())
            throw;
        tx.exec0("ROLLBACK TO SAVEPOINT pv_apply_finish");
        log::error("Status record trimmed",
                   {{"task_id", r.task_id}, {"attempt", r.attempt}, {"error_message", e.what()}});
        FinishRecord trimmed = r;
        trimmed.result.reset();
        trimmed.stderr_tail = std::string("result/stderr not stored: ") + e.what();
        return apply_finish_once(tx, trimmed);
    }
}

ApplyResult apply_progress(pqxx::transaction_base& tx, const ProgressRecord& r) {
    Text stage = text_of(r.stage);
    static const std::string kSql =
        "UPDATE tasks SET progress = $4::float8, stage = COALESCE($5, stage),"
        " updated_at = now()"
        " WHERE id = $1::uuid AND attempts = $2::integer AND status = 'inprogress'"
        " AND worker_id = $3::uuid AND progress <= $4::float8";
    auto res = sql::exec_prepared(tx, "pv_progress", kSql, r.task_id, r.attempt, r.worker_id,
                                  r.percent, arg(stage));
    ApplyResult out;
    out.task_row = res.affected_rows() > 0;
    return out;
}

ApplyResult apply_worker_stopped(pqxx::transaction_base& tx, const WorkerStoppedRecord& r) {
    Text at = r.at ? Text(to_iso8601(*r.at)) : std::nullopt;
    auto res = tx.exec_params(
        "UPDATE workers SET stopped_at = COALESCE($2::timestamptz, now()),"
        " heartbeat_at = GREATEST(heartbeat_at, COALESCE($2::timestamptz, now()))"
        " WHERE id = $1::uuid AND stopped_at IS NULL",
        r.worker_id, arg(at));
    ApplyResult out;
    out.task_row = res.affected_rows() > 0;
    return out;
}

namespace {

// work is set for the guarded form (a savepoint around a finish).
ApplyResult dispatch_entry(pqxx::transaction_base& tx, pqxx::work* work, const json& entry) {
    if (!entry.is_object())
        throw std::invalid_argument("journal entry is not an object");
    auto kind = canonical_kind(required_field<std::string>(entry, "kind"));
    if (kind == kFinishAttempt) {
        FinishRecord rec = finish_from_json(entry);
        return work ? apply_finish(*work, rec) : apply_finish_once(tx, rec);
    }
    if (kind == kProgress)
        return apply_progress(tx, progress_from_json(entry));
    if (kind == kWorkerStopped)
        return apply_worker_stopped(tx, worker_stopped_from_json(entry));
    // A heartbeat from the past proves nothing now.
    if (kind == "heartbeat")
        return {};
    throw std::invalid_argument("unknown journal entry kind '" + kind + "'");
}

}  // namespace

ApplyResult apply_entry(pqxx::work& tx, const json& entry) {
    return dispatch_entry(tx, &tx, entry);
}

ApplyResult apply_entry_unguarded(pqxx::transaction_base& tx, const json& entry) {
    return dispatch_entry(tx, nullptr, entry);
}

}  // namespace pv
