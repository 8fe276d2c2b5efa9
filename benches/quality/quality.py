"""Receive-path quality benchmark: our playout against real peers' receivers on the same packets.

Driven by benches/quality.sh (which installs everything and builds voice-sim and the baselines).

For every path class x seed x clip, `voice-sim --profile CLASS --seed S` writes the trace and the
encoded packets (the engine's default Opus encoder, in-band FEC with the loss-driven hint as the
engine sets it). Each clip gets its own seed (seed index k, clip i of n: S = (k-1) n + i + 1), so
with one seed index a class is already measured on three different paths: a class draws its
parameters from the seed. Then, for every tick phase, every receiver plays those same packets on that
same trace:

  adaptive   voice-sim (default policy, FEC on)            --trace T --tick-phase P
  adaptive-nodred  voice-sim --no-dred (in-band FEC alone)
  fixed      voice-sim --policy fixed --no-dred (FEC on)             --trace T --tick-phase P
  speex      baselines.c: speexdsp jitter buffer driven as Mumble's AudioOutputSpeech drives it
  plain      baselines.c: start after 2 packets, one packet per 20 ms tick, PLC, late dropped
  plain-fec  baselines.c: plain + Opus in-band FEC from the next packet when it is held

Every output WAV is 48 kHz mono with sample 0 = the sender's time 0 (the first 20 ms frame is
complete at time 0, so a sample heard `lag` after its position in the input has a mouth-to-ear
delay of lag + 20 ms).

Metrics (all at 16 kHz, polyphase-resampled from 48 kHz):
  delay   cross-correlation of output against input: the global lag (for alignment) and the
          mean of the lags of 1 s speech windows (clear peaks only), reported as mouth-to-ear
          = mean lag + 20 ms;
  PESQ    ITU-T P.862.2 wideband (`pesq`), the output cut at the global lag, the median over start
          offsets 0, +-1, +-2 ms (one offset alone is unstable);
  ViSQOL  v3 speech mode (`visqol-python`, with its LiteRT lattice model, the C++ default) on
          the same aligned pair;
  PLCMOS  v2 (`speechmos`; non-intrusive) on the aligned output, numpy's generator seeded per
          call so identical audio scores identically;
  concealed  20 ms frames of packet-loss concealment, as the receiver counts them.

--tsm RATES (e.g. 3,-3): how audible time-scale modification is, instead of the path classes. Each
clip goes through voice-sim on the clean class, once as is and once per rate with
`--force-rate RATE` (the receiver's own time-scaling: silence first, then whole pitch periods);
the same rate-0 output is also time-scaled by sox's WSOLA (`tempo -s`), the baseline. Prints
ViSQOL and PLCMOS per rate and method, and the cost against rate 0.
"""

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from scipy.io import wavfile  # noqa: E402
from scipy.signal import fftconvolve, resample_poly  # noqa: E402

CLASSES = ["clean", "wifi", "lte", "bursty", "reorder", "dup"]
RECEIVERS = ["adaptive", "adaptive-nodred", "fixed", "speex", "plain", "plain-fec"]
OURS = {
    "adaptive": ["--policy", "adaptive"],
    # The default receive path with in-band FEC alone (no DRED): what DRED adds.
    "adaptive-nodred": ["--policy", "adaptive", "--no-dred"],
    # Our fixed 2-packet policy with in-band FEC, as before DRED existed.
    "fixed": ["--policy", "fixed", "--no-dred"],
}
METRICS = ["pesq", "visqol", "plcmos"]
PHASES = [0, 5, 10, 15]
# ~10 s each, three voices.
TEXTS = [
    ("en-us+m3", 150,
     "The north wind and the sun were disputing which was the stronger, when a traveler came "
     "along wrapped in a warm cloak. They agreed that the one who first made him take his "
     "cloak off was stronger."),
    ("en-gb+f3", 160,
     "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow. "
     "The rainbow is a division of white light into many beautiful colors."),
    ("en-us+m7", 140,
     "Please call Stella. Ask her to bring these things with her from the store: six spoons of "
     "fresh snow peas, and five thick slabs of blue cheese."),
]
PESQ_OFFSETS_MS = [0, 1, -1, 2, -2]
MAX_LAG_MS = 1500


