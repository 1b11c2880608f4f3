// SPDX-License-Identifier: MIT
// Asset sniffing, the asset policy, and the fetcher against a loopback server
// with fault routes (notes/video.md Part 2 §10).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "asset_policy.hpp"
#include "curl_handle.hpp"
#include "fetch.hpp"
#include "render/renderer.hpp"
#include "sniff.hpp"
#include "test_server.hpp"

using pv::AssetKind;
using pv::AssetRequest;
using pv::test::Caught;
using pv::test::TestServer;

namespace {

pv::CurlGlobal g_curl;

pv::FetchOptions fast_options() {
    pv::FetchOptions o;
    o.connect_timeout_s = 5;
    o.timeout_s = 30;
    o.low_speed_time_s = 2;
    o.retries = 0;
    o.retry_backoff_ms = 50;
    return o;
}

pv::AssetPolicy loopback_allowed() {
    pv::AssetPolicy p;
    p.set_allowed_hosts({"127.0.0.1"});
    return p;
}

AssetRequest asset(const std::string& source, AssetKind kind = AssetKind::Image,
                   const std::string& field = "scenes[0].image") {
    AssetRequest a;
    a.field = field;
    a.source = source;
    a.kind = kind;
    return a;
}

std::optional<Caught> fetch_error(const std::vector<AssetRequest>& assets,
                                  const pv::AssetPolicy& policy,
                                  const pv::FetchOptions& options = fast_options()) {
    pv::test::TempDir dir;
    try {
        pv::fetch_assets(assets, dir.path(), policy, options);
    } catch (const pv::RenderError& e) {
        return Caught{e.error_type(), e.what(), e.retryable()};
    }
    return std::nullopt;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

int hits(const TestServer& server, const std::string& path) {
    pv::CurlEasy h = pv::make_curl_easy();
    std::string body;
    curl_easy_setopt(h.get(), CURLOPT_URL, server.url("/stats").c_str());
    curl_easy_setopt(
        h.get(), CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) {
            static_cast<std::string*>(u)->append(d, s * n);
            return s * n;
        });
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &body);
    curl_easy_perform(h.get());
    auto j = nlohmann::json::parse(body);
    return j["hits"].value(path, 0);
}

}  // namespace

// ---- sniffing ---------------------------------------------------------------

TEST_CASE("sniff recognises formats by their bytes") {
    using pv::ContentClass;
    auto check = [](std::string bytes, ContentClass cls, const char* format) {
        bytes.resize(64, '\0');
        auto s = pv::sniff_bytes(bytes);
        CHECK(s.cls == cls);
        CHECK(s.format == format);
    };
    check("\xFF\xD8\xFF\xE0", ContentClass::Image, "jpeg");
    check("\x89PNG\r\n\x1A\n", ContentClass::Image, "png");
    check("GIF89a", ContentClass::Image, "gif");
    check(std::string("RIFF\0\0\0\0WEBPVP8 ", 16), ContentClass::Image, "webp");
    check("ID3\x04", ContentClass::Audio, "mp3");
    check("\xFF\xFB\x90\x64", ContentClass::Audio, "mp3");
    check("OggS", ContentClass::Audio, "ogg");
    check(std::string("RIFF\0\0\0\0WAVEfmt ", 16), ContentClass::Audio, "wav");
    check("fLaC", ContentClass::Audio, "flac");
    check(std::string("\0\0\0\x20"
                      "ftypM4A ",
                      12),
          ContentClass::Audio, "m4a");
    check(std::string("\0\0\0\x20"
                      "ftypisom",
                      12),
          ContentClass::AudioOrVideo, "mp4");
    check(std::string("\0\0\0\x14"
                      "ftypqt  ",
                      12),
          ContentClass::Video, "mov");
    check("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm", ContentClass::AudioOrVideo,
          "webm");
    check("<!DOCTYPE html><html>", ContentClass::Html, "html");
    check("\n  <html lang=en>", ContentClass::Html, "html");
    check("{\"error\": 1}", ContentClass::Json, "json");
}

