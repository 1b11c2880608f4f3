// SPDX-License-Identifier: MIT
// The images API client and output publishing (local and S3) against the
// loopback fake server, which checks bearer tokens and verifies SigV4.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "curl_handle.hpp"
#include "image_api.hpp"
#include "output.hpp"
#include "render/renderer.hpp"
#include "test_server.hpp"

using pv::test::Caught;
using pv::test::TempDir;
using pv::test::TestServer;

namespace {

pv::CurlGlobal g_curl;

template <class F>
std::optional<Caught> error_of(F&& f) {
    try {
        f();
    } catch (const pv::RenderError& e) {
        return Caught{e.error_type(), e.what(), e.retryable()};
    }
    return std::nullopt;
}

pv::FetchOptions fast_options() {
    pv::FetchOptions o;
    o.retries = 1;
    o.retry_backoff_ms = 20;
    return o;
}

pv::ImageApiConfig api_config(const TestServer& server) {
    pv::ImageApiConfig cfg;
    cfg.base_url = server.url("");
    cfg.api_key = "test-image-key";
    cfg.timeout_s = 20;
    return cfg;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

/// GETs a URL from the test server (no address policy: test code only).
std::pair<long, std::string> http_get(const std::string& url) {
    pv::CurlEasy h = pv::make_curl_easy();
    std::string body;
    curl_easy_setopt(h.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(
        h.get(), CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) {
            static_cast<std::string*>(u)->append(d, s * n);
            return s * n;
        });
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &body);
    curl_easy_perform(h.get());
    long status = 0;
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &status);
    return {status, body};
}

/// A one-second MP4 (one video and, unless video_only, one audio stream).
std::string make_mp4(const std::string& dir, const std::string& name, bool video_only = false) {
    std::string path = dir + "/" + name;
    std::string cmd = "ffmpeg -v error -y -f lavfi -i testsrc=size=64x64:rate=10 " +
                      std::string(video_only ? "" : "-f lavfi -i sine=frequency=440 ") +
                      "-t 1 -pix_fmt yuv420p -c:v libx264 " + (video_only ? "" : "-c:a aac ") +
                      "'" + path + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return path;
}

pv::S3Config s3_config(const TestServer& server) {
    pv::S3Config cfg;
    cfg.endpoint = server.url("");
    cfg.bucket = "videos";
    cfg.access_key = "AKTEST";
    cfg.secret_key = "secret/test+key";
    cfg.timeout_s = 20;
    return cfg;
}

}  // namespace

// ---- images API -----------------------------------------------------------------

TEST_CASE("base64 decoding") {
    CHECK(pv::base64_decode("") == "");
    CHECK(pv::base64_decode("TWFu") == "Man");
    CHECK(pv::base64_decode("TWE=") == "Ma");
    CHECK(pv::base64_decode("TQ==") == "M");
    CHECK(pv::base64_decode("TQ") == "M");
    CHECK(pv::base64_decode("aGVs\nbG8g d29y bGQ=") == "hello world");
    CHECK(pv::base64_decode("/+8=") == "\xff\xef");
    CHECK_THROWS_WITH(pv::base64_decode("TW!u"), "unexpected character 0x21");
    CHECK_THROWS_WITH(pv::base64_decode("TQ==TQ"), "data after '=' padding");
    CHECK_THROWS_WITH(pv::base64_decode("T"), "truncated input");
}

TEST_CASE("images endpoint with and without /v1") {
    CHECK(pv::images_endpoint("https://api.openai.com") ==
          "https://api.openai.com/v1/images/generations");
    CHECK(pv::images_endpoint("https://api.openai.com/v1/") ==
          "https://api.openai.com/v1/images/generations");
    CHECK(pv::images_endpoint("http://127.0.0.1:9/") == "http://127.0.0.1:9/v1/images/generations");
}

