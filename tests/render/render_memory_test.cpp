// SPDX-License-Identifier: MIT
// Memory: rendering again in the same process keeps no memory and no threads,
// and a 13 s three-scene 1080x1920 reel stays under the peak budget.
#include "render_fixtures.hpp"

#include <doctest/doctest.h>

#include <malloc.h>

#include <cstdlib>
#include <fstream>
#include <string>

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

// The resident set once the allocator has handed back what it holds free.
long settled_rss_kb() {
    ::malloc_trim(0);
    return pvtest::rss_kb();
}

// What the program holds from malloc (all arenas and mmapped blocks), in kB.
long heap_in_use_kb() {
    struct mallinfo2 m = ::mallinfo2();
    return static_cast<long>((m.uordblks + m.hblkhd) / 1024);
}

// Three photos (one of 5640x3172), music, narration with captions and a text
// overlay, at 360x640.
pv::RenderJob memory_job(const TempDir& dir) {
    auto job = image_job(dir,
                         {media("images/Aqua.jpg"), media("images/Elephants_5640x3172.jpg"),
                          media("images/Storm.jpg")},
                         360, 640, 1.0);
    job.files[1].music = media("audio/elf-land.ogg");
    job.request.scenes[2].narration_text = "Memory stays flat.";
    job.request.scenes[2].subtitle = true;
    job.request.scenes[0].text = pv::TextOverlay{"Twice", pv::TextPosition::Top, 60, "white"};
    return job;
}

}  // namespace

TEST_CASE("rendering again in one process keeps no memory and no threads") {
    TempDir dir;
    auto job = memory_job(dir);
    pv::render(job);  // warms up allocator arenas, espeak-ng and codec tables
    const long threads = status_kb("Threads:");
    // What the renderer keeps is measured as the memory it holds from malloc
    // (FFmpeg's and x264's buffers come from it too) and its thread count. The
    // resident set is only reported: between identical renders it moved by up
    // to 20 MB and stayed there for renders at a time, glibc keeping freed
    // memory in the arenas of the threads that used it.
    long heap[4];
    long rss[4];
    for (int i = 0; i < 4; ++i) {
        pv::render(job);
        heap[i] = heap_in_use_kb();
        rss[i] = settled_rss_kb();
        CHECK(status_kb("Threads:") == threads);
    }
    MESSAGE("malloc'd kB after renders: " << heap[0] << " " << heap[1] << " " << heap[2] << " "
                                          << heap[3]);
    MESSAGE("RSS kB after renders: " << rss[0] << " " << rss[1] << " " << rss[2] << " " << rss[3]);
    // One leaked 1080x1920 frame alone would be 3 MB; a few kB per render are
    // caches growing (codec and font lookups).
    CHECK(heap[3] - heap[0] < 1024);
}

// With a single malloc arena nothing is parked in per-thread arenas and the
// resident set itself is repeatable (it moved by under 0.2 MB across renders
// here). The meson test render_rss runs this case alone with
// MALLOC_ARENA_MAX=1; the plain run skips it. In production every task is a
// fresh child process, so the arena count changes nothing there.
TEST_CASE("with one malloc arena, rendering again leaves the resident set within 4 MB" *
          doctest::skip()) {
    const char* arenas = std::getenv("MALLOC_ARENA_MAX");
    REQUIRE_MESSAGE((arenas && std::string(arenas) == "1"),
                    "run with MALLOC_ARENA_MAX=1 (meson test render_rss)");
    TempDir dir;
    auto job = memory_job(dir);
    pv::render(job);  // warm-up
    const long first = settled_rss_kb();
    for (int i = 0; i < 3; ++i) {
        pv::render(job);
        long now = settled_rss_kb();
        MESSAGE("RSS kB: first " << first << ", after render " << i + 2 << ": " << now);
        CHECK(now - first < 4 * 1024);
    }
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