TEST_CASE("check_content names the mismatch") {
    pv::Sniffed html{pv::ContentClass::Html, "html"};
    CHECK(pv::check_content(html, 500, AssetKind::Image).value() ==
          "is an HTML page, not an image");
    pv::Sniffed ogg{pv::ContentClass::Audio, "ogg"};
    CHECK(pv::check_content(ogg, 5000, AssetKind::Image).value() ==
          "is an audio file (ogg), not an image");
    CHECK_FALSE(pv::check_content(ogg, 5000, AssetKind::Audio).has_value());
    pv::Sniffed jpeg{pv::ContentClass::Image, "jpeg"};
    CHECK(pv::check_content(jpeg, 5000, AssetKind::Video).value() ==
          "is an image (jpeg), not a video");
    pv::Sniffed mp3{pv::ContentClass::Audio, "mp3"};
    CHECK(pv::check_content(mp3, 3, AssetKind::Audio).value() ==
          "is only 3 bytes, too small to be an audio file");
    CHECK(pv::check_content(mp3, 0, AssetKind::Audio).value() == "is empty, not an audio file");
    pv::Sniffed mp4{pv::ContentClass::AudioOrVideo, "mp4"};
    CHECK_FALSE(pv::check_content(mp4, 5000, AssetKind::Video).has_value());
    CHECK_FALSE(pv::check_content(mp4, 5000, AssetKind::Audio).has_value());
}

TEST_CASE("sniff_file reads real media") {
    auto media = pv::test::media_dir();
    CHECK(pv::sniff_file(media + "/images/Aqua.jpg").format == "jpeg");
    CHECK(pv::sniff_file(media + "/audio/bell.oga").format == "ogg");
}

// ---- addresses and local paths --------------------------------------------------

TEST_CASE("non-public addresses are classified") {
    auto v4 = [](const char* text) {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        ::inet_pton(AF_INET, text, &sa.sin_addr);
        return std::string(pv::forbidden_address_class(reinterpret_cast<sockaddr*>(&sa)));
    };
    auto v6 = [](const char* text) {
        sockaddr_in6 sa{};
        sa.sin6_family = AF_INET6;
        ::inet_pton(AF_INET6, text, &sa.sin6_addr);
        return std::string(pv::forbidden_address_class(reinterpret_cast<sockaddr*>(&sa)));
    };
    CHECK(v4("127.0.0.1") == "loopback");
    CHECK(v4("10.1.2.3") == "private");
    CHECK(v4("172.16.0.1") == "private");
    CHECK(v4("172.31.255.255") == "private");
    CHECK(v4("172.32.0.1") == "");
    CHECK(v4("192.168.1.1") == "private");
    CHECK(v4("169.254.169.254") == "cloud metadata");
    CHECK(v4("169.254.1.1") == "link-local");
    CHECK(v4("0.0.0.0") == "unspecified (0.0.0.0/8)");
    CHECK(v4("100.64.0.1") == "shared (carrier-grade NAT)");
    CHECK(v4("8.8.8.8") == "");
    CHECK(v4("93.184.216.34") == "");
    CHECK(v6("::1") == "loopback");
    CHECK(v6("::") == "unspecified (::)");
    CHECK(v6("fd00::1") == "private (unique local)");
    CHECK(v6("fe80::1") == "link-local");
    CHECK(v6("::ffff:127.0.0.1") == "loopback");
    CHECK(v6("::ffff:169.254.169.254") == "cloud metadata");
    CHECK(v6("::ffff:8.8.8.8") == "");
    CHECK(v6("2001:4860:4860::8888") == "");
}

TEST_CASE("split_url finds the host") {
    CHECK(pv::split_url("https://User:pw@Example.COM:8443/a?b").value().host == "example.com");
    CHECK(pv::split_url("http://[::1]:80/x").value().host == "::1");
    CHECK(pv::split_url("HTTP://h/x").value().scheme == "http");
    CHECK_FALSE(pv::split_url("/no/scheme").has_value());
}

TEST_CASE("allowed hosts are split on commas and colons") {
    pv::test::ScopedEnv env("FETCH_ALLOW_HOSTS", "127.0.0.1, minio:[::1],Localhost");
    auto p = pv::AssetPolicy::from_env();
    CHECK(p.host_allowed("127.0.0.1"));
    CHECK(p.host_allowed("minio"));
    CHECK(p.host_allowed("::1"));
    CHECK(p.host_allowed("[::1]"));
    CHECK(p.host_allowed("localhost"));
    CHECK_FALSE(p.host_allowed("10.0.0.1"));
}