def make_clips(work):
    clips = []
    for i, (voice, rate, text) in enumerate(TEXTS):
        # Named by content, so a changed text never reuses a stale clip.
        h = hashlib.sha256(f"{voice}/{rate}/{text}/undithered".encode()).hexdigest()[:8]
        raw = os.path.join(work, f"clip{i}_{h}_raw.wav")
        out = os.path.join(work, f"clip{i}_{h}.wav")
        if not os.path.exists(out):
            # No dither (-D): sox dithers by default, which would give every work directory
            # different clips (and PLCMOS scores that differ by up to 0.1 for that alone).
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", raw, text], check=True)
            subprocess.run(["sox", "-D", raw, "-r", "48000", "-c", "1", "-b", "16", out], check=True)
            os.remove(raw)
        clips.append(out)
    return clips


def to16k(x):
    return resample_poly(x.astype(np.float64), 1, 3) / 32768.0


# ---- per-worker state ----

_visqol = None
_plcmos = None


def _get_visqol():
    global _visqol
    if _visqol is None:
        from visqol import VisqolApi
        _visqol = VisqolApi()
        _visqol.create(mode="speech")
    return _visqol


def _get_plcmos():
    global _plcmos
    if _plcmos is None:
        import onnxruntime as ort
        from speechmos.plcmos import PLCMOS
        _plcmos = PLCMOS()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        _plcmos.session = ort.InferenceSession(_plcmos.model_path, so)
    return _plcmos


# ---- delay from the audio ----

def xcorr_lags(ref, deg, max_lag):
    """Cross-correlation of deg against ref for lags 0..max_lag (samples), normalised."""
    n = len(ref)
    seg = deg[:n + max_lag]
    if len(seg) < n + max_lag:
        seg = np.concatenate([seg, np.zeros(n + max_lag - len(seg))])
    c = fftconvolve(seg, ref[::-1], mode="valid")[:max_lag + 1]
    # Energy of each deg window of length n.
    e = np.concatenate([[0.0], np.cumsum(seg * seg)])
    ed = e[n:n + max_lag + 1] - e[:max_lag + 1]
    er = float(np.dot(ref, ref))
    return c / np.sqrt(np.maximum(ed * er, 1e-12))


