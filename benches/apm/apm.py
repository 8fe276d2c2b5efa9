#!/usr/bin/env python3
"""Capture-processing benchmark; see run.sh beside this file for what it measures and how to run it."""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.io import wavfile
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

SR = 48000
FRAME = 960  # 20 ms
TEXTS = [
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls. The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us. A large size in stockings is hard to sell.",
    "The boy was there when the sun rose. A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring. Kick the ball straight and follow through.",
]
VOICES = ["en-us+m3", "en+f3", "en-gb+m1", "en+f2", "en-us+m5", "en+f4", "en+m2"]
KINDS = ["white", "pink", "babble", "hum", "fan"]
MODES = ["none", "rnnoise", "ours"]
ACTIVE_DBFS = -26.0


def say(work, i, text, voice):
    raw = os.path.join(work, f"say{i}_22k.wav")
    # `-D`: sox dithers by default, with fresh noise on every run, and AEC3 on the 40 ms room
    # swung between 27 and 37 dB ERLE on clips that differed only by that dither (-90 dBFS).
    out = os.path.join(work, f"say{i}_48k.wav")
    if not os.path.exists(out):
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", raw, text], check=True)
        subprocess.run(["sox", raw, "-D", "-r", "48000", "-b", "16", "-c", "1", out], check=True)
    return read(out)


def read(path):
    sr, x = wavfile.read(path)
    assert sr == SR, path
    return x.astype(np.float64) / 32768.0


def write(path, x):
    wavfile.write(path, SR, (np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16))


