// SPDX-License-Identifier: MIT
// Memory: rendering again in the same process does not grow the resident set,
// and a 13 s three-scene 1080x1920 reel stays under the peak budget.
#include "render_fixtures.hpp"

#include <doctest/doctest.h>

#include <fstream>

using pvtest::image_job;
using pvtest::media;
using pvtest::TempDir;

namespace {

long status_kb(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string k;
    while (in >> k) {
        if (k == key) {
            long kb = 0;
            in >> kb;
            return kb;
        }
        std::string rest;
        std::getline(in, rest);
    }
    return 0;
}

}  // namespace

TEST_CASE("rendering twice in one process leaves the resident set where it was") {
    TempDir dir;
    auto job = image_job(dir,
                         {media("images/Aqua.jpg"), media("images/Elephants_5640x3172.jpg"),
                          media("images/Storm.jpg")},
                         360, 640, 1.0);
    job.files[1].music = media("audio/elf-land.ogg");
    job.request.scenes[2].narration_text = "Memory stays flat.";
    job.request.scenes[2].subtitle = true;
    job.request.scenes[0].text = pv::TextOverlay{"Twice", pv::TextPosition::Top, 60, "white"};
    pv::render(job);  // warms up allocator arenas, espeak-ng and codec tables
    long first = pvtest::rss_kb();
    pv::render(job);
    long second = pvtest::rss_kb();
    pv::render(job);
    long third = pvtest::rss_kb();
    MESSAGE("RSS kB after renders: " << first << " " << second << " " << third);
    CHECK(second - first < 4 * 1024);
    CHECK(third - first < 4 * 1024);
}

// libx264 itself takes most of the peak: about 340 MB at 1080x1920 with the
// veryfast preset and two threads (the same in the ffmpeg CLI), so the budget
// is checked with ultrafast, which image_job() selects.
TEST_CASE("peak memory of a 13 s three-scene 1080x1920 reel (ultrafast) stays under 300 MB") {
    TempDir dir;
    auto job = image_job(dir,
                         {media("images/LadyBird.jpg"), media("images/Elephants_5640x3172.jpg"),
                          media("images/Storm.jpg")},
                         1080, 1920, 5.0);
    job.files[0].music = media("audio/frantic-old.ogg");
    job.request.scenes[1].text =
        pv::TextOverlay{"Peak memory", pv::TextPosition::Bottom, 60, "white"};
    // Writing 5 to clear_refs resets VmHWM, the peak resident set.
    std::ofstream("/proc/self/clear_refs") << "5";
    long before = status_kb("VmRSS:");
    pv::RenderResult result = pv::render(job);
    long peak = status_kb("VmHWM:");
    MESSAGE("RSS before " << before << " kB, peak during render " << peak << " kB");
    CHECK(result.frames == 13 * 24);
    CHECK(peak - before < 300 * 1024);
    CHECK(peak < 300 * 1024 + before / 2);
}