def measure_delay(ref, deg, rate=16000):
    """Global lag (samples) and the mean lag of 1 s speech windows (ms), from the audio."""
    max_lag = MAX_LAG_MS * rate // 1000
    g = xcorr_lags(ref, deg, max_lag)
    lag0 = int(np.argmax(g))
    win = rate
    lags = []
    rms_all = np.sqrt(np.mean(ref * ref))
    for start in range(0, len(ref) - win + 1, win // 2):
        w = ref[start:start + win]
        if np.sqrt(np.mean(w * w)) < 0.3 * rms_all:
            continue
        c = xcorr_lags(w, deg[start:], max_lag)
        k = int(np.argmax(c))
        if c[k] >= 0.5:
            lags.append(k)
    mean_ms = (float(np.mean(lags)) if lags else float(lag0)) * 1000.0 / rate
    return lag0, mean_ms, len(lags)


def aligned(deg, lag, n):
    if lag >= 0:
        seg = deg[lag:lag + n]
    else:
        seg = np.concatenate([np.zeros(-lag), deg[:n + lag]])
    if len(seg) < n:
        seg = np.concatenate([seg, np.zeros(n - len(seg))])
    return seg


def utterances(ref, rate=16000, frame_ms=20, gap_ms=150, min_ms=200):
    """[start, end) sample ranges of the reference's utterances: 20 ms frames within 40 dB of the
    loudest, joined across gaps shorter than 150 ms, at least 200 ms long."""
    f = rate * frame_ms // 1000
    n = len(ref) // f
    e = np.array([np.mean(ref[i * f:(i + 1) * f] ** 2) for i in range(n)])
    on = e > e.max() * 1e-4
    segs, start, last = [], None, None
    for i in range(n):
        if on[i]:
            if start is None:
                start = i
            elif (i - last - 1) * frame_ms >= gap_ms:
                segs.append((start, last + 1))
                start = i
            last = i
    if start is not None:
        segs.append((start, last + 1))
    return [(a * f, b * f) for a, b in segs if (b - a) * frame_ms >= min_ms]


def realigned(ref, deg, lag0, rate=16000, search_ms=400):
    """`deg` rebuilt on the reference's time line, each utterance of the reference matched to
    where it plays in `deg` (cross-correlation within ±400 ms of where the previous one ended
    up): what time-scaling did *between* utterances (the pauses grew or shrank, delay moved) is
    undone, what it did *inside* them stays. The pauses are silent, like the reference's."""
    out = np.zeros(len(ref))
    shift = lag0
    r = search_ms * rate // 1000
    for a, b in utterances(ref, rate):
        lo = max(0, a + shift - r)
        hi = min(len(deg), b + shift + r)
        if hi - lo < b - a:
            continue
        c = np.correlate(deg[lo:hi], ref[a:b], mode="valid")
        k = int(np.argmax(c))
        shift = lo + k - a
        out[a:b] = deg[lo + k:lo + k + (b - a)]
    return out


# ---- one run ----

def prepare(args):
    """voice-sim writes the trace and packets of (class, seed, clip)."""
    voice_sim, work, clip, cls, seed = args
    tag = f"{cls}_s{seed}"
    trace = os.path.join(work, "traces", tag + ".csv")
    packets = os.path.join(work, "traces", tag + ".bin")
    if not (os.path.exists(trace) and os.path.exists(packets)):
        tmp = os.path.join(work, "traces", tag + ".prep.wav")
        subprocess.run([voice_sim, "--input", clip, "--output", tmp, "--profile", cls,
                        "--seed", str(seed), "--write-trace", trace, "--write-packets", packets,
                        "--stats", tmp + ".json"], check=True, capture_output=True)
        os.remove(tmp)
        os.remove(tmp + ".json")
    return (cls, seed, clip), trace, packets


def one(args):
    voice_sim, baselines, work, clip, cls, seed, phase, receiver, trace, packets, metrics, keep = args
    t0 = time.time()
    tag = f"{cls}_s{seed}_p{phase}_{receiver}"
    out = os.path.join(work, "runs", tag + ".wav")
    stats = os.path.join(work, "runs", tag + ".json")
    if receiver in OURS:
        cmd = [voice_sim, "--input", clip, "--output", out, "--trace", trace,
               "--tick-phase", str(phase), "--stats", stats] + OURS[receiver]
    else:
        cmd = [baselines, "--receiver", receiver, "--packets", packets, "--trace", trace,
               "--tick-phase", str(phase), "--output", out, "--stats", stats]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{p.stderr}")
    with open(stats) as f:
        st = json.load(f)
    _, ref48 = wavfile.read(clip)
    _, deg48 = wavfile.read(out)
    ref = to16k(ref48)
    deg = to16k(deg48)
    lag0, mean_lag_ms, windows = measure_delay(ref, deg)
    row = {
        "class": cls, "receiver": receiver, "seed": seed, "clip": os.path.basename(clip).split("_")[0],
        "phase": phase, "lag_ms": lag0 / 16.0, "mouth_to_ear_ms": mean_lag_ms + 20.0,
        "delay_windows": windows, "concealed": float(st.get("frames_concealed", 0)),
        "fec_recovered": float(st.get("frames_fec_recovered", 0)),
        "packets_late": st.get("packets_late", 0),
    }
    deg_al = aligned(deg, lag0, len(ref))
    if "pesq" in metrics:
        from pesq import pesq
        scores = []
        for off in PESQ_OFFSETS_MS:
            try:
                scores.append(pesq(16000, ref, aligned(deg, lag0 + off * 16, len(ref)), "wb"))
            except Exception as e:  # noqa: BLE001 - PESQ refuses some inputs; record, go on
                print(f"pesq failed for {tag} offset {off}: {e}", file=sys.stderr)
        row["pesq"] = float(np.median(scores)) if scores else float("nan")
    if "visqol" in metrics:
        r = _get_visqol().measure_from_arrays(ref, deg_al, 16000)
        row["visqol"] = float(r.moslqo)
    if "plcmos" in metrics:
        np.random.seed(0)
        x = np.clip(deg_al, -1.0, 1.0).astype(np.float32)
        row["plcmos"] = float(_get_plcmos().get_mos(x))
    row["stats"] = st
    row["seconds"] = time.time() - t0
    if not keep:
        os.remove(out)
    return row


def tsm_one(args):
    """One clip at one forced rate: (clip, rate, method, visqol, plcmos)."""
    voice_sim, work, clip, rate, method = args
    name = os.path.basename(clip).split("_")[0]
    base = os.path.join(work, "runs", f"tsm_{name}_0.wav")
    out = os.path.join(work, "runs", f"tsm_{name}_{method}_{rate}.wav")
    if not os.path.exists(base):
        subprocess.run([voice_sim, "--input", clip, "--output", base, "--profile", "clean",
                        "--seed", "1"], check=True, capture_output=True)
    if method == "ours":
        subprocess.run([voice_sim, "--input", clip, "--output", out, "--profile", "clean",
                        "--seed", "1", "--force-rate", str(rate)], check=True, capture_output=True)
    else:
        subprocess.run(["sox", base, out, "tempo", "-s", str(1.0 + rate / 100.0)], check=True)
    _, ref48 = wavfile.read(clip)
    _, deg48 = wavfile.read(out)
    ref, deg = to16k(ref48), to16k(deg48)
    lag0, _, _ = measure_delay(ref, deg)
    deg_al = aligned(deg, lag0, len(ref))
    v = float(_get_visqol().measure_from_arrays(ref, deg_al, 16000).moslqo)
    v_utt = float(_get_visqol().measure_from_arrays(ref, realigned(ref, deg, lag0), 16000).moslqo)
    np.random.seed(0)
    p = float(_get_plcmos().get_mos(np.clip(deg_al, -1.0, 1.0).astype(np.float32)))
    # The rate reached: samples removed (or inserted) against the same clip's rate-0 output.
    achieved = 0.0
    if rate != 0:
        n0 = len(wavfile.read(base)[1]) if os.path.exists(base) else len(deg48)
        achieved = (n0 - len(deg48)) / n0 * 100.0
    return name, rate, method, v, p, achieved, v_utt


def tsm_table(voice_sim, work, clips, rates, jobs):
    """Prints ViSQOL / PLCMOS per forced rate for ours and sox WSOLA, and the cost vs rate 0."""
    jobs_ = [(voice_sim, work, c, 0, "ours") for c in clips]
    jobs_ += [(voice_sim, work, c, r, m) for c in clips for r in rates for m in ("ours", "sox")]
    # Rate-0 outputs first: the sox runs time-scale them.
    with cf.ProcessPoolExecutor(max_workers=jobs) as ex:
        rows = list(ex.map(tsm_one, jobs_[:len(clips)]))
        rows += list(ex.map(tsm_one, jobs_[len(clips):]))
    base = (np.mean([r[3] for r in rows if r[1] == 0]), np.mean([r[4] for r in rows if r[1] == 0]))
    print(f"\ntime-scale modification on clean speech, {len(clips)} clips (ViSQOL / PLCMOS; cost = rate 0 minus this)")
    base_utt = np.mean([r[6] for r in rows if r[1] == 0])
    print("ViSQOL per utterance: the output re-aligned on the reference utterance by utterance "
          "(time moved in the pauses is undone, time-scaling inside an utterance stays)")
    print("| rate | method | rate reached | ViSQOL | ViSQOL per utterance | PLCMOS | ViSQOL cost | per-utterance cost | PLCMOS cost |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| 0 % | none | | {base[0]:.2f} | {base_utt:.2f} | {base[1]:.2f} | | | |")
    for r in rates:
        for m in ("ours", "sox"):
            sel = [x for x in rows if x[1] == r and x[2] == m]
            v, p = np.mean([x[3] for x in sel]), np.mean([x[4] for x in sel])
            reached = np.mean([x[5] for x in sel])
            vu = np.mean([x[6] for x in sel])
            label = "ours (receiver TSM)" if m == "ours" else "sox tempo -s (WSOLA)"
            print(f"| {r:+g} % | {label} | {reached:+.2f} % | {v:.2f} | {vu:.2f} | {p:.2f} | "
                  f"{base[0] - v:+.2f} | {base_utt - vu:+.2f} | {base[1] - p:+.2f} |")


def fmt_cell(rs, metrics):
    parts = []
    for m in metrics:
        v = [r[m] for r in rs if m in r and not np.isnan(r[m])]
        parts.append(f"{np.mean(v):.2f}" if v else "-")
    m2e = np.mean([r["mouth_to_ear_ms"] for r in rs])
    return " / ".join(parts) + f" @ {m2e:.0f}"


def table(rows):
    """Prints the markdown table of `rows` (class x receiver) and returns the summary dict."""
    classes = [c for c in CLASSES if any(r["class"] == c for r in rows)]
    receivers = [x for x in RECEIVERS if any(r["receiver"] == x for r in rows)]
    metrics = [m for m in METRICS if any(m in r for r in rows)]
    clips = sorted({r["clip"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    phases = sorted({r["phase"] for r in rows})
    summary = {}
    head = " / ".join({"pesq": "PESQ", "visqol": "ViSQOL", "plcmos": "PLCMOS"}[m] for m in metrics)
    print(f"\n{head} @ mouth-to-ear ms (concealed 20 ms frames per run); means over "
          f"{len(clips)} clips, seeds {','.join(map(str, seeds))}, "
          f"phases {','.join(map(str, phases))}\n")
    print("| class | " + " | ".join(receivers) + " |")
    print("|---" * (len(receivers) + 1) + "|")
    for cls in classes:
        cells = []
        for rcv in receivers:
            rs = [r for r in rows if r["class"] == cls and r["receiver"] == rcv]
            if not rs:
                cells.append("-")
                continue
            conc = np.mean([r["concealed"] for r in rs])
            cells.append(f"{fmt_cell(rs, metrics)} ({conc:.1f})")
            summary[f"{cls}/{rcv}"] = {
                **{m: float(np.nanmean([r[m] for r in rs])) for m in metrics},
                "mouth_to_ear_ms": float(np.mean([r["mouth_to_ear_ms"] for r in rs])),
                "concealed": float(conc),
                "fec_recovered": float(np.mean([r["fec_recovered"] for r in rs])),
                "runs": len(rs),
            }
        print(f"| {cls} | " + " | ".join(cells) + " |")
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voice-sim")
    ap.add_argument("--baselines")
    ap.add_argument("--work")
    ap.add_argument("--table", metavar="RUNS.jsonl",
                    help="only print the table of a previous (or interrupted) run's runs.jsonl "
                         "or runs.partial.jsonl")
    ap.add_argument("--quick", action="store_true",
                    help="adaptive and fixed only, PESQ + PLCMOS")
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--receivers", default=None)
    ap.add_argument("--seeds", type=int, default=1,
                    help="seed indices per clip (default 1: each clip its own path)")
    ap.add_argument("--seed-from", type=int, default=1,
                    help="first seed index (default 1); e.g. 3 with --seeds 2 measures indices 3-4, "
                         "paths no tuning run has used")
    ap.add_argument("--phases", default=",".join(map(str, PHASES)))
    ap.add_argument("--metrics", default=None)
    ap.add_argument("--clips", type=int, default=len(TEXTS))
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", action="store_true", help="keep the output WAVs")
    ap.add_argument("--tsm", metavar="RATES",
                    help="measure forced time-scaling at these rates in %% (e.g. 3,-3) instead")
    a = ap.parse_args()
    if a.table:
        with open(a.table) as f:
            table([json.loads(line) for line in f if line.strip()])
        return
    if not (a.voice_sim and a.baselines and a.work):
        sys.exit("--voice-sim, --baselines and --work are required (or --table RUNS.jsonl)")
    if a.tsm:
        for d in ("traces", "runs"):
            os.makedirs(os.path.join(a.work, d), exist_ok=True)
        clips = make_clips(a.work)[:a.clips]
        tsm_table(a.voice_sim, a.work, clips, [float(r) for r in a.tsm.split(",")], a.jobs)
        return
    classes = a.classes.split(",")
    receivers = (a.receivers or ("adaptive,fixed" if a.quick else ",".join(RECEIVERS))).split(",")
    metrics = (a.metrics or ("pesq,plcmos" if a.quick else ",".join(METRICS))).split(",")
    seeds = a.seeds
    phases = [float(p) if "." in p else int(p) for p in a.phases.split(",")]
    for c in classes:
        if c not in CLASSES:
            sys.exit(f"unknown class {c!r} (known: {', '.join(CLASSES)})")
    for r in receivers:
        if r not in RECEIVERS:
            sys.exit(f"unknown receiver {r!r} (known: {', '.join(RECEIVERS)})")
    for m in metrics:
        if m not in METRICS:
            sys.exit(f"unknown metric {m!r} (known: {', '.join(METRICS)})")
    for d in ("traces", "runs"):
        os.makedirs(os.path.join(a.work, d), exist_ok=True)
    clips = make_clips(a.work)[:a.clips]
    t0 = time.time()
    with cf.ProcessPoolExecutor(max_workers=a.jobs) as ex:
        prep = list(ex.map(prepare, [(a.voice_sim, a.work, c, cls,
                                      (k - 1) * len(clips) + i + 1)
                                     for cls in classes for k in range(a.seed_from, a.seed_from + seeds)
                                     for i, c in enumerate(clips)]))
        jobs = [(a.voice_sim, a.baselines, a.work, clip, cls, seed, ph, rcv, trace, packets,
                 metrics, a.keep)
                for (cls, seed, clip), trace, packets in prep
                for ph in phases for rcv in receivers]
        print(f"{len(jobs)} runs: {len(classes)} classes x {len(receivers)} receivers x "
              f"{seeds} seeds x {len(phases)} phases x {len(clips)} clips; "
              f"metrics {','.join(metrics)}; {a.jobs} workers", file=sys.stderr)
        rows = []
        futs = [ex.submit(one, j) for j in jobs]
        # Each run is appended as it completes, so an interrupted benchmark keeps what it measured.
        partial = open(os.path.join(a.work, "runs.partial.jsonl"), "w")
        for i, f in enumerate(cf.as_completed(futs), 1):
            rows.append(f.result())
            partial.write(json.dumps(rows[-1]) + "\n")
            partial.flush()
            if i % 20 == 0 or i == len(futs):
                el = time.time() - t0
                print(f"  {i}/{len(futs)} runs, {el:.0f} s", file=sys.stderr)
    partial.close()
    elapsed = time.time() - t0

    rows.sort(key=lambda r: (r["class"], r["receiver"], r["seed"], r["clip"], r["phase"]))
    with open(os.path.join(a.work, "runs.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    cols = ["class", "receiver", "seed", "clip", "phase", "pesq", "visqol", "plcmos",
            "mouth_to_ear_ms", "lag_ms", "delay_windows", "concealed", "fec_recovered",
            "packets_late", "seconds"]
    with open(os.path.join(a.work, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    summary = table(rows)
    with open(os.path.join(a.work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\n{len(rows)} runs in {elapsed:.0f} s; every run in {a.work}/runs.jsonl and runs.csv, "
          f"the table in summary.json")


if __name__ == "__main__":
    main()