TEST_CASE("image API configuration from the environment") {
    pv::test::ScopedEnv a("IMAGE_API_KEY", "");
    pv::test::ScopedEnv b("IMAGE_API_BASE_URL", "");
    pv::test::ScopedEnv c("OPENAI_API_KEY", "");
    pv::test::ScopedEnv d("OPENAI_BASE_URL", "");
    CHECK_FALSE(pv::ImageApiConfig::from_env().has_value());
    {
        pv::test::ScopedEnv e("OPENAI_API_KEY", "sk-x");
        auto cfg = pv::ImageApiConfig::from_env();
        REQUIRE(cfg);
        CHECK(cfg->base_url == "https://api.openai.com/v1");
        CHECK(cfg->api_key == "sk-x");
    }
    pv::test::ScopedEnv f("IMAGE_API_KEY", "k");
    pv::test::ScopedEnv g("IMAGE_API_BASE_URL", "http://gen.local");
    pv::test::ScopedEnv h("IMAGE_API_MODEL", "gpt-image-1");
    auto cfg = pv::ImageApiConfig::from_env();
    REQUIRE(cfg);
    CHECK(cfg->base_url == "http://gen.local");
    CHECK(cfg->model == "gpt-image-1");
}

TEST_CASE("promptImage without configuration is a clear asset error") {
    TempDir dir;
    auto err = error_of([&] {
        pv::generate_image(std::nullopt, "scenes[1].promptImage", "a fox", dir.path() + "/p",
                           fast_options());
    });
    REQUIRE(err);
    CHECK(err->type == "asset");
    CHECK(err->message ==
          "scenes[1].promptImage: no image API configured (set "
          "IMAGE_API_BASE_URL and IMAGE_API_KEY)");
    CHECK_FALSE(err->retryable);
}

TEST_CASE("promptImage: the fake API returns an image") {
    TestServer server;
    TempDir dir;
    auto got =
        pv::generate_image(api_config(server), "scenes[0].promptImage", "a red fox in the snow",
                           dir.path() + "/prompt-0", fast_options());
    CHECK(got.format == "jpeg");
    CHECK(got.path == dir.path() + "/prompt-0.jpg");
    CHECK(read_file(got.path) == read_file(pv::test::media_dir() + "/images/FreshFlower.jpg"));
}

TEST_CASE("promptImage: a wrong key is reported with the API's words") {
    TestServer server;
    TempDir dir;
    auto cfg = api_config(server);
    cfg.api_key = "wrong";
    auto err = error_of([&] {
        pv::generate_image(cfg, "scenes[0].promptImage", "fox", dir.path() + "/p", fast_options());
    });
    REQUIRE(err);
    CHECK(err->message ==
          "scenes[0].promptImage: the image API returned HTTP 401: Incorrect API key provided");
    CHECK_FALSE(err->retryable);
}

TEST_CASE("promptImage: server errors are retried, then retryable") {
    TestServer server;
    TempDir dir;
    auto err = error_of([&] {
        pv::generate_image(api_config(server), "scenes[2].promptImage", "server error",
                           dir.path() + "/p", fast_options());
    });
    REQUIRE(err);
    CHECK(err->message ==
          "scenes[2].promptImage: the image API returned HTTP 500: The server had an error");
    CHECK(err->retryable);
}

TEST_CASE("promptImage: a rejected prompt is not retryable") {
    TestServer server;
    TempDir dir;
    auto err = error_of([&] {
        pv::generate_image(api_config(server), "scenes[0].promptImage", "content policy",
                           dir.path() + "/p", fast_options());
    });
    REQUIRE(err);
    CHECK(err->message ==
          "scenes[0].promptImage: the image API returned HTTP 400: Your request "
          "was rejected by the safety system");
    CHECK_FALSE(err->retryable);
}

TEST_CASE("promptImage: an answer that is not an image") {
    TestServer server;
    TempDir dir;
    auto err = error_of([&] {
        pv::generate_image(api_config(server), "scenes[0].promptImage", "not an image",
                           dir.path() + "/p", fast_options());
    });
    REQUIRE(err);
    CHECK(err->message ==
          "scenes[0].promptImage: the image API's answer is an HTML page, not an image");
}