def frame_energy(x):
    n = len(x) // FRAME
    return (x[: n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)


def active_rms(x):
    e = frame_energy(x)
    act = e[e > e.max() * 10 ** (-40 / 10)]
    return np.sqrt(act.mean())


def to_level(x, dbfs):
    return x * (10 ** (dbfs / 20) / active_rms(x))


def make_clip(work, i):
    """Sentences with 0.8 s pauses, 0.5 s of lead-in."""
    parts = [np.zeros(SR // 2)]
    for j, sentence in enumerate(TEXTS[i].split(". ")):
        parts.append(say(work, f"{i}_{j}", sentence, VOICES[i]))
        parts.append(np.zeros(int(0.8 * SR)))
    return to_level(np.concatenate(parts), ACTIVE_DBFS)


def make_noise(kind, n, rng, babble_src):
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SR)
        f[0] = f[1]
        x = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == "babble":
        x = np.zeros(n)
        for k, v in enumerate(babble_src):
            v = v / active_rms(v)
            start = int(rng.integers(0, len(v)))
            x += np.resize(np.roll(v, -start), n)
    elif kind == "hum":
        t = np.arange(n) / SR
        x = sum(
            (1.0 / k) * np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 12)
        )
        x = x * (1 + 0.05 * np.sin(2 * np.pi * 0.3 * t))
    elif kind == "fan":
        t = np.arange(n) / SR
        sos = butter(4, [150, 2500], btype="band", fs=SR, output="sos")
        brown = np.cumsum(rng.standard_normal(n))
        brown -= np.convolve(brown, np.ones(4801) / 4801, mode="same")
        x = sosfilt(sos, brown + 30 * rng.standard_normal(n))
        x /= np.std(x)
        blade = sum(0.3 / k * np.sin(2 * np.pi * 87 * k * t) for k in range(1, 6))
        x = (x + blade) * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    else:
        raise ValueError(kind)
    return x / np.sqrt(np.mean(x**2))


def mix_at(clean, noise, snr):
    noise = noise * (active_rms(clean) / np.sqrt(np.mean(noise**2))) / 10 ** (snr / 20)
    return clean + noise


def align(ref, deg, max_lag=4800):
    """Shifts `deg` so it lines up with `ref` (the processors add up to a few chunks of delay)."""
    n = min(len(ref), len(deg), 10 * SR)
    c = fftconvolve(deg[:n], ref[:n][::-1], mode="full")
    mid = n - 1
    lag = int(np.argmax(np.abs(c[mid : mid + max_lag]))) if max_lag else 0
    out = np.zeros(len(ref))
    seg = deg[lag : lag + len(ref)]
    out[: len(seg)] = seg
    return out


def to16(x):
    return np.clip(resample_poly(x, 1, 3), -1, 1).astype(np.float32)


# Echo scenes: (RT60 s, device delay ms, signal-to-echo dB, double talk "cont" | "bursts").
ECHO_SCENES = [
    (0.3, 80, 0, "cont"),
    (0.2, 40, 0, "cont"),
    (0.4, 120, 0, "cont"),
    (0.3, 80, 10, "cont"),
    (0.3, 80, 10, "bursts"),
]


def room(rt60, delay_ms, drr, seed):
    """Synthetic impulse response: a direct path, then an exponentially decaying noise tail.

    `drr` None is the benchmark's room: a direct path of 3 over a unit-variance tail, a
    direct-to-reverberant ratio of -18.9 / -20.6 / -21.9 dB at RT60 200 / 300 / 400 ms (the
    reverberation carries almost all the echo: far from a laptop's speaker-to-microphone path,
    close to a speakerphone across a live room). A number sets that ratio in dB instead.
    """
    d = int(delay_ms * SR / 1000)
    t = np.arange(int(rt60 * SR)) / SR
    h = np.zeros(d + len(t))
    h[d:] = np.random.default_rng(seed).standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    if drr is None:
        h[d] = 3.0
    else:
        h[d] = np.sqrt(np.sum(h[d + 1 :] ** 2) * 10 ** (drr / 10))
    return h


def echo_scene(work, name, far_clip, near_clip, rt60, delay, ser, dt, seed, drr=None):
    """Far-end speech (the clip twice) echoing through `room`; the near end talks in the second half.

    `dt` "cont": the near-end clip from the half on (continuous double talk, pauses included);
    "bursts": 1.5 s of near-end speech (pauses cut out) every 4 s over the far end. The echo is
    scaled to `ser` dB under the near end's active level; a -65 dBFS noise floor is added.
    """
    far = np.concatenate([far_clip, far_clip])
    split = len(far_clip)
    near = np.zeros(len(far))
    if dt == "cont":
        seg = near_clip[: len(far) - split]
        near[split : split + len(seg)] = seg
    else:
        src = near_clip[np.abs(near_clip) > 0]
        n, pos, k = int(1.5 * SR), split, 0
        while pos + n <= len(far):
            near[pos : pos + n] = src[k : k + n]
            k = (k + n) % max(1, len(src) - n)
            pos += 4 * SR
    echo = fftconvolve(far, room(rt60, delay, drr, seed))[: len(far)]
    echo *= active_rms(near_clip) / active_rms(echo) / 10 ** (ser / 20)
    floor = np.random.default_rng(100 + seed).standard_normal(len(far)) * 10 ** (-65 / 20)
    mic = near + echo + floor
    paths = {}
    for part, x in (("far", far), ("mic", mic)):
        paths[part] = os.path.join(work, f"{name}_{part}.wav")
        write(paths[part], x)
    return dict(far=far, near=near, echo=echo, mic=mic, split=split, paths=paths)


class Metrics:
    def __init__(self, full):
        from pesq import pesq
        from pystoi import stoi

        self.pesq, self.stoi, self.full = pesq, stoi, full
        if full:
            from speechmos import aecmos, dnsmos

            self.dnsmos, self.aecmos = dnsmos, aecmos

    def speech(self, ref, deg):
        r, d = to16(ref), to16(deg)
        out = {"pesq": self.pesq(16000, r, d, "wb"), "stoi": self.stoi(r, d, 16000)}
        if self.full:
            out["dnsmos"] = self.dnsmos.run(d, sr=16000)["ovrl_mos"]
        return out


def run_apm(args, mode, near, far=None, extra=()):
    tag = f"{abs(hash((mode, near, far, extra))) & 0xFFFFFFFF:08x}"
    out = os.path.join(args.work, f"out_{tag}.wav")
    vad = os.path.join(args.work, f"vad_{tag}.txt")
    cmd = [args.voice_apm, "--input", near, "--output", out, "--mode", mode, "--vad", vad]
    if far:
        cmd += ["--far", far]
    cmd += list(extra)
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    info = json.loads(res.stdout.strip().splitlines()[-1])
    with open(vad) as f:
        info["vad"] = np.array([c == "1" for c in f.read().strip()], dtype=bool)
    info["out"] = read(out)
    return info


def fmt(v, digits=2):
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--voice-apm", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-j", type=int, default=2)
    ap.add_argument("--extra", default="", help="extra voice-apm flags for ours (tuning)")
    ap.add_argument("--echo-only", action="store_true", help="only the echo scenes (no noise / VAD tables)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rng = np.random.default_rng(15)
    n_clips = 1 if args.quick else 3
    clips = [make_clip(args.work, i) for i in range(n_clips)]
    babble_src = [say(args.work, f"b{k}", TEXTS[3 + k], VOICES[3 + k]) for k in range(4)]
    kinds = ["white", "pink"] if args.quick else KINDS
    snrs = [5] if args.quick else [0, 5, 10, 20]
    metrics = Metrics(full=not args.quick)
    extra = tuple(args.extra.split()) if args.extra else ()

    # Noise suppression and VAD (skipped with --echo-only).
    results = {}
    if not args.echo_only:
        jobs = []
        for ci, clean in enumerate(clips):
            cpath = os.path.join(args.work, f"clean{ci}.wav")
            write(cpath, clean)
            jobs.append((ci, "clean", None, cpath))
            for kind in kinds:
                noise = make_noise(kind, len(clean), rng, babble_src)
                for snr in sorted(set(snrs) | {10}):
                    p = os.path.join(args.work, f"mix{ci}_{kind}_{snr}.wav")
                    write(p, mix_at(clean, noise, snr))
                    jobs.append((ci, kind, snr, p))

        def one(job, mode):
            ci, kind, snr, path = job
            info = run_apm(args, mode, path, extra=extra if mode == "ours" else ())
            clean = clips[ci]
            res = {"cpu": info["core_percent"]}
            if snr in snrs or kind == "clean":
                res.update(metrics.speech(clean, align(clean, info["out"])))
            if snr == 10 and mode != "rnnoise":
                e = frame_energy(clean)
                speech = e > e.max() * 10 ** (-35 / 10)
                # Noise-only: at least 400 ms away from any speech frame (hangover is allowed to run).
                near = np.convolve(speech, np.ones(41), mode="same") > 0
                v = info["vad"][: len(speech)]
                res["hit"] = v[speech].mean()
                res["false"] = v[~near].mean()
            return (ci, kind, snr, mode), res

        with ThreadPoolExecutor(args.j) as ex:
            results = dict(ex.map(lambda jm: one(*jm), [(j, m) for j in jobs for m in MODES]))

        def mean(kind, snr, mode, key):
            vals = [r[key] for (c, k, s, m), r in results.items() if k == kind and s == snr and m == mode and key in r]
            return float(np.mean(vals)) if vals else None

        keys = ["pesq", "stoi"] + ([] if args.quick else ["dnsmos"])
        print("## Noise suppression: PESQ-WB / STOI" + ("" if args.quick else " / DNSMOS OVRL") + f" (mean of {n_clips} clips)\n")
        print("| noise | SNR dB | " + " | ".join(MODES) + " |")
        print("|---|---|" + "---|" * len(MODES))
        rows = [("clean", None)] + [(k, s) for k in kinds for s in snrs]
        for kind, snr in rows:
            cells = [" / ".join(fmt(mean(kind, snr, m, key), 3 if key == "stoi" else 2) for key in keys) for m in MODES]
            print(f"| {kind} | {'–' if snr is None else snr} | " + " | ".join(cells) + " |")
        print()
        # Targets.
        if not args.quick:
            fails = []
            for kind in kinds:
                for snr in [s for s in (0, 5, 10) if s in snrs]:
                    for key in ("dnsmos", "pesq"):
                        o, r = mean(kind, snr, "ours", key), mean(kind, snr, "rnnoise", key)
                        if o < r:
                            fails.append(f"{kind}@{snr} {key} {o:.2f}<{r:.2f}")
            d5 = np.mean([mean(k, 5, "ours", "dnsmos") - mean(k, 5, "rnnoise", "dnsmos") for k in kinds])
            print(f"- ours ≥ RNNoise on DNSMOS and PESQ at 0/5/10 dB: {'all' if not fails else 'missed: ' + ', '.join(fails)}")
            print(f"- DNSMOS OVRL at 5 dB, ours − RNNoise averaged over kinds: {d5:+.2f} (target ≥ +0.20)")
        lost = mean("clean", None, "none", "pesq") - mean("clean", None, "ours", "pesq")
        print(f"- PESQ lost on clean speech: {lost:.2f} (target ≤ 0.05)\n")

        print("## Speech detector at 10 dB SNR: speech frames sent / noise-only frames sent\n")
        print("| noise | energy gate (none) | ours |")
        print("|---|---|---|")
        for kind in kinds:
            cells = [f"{100 * mean(kind, 10, m, 'hit'):.1f} % / {100 * mean(kind, 10, m, 'false'):.1f} %" for m in ("none", "ours")]
            print(f"| {kind} | " + " | ".join(cells) + " |")
        hit = np.mean([mean(k, 10, "ours", "hit") for k in kinds])
        fa = np.mean([mean(k, 10, "ours", "false") for k in kinds])
        print(f"\n- ours overall: {100 * hit:.1f} % of speech frames sent (target ≥ 95 %), {100 * fa:.1f} % of noise-only frames (target ≤ 5 %)\n")

    # Echo: the three rooms at 0 dB signal-to-echo with continuous double talk, then two
    # easier scenes (10 dB signal-to-echo; the near end in bursts) that say how far from the hardest
    # case the canceller is.
    specs = ECHO_SCENES[:1] if args.quick else ECHO_SCENES
    scenes = []
    for i, (rt60, delay, ser, dt) in enumerate(specs):
        far_clip = clips[i % n_clips] if args.quick else clips[i % 3]
        near_clip = make_clip(args.work, (i + 1) % 3) if args.quick else clips[(i + 1) % 3]
        sc = echo_scene(args.work, f"echo{i}", far_clip, near_clip, rt60, delay, ser, dt, seed=i)
        scenes.append((i, rt60, delay, ser, dt, sc))

    variants = [("none", ()), ("rnnoise", ()), ("ours", extra), ("ours (AEC only)", ("--no-ns", "--no-agc"))]

    def echo_job(scene, variant):
        i, rt60, delay, ser, dt, sc = scene
        far, near, mic, split, paths = sc["far"], sc["near"], sc["mic"], sc["split"], sc["paths"]
        name, flags = variant
        mode = "ours" if name.startswith("ours") else name
        info = run_apm(args, mode, paths["mic"], far=paths["far"], extra=flags)
        out = info["out"][: len(mic)]
        # ERLE over far-end-only frames from 2 s on (the canceller had 2 s of far-end speech).
        ef = frame_energy(far[:split])
        act = ef > ef.max() * 10 ** (-35 / 10)
        fr = np.arange(len(act)) * FRAME >= 2 * SR
        sel = act & fr
        em, eo = frame_energy(mic[:split])[sel], frame_energy(out[:split])[sel]
        erle = 10 * np.log10(em.sum() / max(eo.sum(), 1e-20))
        # Near-end PESQ over the double-talk part, the output aligned on the near-end speech.
        ref = near[split:]
        deg = align(ref, out[split:])
        res = {"erle": erle, "pesq": metrics.pesq(16000, to16(ref), to16(deg), "wb"), "cpu": info["core_percent"]}
        if not args.quick:
            st = metrics.aecmos.run(
                {"lpb": to16(far[:split]), "mic": to16(mic[:split]), "enh": to16(out[:split])}, sr=16000, talk_type="st"
            )
            dt = metrics.aecmos.run(
                {"lpb": to16(far[split:]), "mic": to16(mic[split:]), "enh": to16(out[split:])}, sr=16000, talk_type="dt"
            )
            res["echo_mos"], res["deg_mos"] = st["echo_mos"], dt["deg_mos"]
        return (i, name), res

    with ThreadPoolExecutor(args.j) as ex:
        eres = dict(ex.map(lambda sv: echo_job(*sv), [(s, v) for s in scenes for v in variants]))

    print("## Echo: far-end speech through a synthetic room, then double talk\n")
    cols = ["ERLE dB (from 2 s)", "near-end PESQ (double talk)"] + ([] if args.quick else ["AECMOS echo (far-end only)", "AECMOS degradation (double talk)"])
    print("| scene | processing | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for i, rt60, delay, ser, dt, _ in scenes:
        for name, _ in variants:
            r = eres[(i, name)]
            vals = [fmt(r["erle"], 1), fmt(r["pesq"])] + ([] if args.quick else [fmt(r["echo_mos"]), fmt(r["deg_mos"])])
            talk = "continuous" if dt == "cont" else "bursts"
            print(f"| RT60 {int(rt60 * 1000)} ms, delay {delay} ms, SER {ser} dB, {talk} | {name} | " + " | ".join(vals) + " |")
    print()

    cpu = [r["cpu"] for (c, k, s, m), r in results.items() if m == "ours"] + [r["cpu"] for (i, n), r in eres.items() if n == "ours"]
    cpu_rn = [r["cpu"] for (c, k, s, m), r in results.items() if m == "rnnoise"]
    print(f"## CPU per stream (one core, % of real time)\n\n- ours (whole chain, with echo canceller on the echo scenes): mean {np.mean(cpu):.2f} %, max {np.max(cpu):.2f} % (target ≤ 5 %)")
    if cpu_rn:
        print(f"- RNNoise alone: mean {np.mean(cpu_rn):.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
