#!/usr/bin/env python3
"""Echo cancellation under clock drift (issue 15): a loudspeaker and a microphone on different
crystals (a USB webcam beside a laptop's speakers) are 50-200 ppm apart, so the echo path moves
by 3-12 ms a minute.

Far-end speech (the benchmark's espeak-ng clips, repeated to --seconds) plays through the
benchmark's synthetic rooms (`apm.room`); the microphone records the echo with its own clock,
`ppm` fast (band-limited FFT resampling of the whole echo), over a -65 dBFS noise floor. No one
talks in the room. Each `voice-apm` (`NAME=PATH`, e.g. this build and one from before a change,
side by side) runs with the echo canceller alone (`--no-ns --no-agc`, the delay hint at the
room's delay, the far end handed in at the loudspeaker's clock with `--far-ppm` where the build
has it) and the table gives ERLE over far-end-active frames in each 10 s window, and the
drift the canceller reports at the end (`--echo-trace`).

    .venv/bin/python benches/apm/drift.py --voice-apm ours=target/release/voice-apm --work DIR \\
        [--voice-apm before=OLD/voice-apm] [--ppm 0 50 100 200 -200] [--seconds 60] \\
        [--rooms 300:80,200:40] [-j N]
"""

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.signal import fftconvolve, resample

sys.path.insert(0, os.path.dirname(__file__))
import apm  # noqa: E402

SR = apm.SR
FRAME = apm.FRAME
WINDOW_S = 10


def scene(work, clips, seconds, rt60_ms, delay_ms, ppm, seed):
    far = np.concatenate(clips)
    far = np.tile(far, int(np.ceil(seconds * SR / len(far))))[: int(seconds * SR)]
    echo = fftconvolve(far, apm.room(rt60_ms / 1000, delay_ms, None, seed))[: len(far)]
    if ppm:
        # The microphone takes (1 + ppm·1e-6) samples for each of the loudspeaker's.
        # Padded first: FFT resampling wraps the end onto the start.
        padded = np.pad(echo, (SR, SR))
        echo = resample(padded, int(round(len(padded) * (1 + ppm * 1e-6))))
        shift = int(round(SR * (1 + ppm * 1e-6)))
        echo = echo[shift : shift + len(far)]
        echo = np.pad(echo, (0, len(far) - len(echo)))
    echo *= 10 ** (-26 / 20) / apm.active_rms(echo)
    mic = echo + np.random.default_rng(100 + seed).standard_normal(len(far)) * 10 ** (-65 / 20)
    name = f"drift_{rt60_ms}_{delay_ms}_{ppm:+g}_{seed}"
    paths = {}
    for part, x in (("far", far), ("mic", mic)):
        paths[part] = os.path.join(work, f"{name}_{part}.wav")
        apm.write(paths[part], x)
    return dict(far=far, mic=mic, paths=paths, name=name, ppm=ppm)


def supports_far_ppm(binary):
    """Whether `binary` hands the far end in at the loudspeaker's clock (`--far-ppm`; older
    builds pair frame i of each file)."""
    res = subprocess.run([binary, "--help"], capture_output=True, text=True)
    return "--far-ppm" in res.stdout


def run(binary, far_ppm, s, delay_ms, work, tag):
    out = os.path.join(work, f"{s['name']}_{tag}_out.wav")
    trace = os.path.join(work, f"{s['name']}_{tag}_trace.txt")
    cmd = [binary, "--input", s["paths"]["mic"], "--far", s["paths"]["far"], "--output", out]
    cmd += ["--mode", "ours", "--no-ns", "--no-agc", "--delay-ms", str(delay_ms), "--echo-trace", trace]
    cmd += ["--far-ppm", str(s["ppm"])] if far_ppm else []
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(trace) as f:
        last = f.read().strip().splitlines()[-1].split()
    drift = float(last[3]) if len(last) > 3 else float("nan")
    return apm.read(out), drift


def erle_windows(far, mic, out):
    ef = apm.frame_energy(far)
    act = ef > ef.max() * 10 ** (-35 / 10)
    em, eo = apm.frame_energy(mic), apm.frame_energy(out[: len(mic)])
    per = WINDOW_S * SR // FRAME
    # The last second is left out: a slow microphone's recording ends before the far end does.
    act[len(act) - SR // FRAME :] = False
    res = []
    for w in range(len(act) // per):
        sel = np.zeros(len(act), dtype=bool)
        sel[w * per : (w + 1) * per] = True
        sel &= act
        res.append(10 * np.log10(em[sel].sum() / max(eo[sel].sum(), 1e-20)))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--voice-apm", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--ppm", type=float, nargs="+", default=[0, 50, 100, 200, -200])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rooms", default="300:80,200:40", help="RT60 ms:delay ms,...")
    ap.add_argument("-j", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    binaries = [v.partition("=")[::2] for v in args.voice_apm]
    far_ppm = {binary: supports_far_ppm(binary) for _, binary in binaries}
    clips = [apm.make_clip(args.work, i) for i in range(3)]
    rooms = [tuple(int(v) for v in r.split(":")) for r in args.rooms.split(",")]
    scenes = [
        ((ppm, rt60, delay), scene(args.work, clips, args.seconds, rt60, delay, ppm, seed))
        for ppm in args.ppm
        for seed, (rt60, delay) in enumerate(rooms)
    ]

    def job(item):
        ((key, s), (name, binary)) = item
        out, drift = run(binary, far_ppm[binary], s, key[2], args.work, name)
        return (key, name), (erle_windows(s["far"], s["mic"], out), drift)

    with ThreadPoolExecutor(args.j) as ex:
        res = dict(ex.map(job, [(s, b) for s in scenes for b in binaries]))
    windows = len(next(iter(res.values()))[0])
    head = " | ".join(f"ERLE {WINDOW_S * w}–{WINDOW_S * (w + 1)} s" for w in range(windows))
    print(f"| drift ppm | room (RT60/delay ms) | build | {head} | drift reported |")
    print("|---|---|---|" + "---|" * windows + "---|")
    for key, _ in scenes:
        ppm, rt60, delay = key
        for name, _ in binaries:
            erles, drift = res[(key, name)]
            cells = " | ".join(f"{e:.1f}" for e in erles)
            print(f"| {ppm:+g} | {rt60}/{delay} | {name} | {cells} | {apm.fmt(drift, 1)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