// ---- output checks and local publishing --------------------------------------------

TEST_CASE("sha256 and poster names") {
    CHECK(pv::sha256_hex("abc", 3) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(pv::sha256_hex(nullptr, 0) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(pv::poster_path_for("/out/abc.mp4") == "/out/abc.jpg");
    CHECK(pv::poster_path_for("/out.d/abc") == "/out.d/abc.jpg");
}

TEST_CASE("check_rendered refuses what is not a finished video") {
    TempDir dir;
    auto err = error_of([&] { pv::check_rendered(dir.path() + "/missing.mp4"); });
    REQUIRE(err);
    CHECK(err->type == "encoding");
    CHECK(err->message == "the renderer produced no output file");

    write_file(dir.path() + "/empty.mp4", "");
    err = error_of([&] { pv::check_rendered(dir.path() + "/empty.mp4"); });
    REQUIRE(err);
    CHECK(err->message == "the renderer produced an empty file");

    write_file(dir.path() + "/junk.mp4", std::string(1000, 'x'));
    err = error_of([&] { pv::check_rendered(dir.path() + "/junk.mp4"); });
    REQUIRE(err);
    CHECK(err->message.rfind("rendered output cannot be opened: ", 0) == 0);

    std::string silent = make_mp4(dir.path(), "silent.mp4", true);
    err = error_of([&] { pv::check_rendered(silent); });
    REQUIRE(err);
    CHECK(err->message == "rendered output has 1 video and 0 audio streams, expected 1 and 1");

    auto probe = pv::check_rendered(make_mp4(dir.path(), "good.mp4"));
    CHECK(probe.width == 64);
    CHECK(probe.height == 64);
    CHECK(probe.duration > 0.9);
}

TEST_CASE("publish_local renames into place with the poster beside") {
    TempDir work;
    TempDir out;
    std::string video = make_mp4(work.path(), "render.tmp.mp4");
    std::string poster = work.path() + "/poster.jpg";
    write_file(poster, read_file(pv::test::media_dir() + "/images/FreshFlower.jpg"));
    auto size = std::filesystem::file_size(video);
    auto pub = pv::publish_local(video, poster, out.path() + "/task-1.mp4");
    CHECK(pub.output == out.path() + "/task-1.mp4");
    CHECK(pub.thumbnail == out.path() + "/task-1.jpg");
    CHECK(pub.size == size);
    CHECK(std::filesystem::file_size(pub.output) == size);
    CHECK(std::filesystem::exists(pub.thumbnail));
    CHECK_FALSE(std::filesystem::exists(video));
}

TEST_CASE("publish_local across filesystems copies, syncs and renames") {
    struct stat a {
    }, b{};
    if (::stat("/dev/shm", &a) != 0 || ::stat("/tmp", &b) != 0 || a.st_dev == b.st_dev) {
        MESSAGE("skipped: /dev/shm and /tmp are the same filesystem");
        return;
    }
    TempDir out;
    std::string shm = "/dev/shm/pv-test-" + std::to_string(::getpid());
    std::filesystem::create_directories(shm);
    std::string video = make_mp4(shm, "render.mp4");
    auto size = std::filesystem::file_size(video);
    auto pub = pv::publish_local(video, "", out.path() + "/x.mp4");
    CHECK(pub.thumbnail.empty());
    CHECK(std::filesystem::file_size(out.path() + "/x.mp4") == size);
    CHECK_FALSE(std::filesystem::exists(out.path() + "/.x.mp4.tmp"));
    CHECK_FALSE(std::filesystem::exists(video));
    std::filesystem::remove_all(shm);
}

TEST_CASE("publish_local into a missing directory is an io error and leaves nothing") {
    TempDir work;
    std::string video = make_mp4(work.path(), "render.mp4");
    auto err = error_of([&] { pv::publish_local(video, "", "/nonexistent-dir/x.mp4"); });
    REQUIRE(err);
    CHECK(err->type == "io");
    CHECK(err->message.rfind("cannot publish the output: rename ", 0) == 0);
    CHECK(std::filesystem::exists(video));
}

// ---- S3 -------------------------------------------------------------------------

TEST_CASE("S3 configuration from the environment") {
    pv::test::ScopedEnv a("S3_ENDPOINT", "http://s3.local:9000");
    pv::test::ScopedEnv b("S3_BUCKET", "b");
    pv::test::ScopedEnv c("S3_ACCESS_KEY_ID", "");
    pv::test::ScopedEnv d("S3_SECRET_ACCESS_KEY", "s");
    CHECK_FALSE(pv::S3Config::from_env().has_value());
    pv::test::ScopedEnv e("S3_ACCESS_KEY_ID", "k");
    pv::test::ScopedEnv f("S3_REGION", "");
    auto cfg = pv::S3Config::from_env();
    REQUIRE(cfg);
    CHECK(cfg->region == "us-east-1");
    CHECK(cfg->bucket == "b");
}

TEST_CASE("S3 upload is SigV4-signed and stored") {
    TestServer server;
    TempDir work;
    std::string video = make_mp4(work.path(), "render.mp4");
    std::string poster = work.path() + "/poster.jpg";
    write_file(poster, read_file(pv::test::media_dir() + "/images/FreshFlower.jpg"));
    auto cfg = s3_config(server);
    cfg.key_prefix = "out/";
    auto pub = pv::publish_s3(video, poster, cfg, "task 7");
    CHECK(pub.output == server.url("/videos/out/task%207.mp4"));
    CHECK(pub.thumbnail == server.url("/videos/out/task%207.jpg"));
    CHECK(pub.size == std::filesystem::file_size(video));

    auto [status, body] = http_get(server.url("/s3/videos/out/task%207.mp4"));
    CHECK(status == 200);
    CHECK(body == read_file(video));
    auto [pstatus, pbody] = http_get(server.url("/s3/videos/out/task%207.jpg"));
    CHECK(pstatus == 200);
    CHECK(pbody.size() == std::filesystem::file_size(poster));

    cfg.public_base_url = "https://cdn.example.com/v/";
    pub = pv::publish_s3(video, "", cfg, "t8");
    CHECK(pub.output == "https://cdn.example.com/v/out/t8.mp4");
    CHECK(pub.thumbnail.empty());
}

TEST_CASE("S3 upload with a wrong secret is refused by the signature check") {
    TestServer server;
    TempDir work;
    std::string video = make_mp4(work.path(), "render.mp4");
    auto cfg = s3_config(server);
    cfg.secret_key = "not-the-secret";
    auto err = error_of([&] { pv::publish_s3(video, "", cfg, "t1"); });
    REQUIRE(err);
    CHECK(err->type == "io");
    CHECK(err->message ==
          "upload of videos/t1.mp4 failed: HTTP 403 (SignatureDoesNotMatch: "
          "signature mismatch)");
    CHECK_FALSE(err->retryable);
    CHECK(http_get(server.url("/s3/videos/t1.mp4")).first == 404);
}

TEST_CASE("S3: when the video upload fails, the poster is removed again") {
    TestServer server;
    TempDir work;
    std::string video = make_mp4(work.path(), "render.mp4");
    std::string poster = work.path() + "/poster.jpg";
    write_file(poster, read_file(pv::test::media_dir() + "/images/FreshFlower.jpg"));
    auto err = error_of([&] { pv::publish_s3(video, poster, s3_config(server), "fail-mp4"); });
    REQUIRE(err);
    CHECK(err->message == "upload of videos/fail-mp4.mp4 failed: HTTP 500 (InternalError)");
    CHECK(err->retryable);
    CHECK(http_get(server.url("/s3/videos/fail-mp4.jpg")).first == 404);
}
