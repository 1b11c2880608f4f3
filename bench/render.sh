#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Renderer benchmark (bench/run.sh runs this; see bench/README.md): the same
# 13 s 1080x1920 reel — three image scenes of 5 s with zoom, darkening, a text
# overlay on the first, 1 s crossfades, music at 0.3; libx264 veryfast crf 23 —
# made three ways, RENDER_RUNS times each, interleaved:
#   ours     protovideo-render, as the supervisor would start it
#   cli      the ffmpeg command line: -loop 1 inputs, zoompan, xfade, amix
#   x264     ffmpeg encoding our own frames from raw yuv420p (encoding only):
#            the very frames our encoder gets (PROTOVIDEO_RAW_FRAMES), with our
#            x264 settings (child/render/muxer.cpp), so the only difference is
#            what the renderer does besides encoding; render-x264-check.txt
#            says whether its video decodes to exactly ours.
#   x264dflt informational, not in the report: the comparison before, ffmpeg's
#            x264 defaults (3 frame threads on 2 cores, threaded lookahead,
#            keyint 250) on frames decoded back from our MP4
# Each run is timed by /usr/bin/time -v (wall time, peak RSS).
# Needs: RENDER, MEDIA, RESULTS, STATE.
set -euo pipefail

: "${RENDER:?}" "${MEDIA:?}" "${RESULTS:?}" "${STATE:?}"
RENDER_RUNS=${RENDER_RUNS:-3}
FONT=${FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf}
work=$STATE/render
rm -rf "$work"
mkdir -p "$work/out"
log() { echo "bench/render: $*" >&2; }

img=$MEDIA/images
music=$MEDIA/audio/elf-land.ogg
cat >"$work/request.json" <<JSON
{"output_filename": "bench-reel.mp4",
 "width": 1080, "height": 1920, "fps": 24,
 "zoom": 1.5, "darken": 0.5, "crossfade": 1, "music_volume": 0.3,
 "scenes": [
  {"type": "image", "image": "$img/Aqua.jpg", "duration": 5, "music": "$music",
   "text": {"content": "ProtoVideo", "position": "bottom", "fontsize": 72}},
  {"type": "image", "image": "$img/LadyBird.jpg", "duration": 5, "music": "$music"},
  {"type": "image", "image": "$img/Storm.jpg", "duration": 5, "music": "$music"}]}
JSON

# timed NAME RUN cmd...: appends "name,run,wall_s,max_rss_kb,exit,cpu_s" to
# render.csv (cpu_s = user + system, less sensitive to other users than wall).
timed() {
    local name=$1 run=$2
    shift 2
    local tf=$work/time-$name-$run.txt
    local rc=0
    /usr/bin/time -v -o "$tf" "$@" >"$work/$name-$run.log" 2>&1 || rc=$?
    local wall rss cpu
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tf" |
        awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
    cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {print s}' "$tf")
    echo "$name,$run,$wall,$rss,$rc,$cpu" >>"$RESULTS/render.csv"
    if [ "$rc" != 0 ]; then
        log "$name run $run failed (exit $rc):"
        tail -n 15 "$work/$name-$run.log" >&2
    fi
    return 0
}

run_ours() {
    local run=$1
    local dir=$work/ours-$run
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && OUTPUT_DIR=$work/out ASSET_ROOTS=$MEDIA PV_TASK_ID=bench-$run \
        timed ours "$run" "$RENDER" --request "$work/request.json" --work-dir "$dir" \
        --task-id "bench-$run" --event-fd 3 <"$work/request.json" 3>"$work/ours-$run.events")
}

scene_chain() {
    # zoom 1 -> 1.5 over the scene's 120 frames, centred; brightness x0.5
    local i=$1 extra=${2:-}
    echo "[$i:v]scale=1620:2880:force_original_aspect_ratio=increase,crop=1620:2880,setsar=1,zoompan=z='1+0.5*on/119':d=1:x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':s=1080x1920:fps=24,colorchannelmixer=rr=0.5:gg=0.5:bb=0.5${extra},format=yuv420p[v$i]"
}

