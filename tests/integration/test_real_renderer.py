"""The real renderer (protovideo-render) under the supervisor: a real request
from the shared photographs completes with the expected video, and the same
request under a 60 MB memory limit fails as a memory failure."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import BUILD_DIR

RENDERER = BUILD_DIR / "child" / "protovideo-render"
MEDIA = Path(os.environ.get("PV_MEDIA_DIR") or
             Path(__file__).resolve().parents[3] / "shared" / "media")
MEMORY_TEXT = re.compile(r"^Memory limit exceeded: (\d+\.\d)MB$")

REQUEST = {
    "output_filename": "real.mp4",
    "crossfade": 0.5,
    "scenes": [
        {"type": "image", "image": str(MEDIA / "images" / "Aqua.jpg"), "duration": 1.5,
         "text": {"content": "Don't stop: 100%", "position": "bottom"}},
        {"type": "image", "image": str(MEDIA / "images" / "LadyBird.jpg"), "duration": 1.5},
    ],
}


@pytest.fixture
def renderer_env(tmp_path):
    if not RENDERER.exists():
        pytest.skip(f"{RENDERER} is not built")
    if not (MEDIA / "images" / "Aqua.jpg").exists():
        pytest.skip(f"no shared media at {MEDIA}")
    out = tmp_path / "output"
    out.mkdir()
    out.chmod(0o1777)  # the child runs as nobody
    for p in (tmp_path, *tmp_path.parents):
        if p == Path("/"):
            break
        p.chmod(p.stat().st_mode | 0o011)
    return {"OUTPUT_DIR": str(out), "ASSET_ROOTS": str(MEDIA / "images")}, out


def probe(path):
    text = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        check=True, capture_output=True, text=True).stdout
    return {s["codec_type"]: s for s in json.loads(text)["streams"]}


def test_real_request_completes(pv, renderer_env):
    env, out = renderer_env
    tid = pv.insert(REQUEST)
    pv.run(env=env, child_command=str(RENDERER), timeout=300)
    task = pv.task(tid)
    assert task["status"] == "completed", (task, pv.attempts(tid))
    result = task["result"]
    video = Path(result["output"])
    assert video == out / f"{tid}.mp4" and video.exists(), result
    assert (out / f"{tid}.jpg").exists()
    streams = probe(video)
    v, a = streams["video"], streams["audio"]
    assert (v["codec_name"], v["profile"], v["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (v["width"], v["height"]) == (1080, 1920)
    # 36 + 36 frames at 24 fps minus a 12-frame crossfade.
    assert int(v["nb_read_frames"]) == 60
    assert abs(float(v["duration"]) - 2.5) <= 1 / 24
    assert (a["codec_name"], a["sample_rate"], a["channels"]) == ("aac", "48000", 2)
    attempt = pv.attempts(tid)[0]
    assert attempt["outcome"] == "completed" and attempt["exit_code"] == 0
    assert attempt["peak_memory_bytes"] > 60 * 2**20, attempt
    assert task["progress"] == 100
    pv.assert_clean()


def test_real_request_over_60mb_is_a_memory_failure(pv, renderer_env):
    env, out = renderer_env
    tid = pv.insert(REQUEST)
    pv.run(env={**env, "MEMORY_CRITICAL_THRESHOLD": 60, "MEMORY_WARNING_THRESHOLD": 40},
           child_command=str(RENDERER), timeout=300)
    task = pv.task(tid)
    assert task["status"] == "failed", task
    assert task["error_type"] == "memory_limit", task
    assert MEMORY_TEXT.match(task["error"]), task["error"]
    attempt = pv.attempts(tid)[0]
    assert attempt["outcome"] == "memory_limit" and attempt["oom_kills"] >= 1, attempt
    assert not list(out.glob("*.mp4")), "a partial video was published"
    pv.assert_clean()