TEST_CASE("local paths only inside ASSET_ROOTS") {
    auto media = pv::test::media_dir();
    pv::AssetPolicy none;
    std::string out;
    CHECK(none.resolve_local(media + "/images/Aqua.jpg", out).value() ==
          "is a local path, but no ASSET_ROOTS are configured");

    pv::AssetPolicy p;
    p.set_roots({media + "/images", "/nonexistent-root"});
    REQUIRE(p.roots().size() == 1);
    CHECK_FALSE(p.resolve_local(media + "/images/Aqua.jpg", out).has_value());
    CHECK(out == std::filesystem::canonical(media + "/images/Aqua.jpg").string());
    CHECK_FALSE(p.resolve_local("file://" + media + "/images/Aqua.jpg", out).has_value());
    CHECK(p.resolve_local(media + "/images/../audio/bell.oga", out).value() ==
          "is outside ASSET_ROOTS");
    CHECK(p.resolve_local("/etc/passwd", out).value() == "is outside ASSET_ROOTS");
    CHECK(p.resolve_local("images/Aqua.jpg", out).value() == "must be an absolute path");
    CHECK(p.resolve_local("file://otherhost/x.jpg", out).value() == "names a file on another host");
    CHECK(p.resolve_local(media + "/images", out).value() == "is not a regular file");
}

TEST_CASE("a symlink inside a root that points outside is refused") {
    pv::test::TempDir dir;
    std::filesystem::create_symlink("/etc/passwd", dir.path() + "/link.jpg");
    pv::AssetPolicy p;
    p.set_roots({dir.path()});
    std::string out;
    CHECK(p.resolve_local(dir.path() + "/link.jpg", out).value() == "is outside ASSET_ROOTS");
}

TEST_CASE("fetch: local path outside ASSET_ROOTS and ../ escape") {
    auto media = pv::test::media_dir();
    pv::AssetPolicy p;
    p.set_roots({media + "/images"});
    auto err = fetch_error({asset("/etc/passwd")}, p);
    REQUIRE(err);
    CHECK(err->type == "asset");
    CHECK(err->message == "scenes[0].image: /etc/passwd is outside ASSET_ROOTS");
    CHECK_FALSE(err->retryable);

    std::string escape = media + "/images/../audio/bell.oga";
    err = fetch_error({asset(escape, AssetKind::Audio, "scenes[1].music")}, p);
    REQUIRE(err);
    CHECK(err->message == "scenes[1].music: " + escape + " is outside ASSET_ROOTS");
}

TEST_CASE("fetch: local files inside ASSET_ROOTS are used in place") {
    auto media = pv::test::media_dir();
    pv::AssetPolicy p;
    p.set_roots({media});
    pv::test::TempDir dir;
    auto got = pv::fetch_assets(
        {asset(media + "/images/Aqua.jpg"),
         asset("file://" + media + "/audio/bell.oga", AssetKind::Audio, "scenes[0].music")},
        dir.path(), p, fast_options());
    REQUIRE(got.size() == 2);
    CHECK(got[0].format == "jpeg");
    CHECK(got[1].format == "ogg");
    CHECK(got[1].size == std::filesystem::file_size(media + "/audio/bell.oga"));

    auto err = fetch_error({asset(media + "/audio/bell.oga")}, p);
    REQUIRE(err);
    CHECK(err->message ==
          "scenes[0].image: " + media + "/audio/bell.oga is an audio file (ogg), not an image");
}

// ---- network ----------------------------------------------------------------

TEST_CASE("fetch: a plain download lands in the work dir with a sniffed extension") {
    TestServer server;
    pv::test::TempDir dir;
    std::vector<double> progress;
    auto got = pv::fetch_assets({asset(server.url("/media/images/Aqua.jpg"))}, dir.path(),
                                loopback_allowed(), fast_options(),
                                [&](double f) { progress.push_back(f); });
    REQUIRE(got.size() == 1);
    CHECK(got[0].path == dir.path() + "/asset-0.jpg");
    CHECK(got[0].format == "jpeg");
    CHECK(read_file(got[0].path) == read_file(pv::test::media_dir() + "/images/Aqua.jpg"));
    REQUIRE_FALSE(progress.empty());
    CHECK(progress.back() == 1.0);
}

TEST_CASE("fetch: an HTML page at image.jpg?sig=... is refused by its bytes") {
    TestServer server;
    std::string url = server.url("/fault/html/image.jpg?sig=abc123");
    auto err = fetch_error({asset(url)}, loopback_allowed());
    REQUIRE(err);
    CHECK(err->type == "asset");
    CHECK(err->message == "scenes[0].image: " + url + " is an HTML page, not an image");
    CHECK_FALSE(err->retryable);
}

TEST_CASE("fetch: a JPEG cut at 50% with a lying Content-Length") {
    TestServer server;
    std::string url = server.url("/fault/truncated.jpg");
    auto err = fetch_error({asset(url)}, loopback_allowed());
    REQUIRE(err);
    CHECK(err->type == "asset");
    CHECK(err->message.rfind("scenes[0].image: " + url + " was truncated", 0) == 0);
    CHECK(err->retryable);
}

