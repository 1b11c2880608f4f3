// SPDX-License-Identifier: MIT
// Request validation: one case per rule, each asserting the exact message.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "request.hpp"

#include <cstdlib>
#include <string>

using nlohmann::json;

namespace {

json valid() {
    return json::parse(R"({
        "output_filename": "out.mp4",
        "scenes": [
            {"type": "image", "image": "https://example.com/a.jpg", "duration": 3},
            {"type": "image", "image": "/srv/assets/b.jpg", "duration": 2.5,
             "text": {"content": "Hello", "position": "top", "fontsize": 48,
                      "color": "#ff0000"},
             "subtitle": false}
        ]
    })");
}

std::string error_of(const json& body, const pv::RequestLimits& limits = {}) {
    try {
        pv::parse_request(body, limits);
    } catch (const pv::InvalidRequest& e) {
        return e.what();
    }
    return "(accepted)";
}

}  // namespace

TEST_CASE("a valid request parses with defaults and values") {
    auto req = pv::parse_request(valid());
    CHECK(req.output_filename == "out.mp4");
    REQUIRE(req.scenes.size() == 2);
    CHECK(req.scenes[0].type == pv::SceneType::Image);
    CHECK(req.scenes[0].duration.value() == 3);
    CHECK(req.scenes[1].duration.value() == 2.5);
    REQUIRE(req.scenes[1].text.has_value());
    CHECK(req.scenes[1].text->position == pv::TextPosition::Top);
    CHECK(req.scenes[1].text->fontsize == 48);
    CHECK(req.scenes[1].text->color == "#ff0000");
    CHECK(req.width == 1080);
    CHECK(req.height == 1920);
    CHECK(req.fps == 24);
    CHECK(req.zoom == 1.5);
    CHECK(req.crossfade == 1.0);
    CHECK(req.music_volume == 0.3);
}

TEST_CASE("text defaults follow the original service") {
    auto body = valid();
    body["scenes"][0]["text"] = {{"content", "Hi"}};
    auto req = pv::parse_request(body);
    CHECK(req.scenes[0].text->position == pv::TextPosition::Center);
    CHECK(req.scenes[0].text->fontsize == 36);
    CHECK(req.scenes[0].text->color == "white");
}

TEST_CASE("null fields and unknown fields are accepted") {
    auto body = valid();
    body["scenes"][0]["video"] = nullptr;
    body["scenes"][0]["promptImage"] = nullptr;
    body["client_tag"] = "abc";
    CHECK(error_of(body) == "(accepted)");
}

TEST_CASE("the body must be an object with scenes") {
    CHECK(error_of(json::array()) == "request: must be a JSON object, got an array");
    CHECK(error_of(json::object()) == "scenes: is required (a list of scenes)");
    CHECK(error_of({{"scenes", "x"}}) == "scenes: must be an array, got a string");
    CHECK(error_of({{"scenes", json::array()}}) == "scenes: must contain at least one scene");
}

TEST_CASE("too many scenes") {
    auto body = valid();
    pv::RequestLimits limits;
    limits.max_scenes = 1;
    CHECK(error_of(body, limits) == "scenes: must contain at most 1 scene, got 2");
}

TEST_CASE("scene type") {
    auto body = valid();
    body["scenes"][1] = 5;
    CHECK(error_of(body) == "scenes[1]: must be an object, got an integer");
    body = valid();
    body["scenes"][1].erase("type");
    CHECK(error_of(body) == "scenes[1].type: is required (image or video)");
    body["scenes"][1]["type"] = "gif";
    CHECK(error_of(body) == "scenes[1].type: must be image or video, got \"gif\"");
    body["scenes"][1]["type"] = 3;
    CHECK(error_of(body) == "scenes[1].type: must be a string, got an integer");
}

