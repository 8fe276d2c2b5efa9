#!/usr/bin/env python3
"""Echo under steady room noise (issue 15): is a fan as loud as the echo taken for a talker?

The echo canceller's suppressor eases off in double talk (`voice_core/src/capture/echo.rs`). Steady
noise near the echo's level must not pass for double talk, or echo leaks through. This builds
far-end-only scenes: the bench's clips through the 300/80 and 200/40 rooms, plus pink or white
noise 15, 10, 5 and 0 dB under the echo. For each voice-apm given, it prints how much echo is
left: the output's projection on the echo per 20 ms frame, over the far end's active frames after
2 s, in dB, for the whole chain and for the canceller alone.

    .venv/bin/python benches/apm/echo_noise.py --work /tmp/ne BIN [BIN ...]
"""

import argparse
import os
import subprocess
import sys

import numpy as np
from scipy.signal import fftconvolve

sys.path.insert(0, os.path.dirname(__file__))
import apm  # noqa: E402
import echo_diag  # noqa: E402


def echo_left_db(out, echo, far):
    """How much of `echo` is left in `out` over active far-end frames from 2 s, dB."""
    n = len(echo) // apm.FRAME
    ef = apm.frame_energy(far)[:n]
    act = (ef > ef.max() * 10 ** -3.5) & (np.arange(n) * apm.FRAME >= 2 * apm.SR)
    return echo_diag.project_db(out, echo, act)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("voice_apm", nargs="+")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    clips = [apm.make_clip(args.work, i) for i in range(2)]
    rng = np.random.default_rng(3)
    print("| room | noise | noise under echo dB | " + " | ".join(
        f"{os.path.basename(b)} {m}" for b in args.voice_apm for m in ("whole chain", "AEC only")) + " |")
    print("|---|---|---|" + "---|" * (2 * len(args.voice_apm)))
    for i, (rt60, delay) in enumerate([(0.3, 80), (0.2, 40)]):
        far = np.concatenate([clips[i]] * 2)
        echo = fftconvolve(far, apm.room(rt60, delay, None, i))[: len(far)]
        echo *= 0.05 / apm.active_rms(echo)
        for kind in ("pink", "white"):
            noise = apm.make_noise(kind, len(far), rng, [])
            for under in (15, 10, 5, 0):
                mic = echo + noise / np.sqrt(np.mean(noise**2)) * 0.05 * 10 ** (-under / 20)
                fp, mp, op = (os.path.join(args.work, f) for f in ("far.wav", "mic.wav", "out.wav"))
                apm.write(fp, far)
                apm.write(mp, mic)
                cells = []
                for b in args.voice_apm:
                    for extra in ([], ["--no-ns", "--no-agc"]):
                        subprocess.run([b, "--input", mp, "--far", fp, "--output", op, *extra],
                                       check=True, capture_output=True)
                        cells.append(f"{echo_left_db(apm.read(op)[: len(mic)], echo, far):.1f}")
                print(f"| {int(rt60 * 1000)}/{delay} | {kind} | {under} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