TEST_CASE("fetch: a truncated JPEG without a length is passed on (the decoder decides)") {
    // Documented rule: without a Content-Length the fetcher cannot know; the
    // renderer fails on the broken JPEG and names the asset.
    TestServer server;
    pv::test::TempDir dir;
    auto got = pv::fetch_assets({asset(server.url("/fault/truncated-nolength.jpg"))}, dir.path(),
                                loopback_allowed(), fast_options());
    CHECK(got[0].format == "jpeg");
    CHECK(got[0].size ==
          std::filesystem::file_size(pv::test::media_dir() + "/images/FreshFlower.jpg") / 2);
}

TEST_CASE("fetch: a 3-byte MP3 is too small") {
    TestServer server;
    std::string url = server.url("/fault/tiny.mp3");
    auto err =
        fetch_error({asset(url, AssetKind::Audio, "scenes[2].narration")}, loopback_allowed());
    REQUIRE(err);
    CHECK(err->message ==
          "scenes[2].narration: " + url + " is only 3 bytes, too small to be an audio file");
    CHECK_FALSE(err->retryable);
}

TEST_CASE("fetch: audio where an image is expected") {
    TestServer server;
    std::string url = server.url("/fault/audio-as-image.jpg");
    auto err = fetch_error({asset(url)}, loopback_allowed());
    REQUIRE(err);
    CHECK(err->message == "scenes[0].image: " + url + " is an audio file (ogg), not an image");
}

TEST_CASE("fetch: a 301 -> 302 -> 200 chain is followed") {
    TestServer server;
    pv::test::TempDir dir;
    auto got = pv::fetch_assets({asset(server.url("/fault/chain/start.jpg"))}, dir.path(),
                                loopback_allowed(), fast_options());
    CHECK(got[0].format == "jpeg");
    CHECK(hits(server, "/fault/chain/middle.jpg") == 1);
    CHECK(hits(server, "/media/images/FreshFlower.jpg") == 1);
}

TEST_CASE("fetch: five redirects are followed, six are refused") {
    TestServer server;
    pv::test::TempDir dir;
    auto got = pv::fetch_assets({asset(server.url("/fault/hops/5"))}, dir.path(),
                                loopback_allowed(), fast_options());
    CHECK(got[0].format == "jpeg");

    std::string url = server.url("/fault/hops/6");
    auto err = fetch_error({asset(url)}, loopback_allowed());
    REQUIRE(err);
    CHECK(err->message == "scenes[0].image: " + url + " redirected more than 5 times");
    CHECK_FALSE(err->retryable);
}

TEST_CASE("fetch: a server sending 1 byte/s hits the low-speed limit") {
    TestServer server;
    std::string url = server.url("/fault/slow.jpg");
    auto start = std::chrono::steady_clock::now();
    auto err = fetch_error({asset(url)}, loopback_allowed());
    auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE(err);
    CHECK(err->message.rfind("scenes[0].image: download of " + url + " timed out", 0) == 0);
    CHECK(err->retryable);
    CHECK(elapsed < std::chrono::seconds(10));
}

TEST_CASE("fetch: FETCH_LOW_SPEED_TIME and friends come from the environment") {
    pv::test::ScopedEnv a("FETCH_LOW_SPEED_TIME", "2");
    pv::test::ScopedEnv b("FETCH_RETRIES", "0");
    pv::test::ScopedEnv c("FETCH_MAX_BYTES", "1048576");
    auto o = pv::FetchOptions::from_env();
    CHECK(o.low_speed_time_s == 2);
    CHECK(o.retries == 0);
    CHECK(o.max_bytes == 1048576);
    pv::test::ScopedEnv d("FETCH_RETRIES", "lots");
    CHECK_THROWS_WITH(pv::FetchOptions::from_env(),
                      "environment variable FETCH_RETRIES must be an integer between 0 and 10, "
                      "got \"lots\"");
}

TEST_CASE("fetch: 503 then 200 is retried") {
    TestServer server;
    pv::test::TempDir dir;
    auto options = fast_options();
    options.retries = 2;
    auto got = pv::fetch_assets({asset(server.url("/fault/flaky/a.jpg"))}, dir.path(),
                                loopback_allowed(), options);
    CHECK(got[0].format == "jpeg");
    CHECK(hits(server, "/fault/flaky/a.jpg") == 2);
}

TEST_CASE("fetch: HTTP errors") {
    TestServer server;
    std::string url = server.url("/fault/status/404");
    auto options = fast_options();
    options.retries = 2;
    auto err = fetch_error({asset(url)}, loopback_allowed(), options);
    REQUIRE(err);
    CHECK(err->message == "scenes[0].image: HTTP 404 from " + url);
    CHECK_FALSE(err->retryable);
    CHECK(hits(server, "/fault/status/404") == 1);

    url = server.url("/fault/status/503");
    options.retries = 1;
    err = fetch_error({asset(url)}, loopback_allowed(), options);
    REQUIRE(err);
    CHECK(err->message == "scenes[0].image: HTTP 503 from " + url);
    CHECK(err->retryable);
    CHECK(hits(server, "/fault/status/503") == 2);
}

