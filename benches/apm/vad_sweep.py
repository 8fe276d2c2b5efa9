"""Speech detector sweep: speech frames sent / noise-only frames sent per noise kind and SNR, for
several background-voice margins (`voice-apm --vad-background-db`), on the mixes `apm.py` builds
(same clips, noise, labels and seeds).

    .venv/bin/python benches/apm/vad_sweep.py --voice-apm target/release/voice-apm \
        --work target/vad-sweep --margins 0,6 --snrs 0,5,10,20
"""

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--voice-apm", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--margins", default="0,6")
    ap.add_argument("--snrs", default="0,5,10,20")
    ap.add_argument("-j", type=int, default=2)
    args = ap.parse_args()
    margins = args.margins.split(",")
    snrs = [int(x) for x in args.snrs.split(",")]
    os.makedirs(args.work, exist_ok=True)
    # As apm.py: the same generator seed and draw order, so the noises are the benchmark's.
    rng = np.random.default_rng(15)
    clips = [apm.make_clip(args.work, i) for i in range(3)]
    babble_src = [apm.say(args.work, f"b{k}", apm.TEXTS[3 + k], apm.VOICES[3 + k]) for k in range(4)]
    jobs = []
    for ci, clean in enumerate(clips):
        for kind in apm.KINDS:
            noise = apm.make_noise(kind, len(clean), rng, babble_src)
            for snr in snrs:
                p = os.path.join(args.work, f"mix{ci}_{kind}_{snr}.wav")
                apm.write(p, apm.mix_at(clean, noise, snr))
                jobs.append((ci, kind, snr, p))
        p = os.path.join(args.work, f"clean{ci}.wav")
        apm.write(p, clean)
        jobs.append((ci, "clean", None, p))

    def one(job, margin):
        ci, kind, snr, path = job
        vad = os.path.join(args.work, f"vad_{ci}_{kind}_{snr}_{margin}.txt")
        out = os.path.join(args.work, f"out_{ci}_{kind}_{snr}_{margin}.wav")
        cmd = [args.voice_apm, "--input", path, "--output", out, "--vad", vad, "--vad-background-db", margin]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(vad) as f:
            v = np.array([c == "1" for c in f.read().strip()], dtype=bool)
        # apm.py's labels: speech within 35 dB of the clip's loudest frame; noise-only at least
        # 400 ms away from any speech frame.
        e = apm.frame_energy(clips[ci])
        speech = e > e.max() * 10 ** (-35 / 10)
        near = np.convolve(speech, np.ones(41), mode="same") > 0
        v = v[: len(speech)]
        return (kind, snr, margin), (v[speech].mean(), v[~near].mean())

    with ThreadPoolExecutor(args.j) as ex:
        res = list(ex.map(lambda jm: one(*jm), [(j, m) for j in jobs for m in margins]))
    agg = {}
    for key, hf in res:
        agg.setdefault(key, []).append(hf)
    print("| noise | SNR dB | " + " | ".join(f"margin {m} dB" for m in margins) + " |")
    print("|---|---|" + "---|" * len(margins))
    for kind in apm.KINDS + ["clean"]:
        for snr in snrs if kind != "clean" else [None]:
            cells = []
            for m in margins:
                a = np.array(agg[(kind, snr, m)])
                cells.append(f"{100 * a[:, 0].mean():.1f} / {100 * a[:, 1].mean():.1f}")
            print(f"| {kind} | {'–' if snr is None else snr} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