TEST_CASE("image scene sources") {
    auto body = valid();
    body["scenes"][0].erase("image");
    CHECK(error_of(body) ==
          "scenes[0].image: is required for an image scene (or give promptImage)");
    body["scenes"][0]["promptImage"] = "a red fox";
    CHECK(error_of(body) == "(accepted)");
    body["scenes"][0]["image"] = "https://example.com/a.jpg";
    CHECK(error_of(body) ==
          "scenes[0].promptImage: cannot be combined with image; give one of them");
    body = valid();
    body["scenes"][0]["promptImage"] = "";
    CHECK(error_of(body) == "scenes[0].promptImage: must not be empty");
    body = valid();
    body["scenes"][0]["video"] = "https://example.com/v.mp4";
    CHECK(error_of(body) == "scenes[0].video: is not used by an image scene");
    body = valid();
    body["scenes"][0]["image"] = "";
    CHECK(error_of(body) == "scenes[0].image: must not be empty");
    body["scenes"][0]["image"] = 7;
    CHECK(error_of(body) == "scenes[0].image: must be a string, got an integer");
    body["scenes"][0]["image"] = std::string(5000, 'a');
    CHECK(error_of(body) == "scenes[0].image: must be at most 4096 characters, got 5000");
    body["scenes"][0]["image"] = "a\nb.jpg";
    CHECK(error_of(body) == "scenes[0].image: must not contain control characters");
}

TEST_CASE("source URL schemes") {
    auto body = valid();
    body["scenes"][0]["image"] = "ftp://example.com/a.jpg";
    CHECK(error_of(body) ==
          "scenes[0].image: unsupported URL scheme 'ftp' (use http, https, file or a path)");
    body["scenes"][0]["image"] = "https://";
    CHECK(error_of(body) == "scenes[0].image: URL has nothing after the scheme");
    body["scenes"][0]["image"] = "file:///srv/a.jpg";
    CHECK(error_of(body) == "(accepted)");
    body["scenes"][0]["image"] = "HTTP://example.com/a.jpg";
    CHECK(error_of(body) == "(accepted)");
}

TEST_CASE("local sources must be absolute paths") {
    auto body = valid();
    body["scenes"][0]["image"] = "a.jpg";
    CHECK(error_of(body) ==
          "scenes[0].image: must be an absolute path or an http, https or file URL, got \"a.jpg\"");
    body["scenes"][0]["image"] = "@MEDIA@/Aqua.jpg";
    CHECK(error_of(body) == "scenes[0].image: must be an absolute path or an http, https or "
                            "file URL, got \"@MEDIA@/Aqua.jpg\"");
    body["scenes"][0]["image"] = "./a.jpg";
    CHECK(error_of(body) ==
          "scenes[0].image: must be an absolute path or an http, https or file URL, got "
          "\"./a.jpg\"");
    body["scenes"][0]["image"] = "photos/" + std::string(100, 'x') + ".jpg";
    CHECK(error_of(body) ==
          "scenes[0].image: must be an absolute path or an http, https or file URL, got \"photos/" +
              std::string(73, 'x') + "...\"");
    body["scenes"][0]["image"] = "file://a.jpg";
    CHECK(error_of(body) == "scenes[0].image: file URL must name an absolute path on this host "
                            "(file:///path), got \"file://a.jpg\"");
    body["scenes"][0]["image"] = "file://otherhost/srv/a.jpg";
    CHECK(error_of(body) == "scenes[0].image: file URL must name an absolute path on this host "
                            "(file:///path), got \"file://otherhost/srv/a.jpg\"");
    body["scenes"][0]["image"] = "file://localhost/srv/a.jpg";
    CHECK(error_of(body) == "(accepted)");

    body = valid();
    body["scenes"][0]["narration"] = "n.mp3";
    CHECK(error_of(body) ==
          "scenes[0].narration: must be an absolute path or an http, https or file URL, got "
          "\"n.mp3\"");
    body["scenes"][0]["narration"] = "/srv/n.mp3";
    body["scenes"][0]["music"] = "music/theme.ogg";
    CHECK(error_of(body) ==
          "scenes[0].music: must be an absolute path or an http, https or file URL, got "
          "\"music/theme.ogg\"");
    json video = {{"scenes", {{{"type", "video"}, {"video", "clip.mp4"}}}}};
    CHECK(error_of(video) ==
          "scenes[0].video: must be an absolute path or an http, https or file URL, got "
          "\"clip.mp4\"");
}

