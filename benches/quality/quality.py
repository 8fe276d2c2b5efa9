"""Runs the voice-sim quality matrix and prints the table (driven by benches/quality.sh).

Clips: three passages synthesised by espeak-ng with different voices and rates, resampled to
48 kHz mono with sox (about 30 s each).

PESQ: ITU-T P.862.2 wideband (the `pesq` package, mode "wb") at 16 kHz. Reference and degraded
are resampled 48 kHz -> 16 kHz with scipy's polyphase filter. The degraded file starts with the
playout delay as silence (output sample 0 is the sender's time 0), so the leading
round(mean end-to-end delay) ms are trimmed and it is cut to the reference's length; PESQ's own
alignment handles the rest (including the small delay changes of time-scale modification).
"""

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys

import numpy as np
from pesq import pesq
from scipy.io import wavfile
from scipy.signal import resample_poly

PROFILES = ["clean", "jitter20", "pareto", "ge5", "ge10", "drift", "drift-slow", "reorder"]
POLICIES = ["fixed", "adaptive"]
TEXTS = [
    ("en-us+m3", 150,
     "The north wind and the sun were disputing which was the stronger, when a traveler came "
     "along wrapped in a warm cloak. They agreed that the one who first succeeded in making the "
     "traveler take his cloak off should be considered stronger than the other. Then the north "
     "wind blew as hard as he could, but the more he blew the more closely did the traveler fold "
     "his cloak around him; and at last the north wind gave up the attempt. Then the sun shined "
     "out warmly, and immediately the traveler took off his cloak."),
    ("en-gb+f3", 160,
     "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow. "
     "The rainbow is a division of white light into many beautiful colors. These take the shape "
     "of a long round arch, with its path high above, and its two ends apparently beyond the "
     "horizon. There is, according to legend, a boiling pot of gold at one end. People look, "
     "but no one ever finds it. When a man looks for something beyond his reach, his friends "
     "say he is looking for the pot of gold at the end of the rainbow."),
    ("en-us+m7", 140,
     "Please call Stella. Ask her to bring these things with her from the store: six spoons of "
     "fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob. "
     "We also need a small plastic snake and a big toy frog for the kids. She can scoop these "
     "things into three red bags, and we will go meet her Wednesday at the train station. "
     "Thank you for the call, and see you very soon, at half past seven in the evening."),
]


def make_clips(work):
    clips = []
    for i, (voice, rate, text) in enumerate(TEXTS):
        raw = os.path.join(work, f"clip{i}_raw.wav")
        out = os.path.join(work, f"clip{i}.wav")
        if not os.path.exists(out):
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", raw, text], check=True)
            subprocess.run(["sox", raw, "-r", "48000", "-c", "1", "-b", "16", out], check=True)
        clips.append(out)
    return clips


def to16k(x):
    return resample_poly(x.astype(np.float64), 1, 3)


def one(args):
    voice_sim, work, clip, profile, policy, fec, seed = args
    tag = f"{os.path.basename(clip)[:-4]}_{profile}_{policy}_{'fec' if fec else 'nofec'}_{seed}"
    out = os.path.join(work, tag + ".wav")
    stats = os.path.join(work, tag + ".json")
    cmd = [voice_sim, "--input", clip, "--output", out, "--profile", profile,
           "--seed", str(seed), "--policy", policy, "--stats", stats]
    if not fec:
        cmd.append("--no-fec")
    subprocess.run(cmd, check=True)
    with open(stats) as f:
        j = json.load(f)
    _, ref = wavfile.read(clip)
    _, deg = wavfile.read(out)
    lead = int(round(j["mean_end_to_end_delay_ms"])) * 48
    deg = deg[lead:lead + len(ref)]
    if len(deg) < len(ref):
        deg = np.concatenate([deg, np.zeros(len(ref) - len(deg), dtype=deg.dtype)])
    try:
        score = pesq(16000, to16k(ref), to16k(deg), "wb")
    except Exception as e:  # noqa: BLE001 - PESQ refuses some inputs; report, don't die
        print(f"pesq failed for {tag}: {e}", file=sys.stderr)
        score = float("nan")
    os.remove(out)
    return (profile, policy, fec), j, score


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--voice-sim", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="one clip, one seed")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    clips = make_clips(a.work)
    if a.quick:
        clips = clips[:1]
    jobs = [(a.voice_sim, a.work, c, p, pol, fec, s + 1)
            for p in PROFILES for pol in POLICIES for fec in (True, False)
            for c in clips for s in range(1 if a.quick else a.seeds)]
    rows = {}
    with cf.ProcessPoolExecutor(max_workers=max(1, (os.cpu_count() or 2))) as ex:
        for key, j, score in ex.map(one, jobs):
            rows.setdefault(key, []).append((j, score))

    hdr = ("profile", "policy", "fec", "conceal%", "fec%", "isoFEC", "late", "intr",
           "delay ms", "p95 ms", "e2e ms", "ins%", "rem%", "PESQ")
    fmt = "{:<10} {:<8} {:<3} {:>8} {:>6} {:>7} {:>5} {:>4} {:>8} {:>6} {:>6} {:>5} {:>5} {:>5}"
    print(f"clips: {len(clips)} x ~30 s espeak-ng speech, seeds: {1 if a.quick else a.seeds}; "
          "PESQ = P.862.2 wideband MOS-LQO at 16 kHz")
    print(fmt.format(*hdr))
    summary = {}
    for p in PROFILES:
        for pol in POLICIES:
            for fec in (True, False):
                rs = rows[(p, pol, fec)]
                tot = lambda k: sum(j[k] for j, _ in rs)  # noqa: E731
                mean = lambda k: sum(j[k] for j, _ in rs) / len(rs)  # noqa: E731
                played = max(1, tot("frames_played"))
                out_samples = max(1, tot("output_frames") * 960)
                iso = tot("isolated_losses")
                pesq_mean = float(np.nanmean([s for _, s in rs]))
                r = {
                    "conceal": 100 * tot("frames_concealed") / played,
                    "fec": 100 * tot("frames_fec_recovered") / played,
                    "iso": f"{tot('isolated_losses_fec_recovered')}/{iso}" if iso else "-",
                    "late": tot("packets_late"),
                    "intr": tot("interruptions"),
                    "delay": mean("mean_buffer_delay_ms"),
                    "p95": mean("p95_buffer_delay_ms"),
                    "e2e": mean("mean_end_to_end_delay_ms"),
                    "ins": 100 * tot("samples_inserted") / out_samples,
                    "rem": 100 * tot("samples_removed") / out_samples,
                    "pesq": pesq_mean,
                }
                summary[f"{p}/{pol}/{'fec' if fec else 'nofec'}"] = r
                print(fmt.format(p, pol, "on" if fec else "off", f"{r['conceal']:.2f}",
                                 f"{r['fec']:.2f}", r["iso"], r["late"], r["intr"],
                                 f"{r['delay']:.1f}", f"{r['p95']:.0f}", f"{r['e2e']:.0f}",
                                 f"{r['ins']:.2f}", f"{r['rem']:.2f}", f"{r['pesq']:.2f}"))
    with open(os.path.join(a.work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"(per-run JSON and summary.json in {a.work})")


if __name__ == "__main__":
    main()