run_cli() {
    local run=$1
    local text=",drawtext=fontfile=$FONT:text='ProtoVideo':fontsize=72:fontcolor=white:x=(w-tw)/2:y=h*0.9-th"
    local graph
    graph="$(scene_chain 0 "$text");$(scene_chain 1);$(scene_chain 2);"
    graph+="[v0][v1]xfade=transition=fade:duration=1:offset=4[x1];"
    graph+="[x1][v2]xfade=transition=fade:duration=1:offset=8[v];"
    graph+="[3:a]atrim=0:13,volume=0.3[m];[4:a][m]amix=inputs=2:duration=first:normalize=0[a]"
    timed cli "$run" ffmpeg -nostdin -hide_banner -y \
        -loop 1 -framerate 24 -t 5 -i "$img/Aqua.jpg" \
        -loop 1 -framerate 24 -t 5 -i "$img/LadyBird.jpg" \
        -loop 1 -framerate 24 -t 5 -i "$img/Storm.jpg" \
        -i "$music" -f lavfi -t 13 -i anullsrc=r=48000:cl=stereo \
        -filter_complex "$graph" -map "[v]" -map "[a]" \
        -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -c:a aac -b:a 128k \
        -movflags +faststart "$work/cli-$run.mp4"
}

# The renderer's encoder settings (muxer.cpp): High profile, a keyframe every
# 2 s, one thread per core up to 4, 8x8dct, no lookahead thread, BT.709 tags.
x264_threads=$(getconf _NPROCESSORS_ONLN)
[ "$x264_threads" -gt 4 ] && x264_threads=4
run_x264() {
    local run=$1
    timed x264 "$run" ffmpeg -nostdin -hide_banner -y -f rawvideo -pix_fmt yuv420p \
        -s 1080x1920 -r 24 -i "$work/frames.yuv" \
        -c:v libx264 -preset veryfast -crf 23 -profile:v high -g 48 -threads "$x264_threads" \
        -x264-params 8x8dct=1:sync-lookahead=0 -color_range tv -colorspace bt709 \
        -color_primaries bt709 -color_trc bt709 -an -f mp4 "$work/x264-$run.mp4"
}

run_x264_defaults() {
    local run=$1
    timed x264dflt "$run" ffmpeg -nostdin -hide_banner -y -f rawvideo -pix_fmt yuv420p \
        -s 1080x1920 -r 24 -i "$work/decoded.yuv" \
        -c:v libx264 -preset veryfast -crf 23 -an -f mp4 "$work/x264dflt-$run.mp4"
}

echo "name,run,wall_s,max_rss_kb,exit,cpu_s" >"$RESULTS/render.csv"

# Our frames, dumped once, are what x264 alone encodes.
log "run 0 of ours (warm-up, also the frames for x264 alone)"
PROTOVIDEO_RAW_FRAMES=$work/frames.yuv run_ours 0
out=$(find "$work/out" -name '*.mp4' | head -n1)
if [ -z "$out" ]; then
    log "protovideo-render produced no MP4; see $work/ours-0.log"
    exit 1
fi
ffmpeg -nostdin -v error -y -i "$out" -f rawvideo -pix_fmt yuv420p "$work/decoded.yuv"
ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames,width,height,r_frame_rate,duration \
    -of default=nw=1 "$out" >"$RESULTS/render-ours-stream.txt"
sed -i '/^ours,0,/d' "$RESULTS/render.csv"

for run in $(seq 1 "$RENDER_RUNS"); do
    log "run $run of $RENDER_RUNS: ours, ffmpeg cli, x264 alone"
    rm -f "$work/out"/*.mp4
    run_ours "$run"
    run_cli "$run"
    run_x264 "$run"
    run_x264_defaults "$run"
done
# Same frames and same settings give the same stream: check it.
out=$(find "$work/out" -name '*.mp4' | head -n1)
frame_sums() { ffmpeg -nostdin -v error -i "$1" -map 0:v -f framemd5 - | grep -v '^#'; }
if [ -n "$out" ] && [ -f "$work/x264-1.mp4" ] &&
    cmp -s <(frame_sums "$out") <(frame_sums "$work/x264-1.mp4"); then
    echo "x264 alone decodes to exactly our video (same frames, same settings)" \
        >"$RESULTS/render-x264-check.txt"
else
    echo "x264 alone does NOT decode to our video: frames or settings differ" \
        >"$RESULTS/render-x264-check.txt"
    log "x264 alone differs from our video; see render-x264-check.txt"
fi
ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames,duration \
    -of default=nw=1 "$work/cli-1.mp4" >"$RESULTS/render-cli-stream.txt" 2>/dev/null || true
rm -f "$work/frames.yuv" "$work/decoded.yuv"
log "done"