TEST_CASE("video scene sources") {
    json body = {{"scenes", {{{"type", "video"}}}}};
    CHECK(error_of(body) == "scenes[0].video: is required for a video scene");
    body["scenes"][0]["video"] = "https://example.com/v.mp4";
    CHECK(error_of(body) == "(accepted)");
    body["scenes"][0]["image"] = "https://example.com/a.jpg";
    CHECK(error_of(body) == "scenes[0].image: is not used by a video scene");
    body["scenes"][0].erase("image");
    body["scenes"][0]["promptImage"] = "fox";
    CHECK(error_of(body) == "scenes[0].promptImage: is not used by a video scene");
}

TEST_CASE("duration range and type") {
    auto body = valid();
    body["scenes"][1]["duration"] = 1000;
    CHECK(error_of(body) == "scenes[1].duration: must be between 0.5 and 120 seconds, got 1000");
    body["scenes"][1]["duration"] = 0.1;
    CHECK(error_of(body) == "scenes[1].duration: must be between 0.5 and 120 seconds, got 0.1");
    body["scenes"][1]["duration"] = -3;
    CHECK(error_of(body) == "scenes[1].duration: must be between 0.5 and 120 seconds, got -3");
    body["scenes"][1]["duration"] = "3";
    CHECK(error_of(body) == "scenes[1].duration: must be a number, got a string");
    body["scenes"][1]["duration"] = true;
    CHECK(error_of(body) == "scenes[1].duration: must be a number, got a boolean");
}

TEST_CASE("duration may come from narration") {
    auto body = valid();
    body["scenes"][0].erase("duration");
    CHECK(error_of(body) == "scenes[0].duration: is required for an image scene without narration");
    body["scenes"][0]["narration"] = "https://example.com/n.mp3";
    CHECK(error_of(body) == "(accepted)");
    body["scenes"][0].erase("narration");
    body["scenes"][0]["narration_text"] = "Hello there";
    CHECK(error_of(body) == "(accepted)");
    body["scenes"][0].erase("narration_text");
    body["narration_text"] = "One narration for the whole video";
    CHECK(error_of(body) == "(accepted)");
}

TEST_CASE("video scene duration is optional") {
    json body = {{"scenes", {{{"type", "video"}, {"video", "/srv/v.mp4"}}}}};
    auto req = pv::parse_request(body);
    CHECK_FALSE(req.scenes[0].duration.has_value());
}

TEST_CASE("narration sources are exclusive") {
    auto body = valid();
    body["scenes"][0]["narration"] = "https://example.com/n.mp3";
    body["scenes"][0]["narration_text"] = "Hi";
    CHECK(error_of(body) ==
          "scenes[0].narration_text: cannot be combined with narration; give one of them");
    body = valid();
    body["narration_text"] = "Global";
    body["scenes"][1]["narration_text"] = "Local";
    CHECK(error_of(body) ==
          "scenes[1].narration_text: cannot be used together with the top-level narration_text");
    body["scenes"][1].erase("narration_text");
    body["scenes"][1]["narration"] = "/srv/n.mp3";
    CHECK(error_of(body) ==
          "scenes[1].narration: cannot be used together with the top-level narration_text");
}

TEST_CASE("narration text length") {
    auto body = valid();
    pv::RequestLimits limits;
    limits.max_narration_chars = 10;
    body["scenes"][0]["narration_text"] = "this is far too long";
    CHECK(error_of(body, limits) ==
          "scenes[0].narration_text: must be at most 10 characters, got 20");
    body = valid();
    body["narration_text"] = "this is far too long";
    CHECK(error_of(body, limits) == "narration_text: must be at most 10 characters, got 20");
}

