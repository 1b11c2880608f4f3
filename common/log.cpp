// SPDX-License-Identifier: MIT
#include "log.hpp"

#include <unistd.h>

#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <ctime>
#include <stdexcept>

namespace pv::log {

namespace {

bool g_json = false;

std::string iso_time_now() {
    auto now = std::chrono::system_clock::now();
    auto secs = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms.count()));
    return buf;
}

std::string text_value(const nlohmann::json& v) {
    if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        if (s.find_first_of(" \"=") == std::string::npos && !s.empty())
            return s;
        return v.dump();
    }
    return v.dump();
}

}  // namespace

Format parse_format(std::string_view name) {
    if (name == "auto")
        return Format::Auto;
    if (name == "json")
        return Format::Json;
    if (name == "text")
        return Format::Text;
    throw std::invalid_argument("log-format must be auto, json or text, not '" + std::string(name) +
                                "'");
}

void setup(Format format, spdlog::level::level_enum level, bool to_stderr) {
    int fd = to_stderr ? STDERR_FILENO : STDOUT_FILENO;
    g_json = format == Format::Json || (format == Format::Auto && !::isatty(fd));
    std::shared_ptr<spdlog::logger> logger;
    if (to_stderr) {
        logger = std::make_shared<spdlog::logger>(
            "pv", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
        logger = std::make_shared<spdlog::logger>(
            "pv", std::make_shared<spdlog::sinks::stdout_sink_mt>());
    }
    logger->set_pattern(g_json ? "%v" : "%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
    logger->set_level(level);
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(logger);
}

void event(spdlog::level::level_enum level, std::string_view message,
           const nlohmann::json& fields) {
    auto logger = spdlog::default_logger_raw();
    if (!logger->should_log(level))
        return;
    if (g_json) {
        nlohmann::json obj = nlohmann::json::object();
        obj["time"] = iso_time_now();
        auto lv = spdlog::level::to_string_view(level);
        obj["level"] = std::string(lv.data(), lv.size());
        obj["message"] = message;
        if (fields.is_object()) {
            for (auto it = fields.begin(); it != fields.end(); ++it) obj[it.key()] = it.value();
        }
        logger->log(level, "{}",
                    obj.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        return;
    }
    std::string line(message);
    if (fields.is_object()) {
        for (auto it = fields.begin(); it != fields.end(); ++it) {
            line += ' ';
            line += it.key();
            line += '=';
            line += text_value(it.value());
        }
    }
    logger->log(level, "{}", line);
}

}  // namespace pv::log
