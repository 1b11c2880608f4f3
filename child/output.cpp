// SPDX-License-Identifier: MIT
#include "output.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
}
#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "curl_handle.hpp"
#include "error_type.hpp"
#include "fetch.hpp"
#include "log.hpp"
#include "render/renderer.hpp"
#include "sys_error.hpp"
#include "unique_fd.hpp"

namespace pv {

namespace {

[[noreturn]] void fail(std::string_view type, const std::string& message, bool retryable = false) {
    throw RenderError(std::string(type), message, retryable);
}

struct InputCloser {
    void operator()(AVFormatContext* ctx) const noexcept { avformat_close_input(&ctx); }
};
using InputPtr = std::unique_ptr<AVFormatContext, InputCloser>;

std::string av_error_text(int code) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(code, buf, sizeof buf);
    return buf;
}

/// A read-only memory map of a whole file.
class MappedFile {
public:
    explicit MappedFile(const std::string& path) {
        UniqueFd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
        if (!fd)
            throw_sys("open " + path);
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0)
            throw_sys("stat " + path);
        m_size = static_cast<std::size_t>(st.st_size);
        if (m_size == 0)
            return;
        void* p = ::mmap(nullptr, m_size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
        if (p == MAP_FAILED)
            throw_sys("mmap " + path);
        m_data = p;
    }
    ~MappedFile() {
        if (m_data)
            ::munmap(m_data, m_size);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const char* data() const { return static_cast<const char*>(m_data); }
    std::size_t size() const { return m_size; }

private:
    void* m_data = nullptr;
    std::size_t m_size = 0;
};

std::string env_or_empty(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

void fsync_dir(const std::string& dir) {
    UniqueFd fd{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (fd)
        ::fsync(fd.get());
}

void copy_file(const std::string& from, const std::string& to) {
    UniqueFd in{::open(from.c_str(), O_RDONLY | O_CLOEXEC)};
    if (!in)
        throw_sys("open " + from);
    UniqueFd out{::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (!out)
        throw_sys("create " + to);
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(in.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_sys("read " + from);
        if (n == 0)
            break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = ::write(out.get(), buf + off, static_cast<std::size_t>(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                throw_sys("write " + to);
            off += w;
        }
    }
    if (::fsync(out.get()) != 0)
        throw_sys("fsync " + to);
}

/// Moves one file into place so that readers see either nothing or all of it.
void move_into_place(const std::string& from, const std::string& to) {
    if (::rename(from.c_str(), to.c_str()) == 0) {
        fsync_dir(dir_of(to));
        return;
    }
    if (errno != EXDEV)
        throw_sys("rename " + from + " to " + to);
    std::string tmp = dir_of(to) + "/." + base_of(to) + ".tmp";
    try {
        copy_file(from, tmp);
        if (::rename(tmp.c_str(), to.c_str()) != 0)
            throw_sys("rename " + tmp + " to " + to);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    fsync_dir(dir_of(to));
    ::unlink(from.c_str());
}

std::uint64_t file_size(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return 0;
    return static_cast<std::uint64_t>(st.st_size);
}

bool exists(const std::string& path) {
    struct stat st {};
    return !path.empty() && ::stat(path.c_str(), &st) == 0;
}

// ---- S3 ---------------------------------------------------------------------

std::string uri_encode_key(const std::string& key) {
    std::string out;
    for (unsigned char c : key) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out.push_back(static_cast<char>(c));
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

std::string trim_slashes(std::string s) {
    while (!s.empty() && s.back() == '/') s.pop_back();
    return s;
}

struct S3Response {
    long status = 0;
    CURLcode rc = CURLE_OK;
    std::string body;
    char errbuf[CURL_ERROR_SIZE] = {};
};

size_t on_s3_body(char* data, size_t size, size_t count, void* user) {
    auto* r = static_cast<S3Response*>(user);
    std::size_t n = size * count;
    if (r->body.size() < 4096)
        r->body.append(data, std::min<std::size_t>(n, 4096));
    return n;
}

/// One signed request. The body is sent from memory so that libcurl's SigV4
/// code hashes the same bytes we announce in x-amz-content-sha256.
/// Limitation: an upload is one PUT of a memory-mapped file, without multipart
/// upload, so objects larger than 5 GB cannot be stored on AWS S3.
S3Response s3_request(const S3Config& cfg, const char* method, const std::string& key,
                      const char* body, std::size_t size, const char* content_type) {
    S3Response r;
    CurlEasy h = make_curl_easy();
    FetchOptions o;
    o.timeout_s = cfg.timeout_s;
    o.low_speed_limit = 1024;
    o.low_speed_time_s = 60;
    apply_common_curl_options(h.get(), o);

    std::string url = trim_slashes(cfg.endpoint) + "/" + cfg.bucket + "/" + uri_encode_key(key);
    std::string sigv4 = "aws:amz:" + cfg.region + ":s3";
    CurlSlist headers;
    std::string hash = "x-amz-content-sha256: " + sha256_hex(body, size);
    append_header(headers, hash.c_str());
    if (content_type) {
        std::string ct = std::string("Content-Type: ") + content_type;
        append_header(headers, ct.c_str());
    }
    curl_easy_setopt(h.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(h.get(), CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h.get(), CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(h.get(), CURLOPT_USERNAME, cfg.access_key.c_str());
    curl_easy_setopt(h.get(), CURLOPT_PASSWORD, cfg.secret_key.c_str());
    curl_easy_setopt(h.get(), CURLOPT_HTTPHEADER, headers.get());
    if (std::strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h.get(), CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(size));
    } else {
        curl_easy_setopt(h.get(), CURLOPT_NOBODY, std::strcmp(method, "HEAD") == 0 ? 1L : 0L);
    }
    curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, on_s3_body);
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, r.errbuf);
    r.rc = curl_easy_perform(h.get());
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

/// The <Code>/<Message> of an S3 XML error body, if any.
std::string s3_error_text(const std::string& body) {
    auto tag = [&](const char* name) -> std::string {
        std::string open = std::string("<") + name + ">";
        std::string close = std::string("</") + name + ">";
        auto a = body.find(open);
        auto b = body.find(close);
        if (a == std::string::npos || b == std::string::npos || b < a)
            return "";
        return body.substr(a + open.size(), std::min<std::size_t>(b - a - open.size(), 300));
    };
    std::string code = tag("Code");
    std::string message = tag("Message");
    if (code.empty())
        return "";
    return message.empty() ? code : code + ": " + message;
}

void s3_put_file(const S3Config& cfg, const std::string& path, const std::string& key,
                 const char* content_type) {
    MappedFile file(path);
    S3Response r = s3_request(cfg, "PUT", key, file.data(), file.size(), content_type);
    std::string where = cfg.bucket + "/" + key;
    if (r.rc != CURLE_OK) {
        std::string detail = r.errbuf[0] ? r.errbuf : curl_easy_strerror(r.rc);
        bool transient = r.rc != CURLE_COULDNT_RESOLVE_HOST && r.rc != CURLE_URL_MALFORMAT &&
                         r.rc != CURLE_UNSUPPORTED_PROTOCOL;
        fail(error_type::kIo, fmt::format("upload of {} failed: {}", where, detail), transient);
    }
    if (r.status < 200 || r.status >= 300) {
        std::string why = s3_error_text(r.body);
        fail(error_type::kIo,
             fmt::format("upload of {} failed: HTTP {}{}", where, r.status,
                         why.empty() ? "" : " (" + why + ")"),
             r.status >= 500 || r.status == 429 || r.status == 408);
    }
}

}  // namespace

std::string sha256_hex(const void* data, std::size_t size) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data ? data : "", size, digest, &len, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(sha256) failed");
    }
    std::string hex;
    for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", digest[i]);
    return hex;
}

std::string poster_path_for(const std::string& video_path) {
    std::string base = base_of(video_path);
    auto dot = base.rfind('.');
    std::string stem = dot == std::string::npos || dot == 0
                           ? video_path
                           : video_path.substr(0, video_path.size() - (base.size() - dot));
    return stem + ".jpg";
}

MediaProbe probe_media(const std::string& path) {
    AVFormatContext* raw = nullptr;
    int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
    if (rc < 0) {
        fail(error_type::kEncoding,
             fmt::format("rendered output cannot be opened: {}", av_error_text(rc)));
    }
    InputPtr ctx{raw};
    rc = avformat_find_stream_info(ctx.get(), nullptr);
    if (rc < 0) {
        fail(error_type::kEncoding,
             fmt::format("rendered output cannot be read: {}", av_error_text(rc)));
    }
    MediaProbe p;
    for (unsigned i = 0; i < ctx->nb_streams; ++i) {
        const AVCodecParameters* par = ctx->streams[i]->codecpar;
        if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
            ++p.video_streams;
            p.width = par->width;
            p.height = par->height;
        } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
            ++p.audio_streams;
        }
    }
    if (ctx->duration != AV_NOPTS_VALUE && ctx->duration > 0) {
        p.duration = static_cast<double>(ctx->duration) / AV_TIME_BASE;
    }
    return p;
}

MediaProbe check_rendered(const std::string& path) {
    if (!exists(path))
        fail(error_type::kEncoding, "the renderer produced no output file");
    if (file_size(path) == 0)
        fail(error_type::kEncoding, "the renderer produced an empty file");
    MediaProbe p = probe_media(path);
    if (p.video_streams != 1 || p.audio_streams != 1) {
        fail(error_type::kEncoding,
             fmt::format("rendered output has {} video and {} audio streams, expected 1 and 1",
                         p.video_streams, p.audio_streams));
    }
    if (!(p.duration > 0))
        fail(error_type::kEncoding, "rendered output has no duration");
    return p;
}

std::optional<S3Config> S3Config::from_env() {
    S3Config c;
    c.endpoint = env_or_empty("S3_ENDPOINT");
    c.bucket = env_or_empty("S3_BUCKET");
    c.access_key = env_or_empty("S3_ACCESS_KEY_ID");
    c.secret_key = env_or_empty("S3_SECRET_ACCESS_KEY");
    if (c.endpoint.empty() || c.bucket.empty() || c.access_key.empty() || c.secret_key.empty()) {
        return std::nullopt;
    }
    std::string region = env_or_empty("S3_REGION");
    if (!region.empty())
        c.region = region;
    c.public_base_url = env_or_empty("S3_PUBLIC_BASE_URL");
    c.key_prefix = env_or_empty("S3_KEY_PREFIX");
    return c;
}

Published publish_local(const std::string& video, const std::string& poster,
                        const std::string& final_video) {
    Published out;
    try {
        if (exists(poster)) {
            out.thumbnail = poster_path_for(final_video);
            move_into_place(poster, out.thumbnail);
        }
        out.size = file_size(video);
        move_into_place(video, final_video);
    } catch (const std::system_error& e) {
        if (!out.thumbnail.empty())
            ::unlink(out.thumbnail.c_str());
        fail(error_type::kIo, std::string("cannot publish the output: ") + e.what());
    }
    out.output = final_video;
    return out;
}

Published publish_s3(const std::string& video, const std::string& poster, const S3Config& cfg,
                     const std::string& name) {
    std::string video_key = cfg.key_prefix + name + ".mp4";
    std::string poster_key = cfg.key_prefix + name + ".jpg";
    std::string base = cfg.public_base_url.empty() ? trim_slashes(cfg.endpoint) + "/" + cfg.bucket
                                                   : trim_slashes(cfg.public_base_url);
    Published out;
    bool poster_sent = false;
    try {
        if (exists(poster)) {
            s3_put_file(cfg, poster, poster_key, "image/jpeg");
            poster_sent = true;
            out.thumbnail = base + "/" + uri_encode_key(poster_key);
        }
        out.size = file_size(video);
        s3_put_file(cfg, video, video_key, "video/mp4");
    } catch (const RenderError&) {
        if (poster_sent) {
            S3Response r = s3_request(cfg, "DELETE", poster_key, nullptr, 0, nullptr);
            log::warn("deleted the poster after a failed video upload",
                      {{"key", poster_key}, {"status", r.status}});
        }
        throw;
    } catch (const std::system_error& e) {
        fail(error_type::kIo, std::string("cannot read the output for upload: ") + e.what());
    }
    out.output = base + "/" + uri_encode_key(video_key);
    return out;
}

}  // namespace pv