TEST_CASE("text overlay rules") {
    auto body = valid();
    body["scenes"][1]["text"] = "Hello";
    CHECK(error_of(body) == "scenes[1].text: must be an object, got a string");
    body["scenes"][1]["text"] = json::object();
    CHECK(error_of(body) == "scenes[1].text.content: is required");
    body["scenes"][1]["text"] = {{"content", ""}};
    CHECK(error_of(body) == "scenes[1].text.content: must not be empty");
    body["scenes"][1]["text"] = {{"content", "x"}, {"position", "left"}};
    CHECK(error_of(body) == "scenes[1].text.position: must be center, top or bottom, got \"left\"");
    body["scenes"][1]["text"] = {{"content", "x"}, {"fontsize", 1000}};
    CHECK(error_of(body) == "scenes[1].text.fontsize: must be between 8 and 400, got 1000");
    body["scenes"][1]["text"] = {{"content", "x"}, {"fontsize", 2}};
    CHECK(error_of(body) == "scenes[1].text.fontsize: must be between 8 and 400, got 2");
    body["scenes"][1]["text"] = {{"content", "x"}, {"fontsize", 36.5}};
    CHECK(error_of(body) == "scenes[1].text.fontsize: must be an integer, got 36.5");
    body["scenes"][1]["text"] = {{"content", "x"}, {"fontsize", "big"}};
    CHECK(error_of(body) == "scenes[1].text.fontsize: must be an integer, got a string");
    pv::RequestLimits limits;
    limits.max_text_chars = 3;
    body["scenes"][1]["text"] = {{"content", "abcd"}};
    CHECK(error_of(body, limits) == "scenes[1].text.content: must be at most 3 characters, got 4");
}

TEST_CASE("text colours are what FFmpeg's drawtext accepts") {
    auto body = valid();
    auto color_error = [&](const std::string& color) {
        body["scenes"][1]["text"] = {{"content", "x"}, {"color", color}};
        return error_of(body);
    };
    for (const char* good : {"yellow", "White", "DarkSlateGray", "#ff0000", "#FF000080",
                             "0xFFD700", "ff0000", "red@0.5", "white@0x80", "random"}) {
        INFO(good);
        CHECK(color_error(good) == "(accepted)");
    }
    CHECK(color_error("notacolor") ==
          "scenes[1].text.color: must be a colour name, #RRGGBB or 0xRRGGBB (optionally with "
          "@alpha), got \"notacolor\"");
    CHECK(color_error("#12345") ==
          "scenes[1].text.color: must be a colour name, #RRGGBB or 0xRRGGBB (optionally with "
          "@alpha), got \"#12345\"");
    CHECK(color_error("red@2") ==
          "scenes[1].text.color: must be a colour name, #RRGGBB or 0xRRGGBB (optionally with "
          "@alpha), got \"red@2\"");
    CHECK(color_error("") ==
          "scenes[1].text.color: must be a colour name, #RRGGBB or 0xRRGGBB (optionally with "
          "@alpha), got \"\"");
    CHECK(color_error(std::string("red\0x", 5)) ==
          "scenes[1].text.color: must not contain control characters");
    CHECK(color_error(std::string(33, 'a')) ==
          "scenes[1].text.color: must be at most 32 characters, got 33");
}

TEST_CASE("subtitle must be a boolean") {
    auto body = valid();
    body["scenes"][0]["subtitle"] = "yes";
    CHECK(error_of(body) == "scenes[0].subtitle: must be true or false, got a string");
}

TEST_CASE("output size must be even and in range") {
    auto body = valid();
    body["width"] = 271;
    CHECK(error_of(body) == "width: must be an even number, got 271");
    body["width"] = 10000;
    CHECK(error_of(body) == "width: must be between 64 and 4096, got 10000");
    body["width"] = 270;
    body["height"] = 32;
    CHECK(error_of(body) == "height: must be between 64 and 4096, got 32");
    body["height"] = 480;
    auto req = pv::parse_request(body);
    CHECK(req.width == 270);
    CHECK(req.height == 480);
}