TEST_CASE("fetch: loopback is refused unless FETCH_ALLOW_HOSTS lists it") {
    TestServer server;
    std::string url = server.url("/media/images/Aqua.jpg");
    auto err = fetch_error({asset(url)}, pv::AssetPolicy{});
    REQUIRE(err);
    CHECK(err->type == "asset");
    CHECK(err->message == "scenes[0].image: " + url +
                              " resolves to 127.0.0.1, a loopback address; refused (list the "
                              "host in FETCH_ALLOW_HOSTS to allow it)");
    CHECK_FALSE(err->retryable);
    CHECK(hits(server, "/media/images/Aqua.jpg") == 0);
}

TEST_CASE("fetch: a redirect to a forbidden address is refused at connect time") {
    TestServer server;
    // "localhost" is allowed by name; the redirect target 127.0.0.1 is not.
    pv::AssetPolicy p;
    p.set_allowed_hosts({"localhost"});
    std::string target = server.url("/media/images/Aqua.jpg");
    std::string url =
        "http://localhost:" + std::to_string(server.port()) + "/fault/redirect-to/x?url=" + target;
    auto err = fetch_error({asset(url)}, p);
    REQUIRE(err);
    CHECK(err->message.find("resolves to 127.0.0.1, a loopback address; refused") !=
          std::string::npos);
    CHECK(hits(server, "/media/images/Aqua.jpg") == 0);
}

TEST_CASE("fetch: redirects to other protocols are refused") {
    TestServer server;
    std::string url = server.url("/fault/redirect-to/x?url=file:///etc/passwd");
    auto err = fetch_error({asset(url)}, loopback_allowed());
    REQUIRE(err);
    CHECK(err->message.rfind("scenes[0].image: " + url + " redirected to a URL that is not http",
                             0) == 0);
}

TEST_CASE("fetch: the size cap") {
    TestServer server;
    auto options = fast_options();
    options.max_bytes = 100 * 1024;
    std::string url = server.url("/media/images/Elephants.jpg");
    auto err = fetch_error({asset(url)}, loopback_allowed(), options);
    REQUIRE(err);
    CHECK(err->message == "scenes[0].image: " + url +
                              " is larger than the 100 KB limit "
                              "(FETCH_MAX_BYTES)");
}

TEST_CASE("fetch: several assets in parallel, identical URLs fetched once") {
    TestServer server;
    pv::test::TempDir dir;
    std::string img = server.url("/media/images/Aqua.jpg");
    std::string music = server.url("/media/audio/elf-land.ogg");
    auto got = pv::fetch_assets(
        {asset(img),
         asset(server.url("/media/images/Storm.jpg"), AssetKind::Image, "scenes[1].image"),
         asset(music, AssetKind::Audio, "scenes[0].music"),
         asset(music, AssetKind::Audio, "scenes[1].music"),
         asset(img, AssetKind::Image, "scenes[2].image")},
        dir.path(), loopback_allowed(), fast_options());
    REQUIRE(got.size() == 5);
    CHECK(got[0].path == got[4].path);
    CHECK(got[2].path == got[3].path);
    CHECK(got[2].format == "ogg");
    CHECK(got[1].format == "jpeg");
    CHECK(hits(server, "/media/images/Aqua.jpg") == 1);
    CHECK(hits(server, "/media/audio/elf-land.ogg") == 1);
}

TEST_CASE("collect_assets names every field") {
    auto req = pv::parse_request(nlohmann::json::parse(R"({"scenes": [
        {"type": "image", "image": "https://h/a.jpg", "duration": 2,
         "narration": "https://h/n.mp3", "music": "https://h/m.ogg"},
        {"type": "video", "video": "https://h/v.mp4"},
        {"type": "image", "promptImage": "a fox", "duration": 2}]})"));
    auto assets = pv::collect_assets(req);
    REQUIRE(assets.size() == 4);
    CHECK(assets[0].field == "scenes[0].image");
    CHECK(assets[1].field == "scenes[0].narration");
    CHECK(assets[1].kind == AssetKind::Audio);
    CHECK(assets[2].field == "scenes[0].music");
    CHECK(assets[3].field == "scenes[1].video");
    CHECK(assets[3].kind == AssetKind::Video);
}