TEST_CASE("optional rendering parameters") {
    auto body = valid();
    body["fps"] = 0;
    CHECK(error_of(body) == "fps: must be between 1 and 60, got 0");
    body["fps"] = 30;
    body["zoom"] = 0.5;
    CHECK(error_of(body) == "zoom: must be between 1 and 4, got 0.5");
    body["zoom"] = 1.2;
    body["darken"] = 2;
    CHECK(error_of(body) == "darken: must be between 0 and 1, got 2");
    body["darken"] = 1;
    body["music_volume"] = -1;
    CHECK(error_of(body) == "music_volume: must be between 0 and 2, got -1");
    body["music_volume"] = 0.5;
    body["crossfade"] = 9;
    CHECK(error_of(body) == "crossfade: must be between 0 and 5 seconds, got 9");
    body["crossfade"] = 0.25;
    body["voice"] = "en; rm -rf";
    CHECK(error_of(body) == "voice: must be an espeak-ng voice name (letters, digits, - _ + /)");
    body["voice"] = "en-us";
    auto req = pv::parse_request(body);
    CHECK(req.fps == 30);
    CHECK(req.zoom == 1.2);
    CHECK(req.crossfade == 0.25);
    CHECK(req.voice == "en-us");
}

TEST_CASE("crossfade must be shorter than every explicit scene") {
    auto body = valid();
    body["scenes"][1]["duration"] = 1;
    CHECK(error_of(body) ==
          "crossfade: must be shorter than every scene, but scenes[1] lasts 1 "
          "seconds and crossfade is 1");
    body["crossfade"] = 0;
    CHECK(error_of(body) == "(accepted)");
}

TEST_CASE("total duration") {
    auto body = valid();
    pv::RequestLimits limits;
    limits.max_total_duration = 4;
    // 3 + 2.5 - 1 crossfade = 4.5
    CHECK(error_of(body, limits) == "scenes: total duration must be at most 4 seconds, got 4.5");
    limits.max_total_duration = 4.5;
    CHECK(error_of(body, limits) == "(accepted)");
}

TEST_CASE("output_filename") {
    auto body = valid();
    body["output_filename"] = "../etc/passwd";
    CHECK(error_of(body) ==
          "output_filename: must be a plain file name without '/', '\\' or "
          "control characters");
    body["output_filename"] = ".hidden.mp4";
    CHECK(error_of(body) == "output_filename: must not start with '.'");
    body["output_filename"] = "";
    CHECK(error_of(body) == "output_filename: must not be empty");
    body["output_filename"] = 3;
    CHECK(error_of(body) == "output_filename: must be a string, got an integer");
    body.erase("output_filename");
    CHECK(error_of(body) == "(accepted)");
}

TEST_CASE("InvalidRequest carries the field path") {
    auto body = valid();
    body["scenes"][1]["duration"] = 1000;
    try {
        pv::parse_request(body);
        FAIL("accepted");
    } catch (const pv::InvalidRequest& e) {
        CHECK(e.field() == "scenes[1].duration");
    }
}

TEST_CASE("limits_from_env reads overrides and refuses garbage") {
    ::setenv("MAX_SCENES", "3", 1);
    ::setenv("MAX_SCENE_DURATION", "10", 1);
    ::setenv("MAX_TOTAL_DURATION", "20", 1);
    ::setenv("MAX_OUTPUT_SIDE", "1920", 1);
    auto limits = pv::limits_from_env();
    CHECK(limits.max_scenes == 3);
    CHECK(limits.max_scene_duration == 10);
    CHECK(limits.max_total_duration == 20);
    CHECK(limits.max_side == 1920);
    auto body = valid();
    body["scenes"][0]["duration"] = 11;
    CHECK(error_of(body, limits) ==
          "scenes[0].duration: must be between 0.5 and 10 seconds, got 11");

    ::setenv("MAX_SCENES", "many", 1);
    CHECK_THROWS_WITH(pv::limits_from_env(),
                      "environment variable MAX_SCENES must be a number between 1 and 10000, "
                      "got \"many\"");
    ::unsetenv("MAX_SCENES");
    ::unsetenv("MAX_SCENE_DURATION");
    ::unsetenv("MAX_TOTAL_DURATION");
    ::unsetenv("MAX_OUTPUT_SIDE");
    CHECK(pv::limits_from_env().max_scenes == 50);
}
