#!/usr/bin/env python3
"""Echo diagnosis (issue 15): where does the near-end talker go in double talk?

Builds echo scenes like apm.py's (far-end speech through a synthetic room, then near-end speech)
with knobs the benchmark keeps fixed, runs them through `voice-apm` and prints, per scene and
variant:

- ERLE over far-end-only frames from 2 s on (as apm.py);
- near-end PESQ-WB in the double-talk part (as apm.py);
- near gain: the output projected on the near-end speech over double-talk frames where the near
  end talks (least squares per 20 ms frame, energy-weighted: 10 log10 of sum <o,n>^2/<n,n> over
  sum <n,n>). The residual echo is uncorrelated with the near end, so this is how much of the
  near-end talker survives, in dB (0 = all of it);
- echo gain in double talk: the output projected on the echo in the same frames (how much echo
  is left while the near end talks);
- muted: share of near-active double-talk frames whose near gain is under -10 dB.

Knobs: --ser (signal-to-echo, dB), --drr (direct-to-reverberant ratio of the synthetic room in dB;
`bench` keeps apm.py's room: a direct path of 3 over a unit-variance decaying noise tail, which is
-21 dB at RT60 300 ms), --dt cont|bursts (continuous double talk in the second half, as apm.py, or
the near end in 1.5 s bursts every 4 s), several seeds (seed i: room i of --rooms, its own noise).

    .venv/bin/python benches/apm/echo_diag.py --voice-apm BIN --work DIR \
        [--variant NAME=FLAGS ...] [--ser 0 10] [--drr bench 6] [--dt cont bursts] [--seeds 0 1 2] [--oracle]
"""

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.signal import fftconvolve

sys.path.insert(0, os.path.dirname(__file__))
import apm  # noqa: E402

SR = apm.SR
FRAME = apm.FRAME


def scene(work, clips, i, rt60, delay, ser, drr, dt, seed):
    name = f"diag{i}_{rt60}_{delay}_{ser}_{drr}_{dt}_{seed}"
    far_clip, near_clip = clips[i % len(clips)], clips[(i + 1) % len(clips)]
    return apm.echo_scene(work, name, far_clip, near_clip, rt60, delay, ser, dt, seed, None if drr == "bench" else float(drr))


def project_db(out, ref, sel):
    """Energy-weighted per-frame least-squares gain of `out` on `ref` over frames `sel`, dB."""
    n = min(len(out), len(ref)) // FRAME
    o = out[: n * FRAME].reshape(n, FRAME)[sel[:n]]
    r = ref[: n * FRAME].reshape(n, FRAME)[sel[:n]]
    rr = (r * r).sum(axis=1)
    orr = (o * r).sum(axis=1)
    g = orr / np.maximum(rr, 1e-20)
    total = 10 * np.log10(max(np.sum(g * g * rr), 1e-20) / max(rr.sum(), 1e-20))
    per_frame = 10 * np.log10(np.maximum(g * g, 1e-10))
    return total, per_frame


def measure(s, out, pesq, aecmos=None):
    far, near, echo, mic, split = s["far"], s["near"], s["echo"], s["mic"], s["split"]
    out = out[: len(mic)]
    ef = apm.frame_energy(far[:split])
    act = ef > ef.max() * 10 ** (-35 / 10)
    fr = np.arange(len(act)) * FRAME >= 2 * SR
    sel = act & fr
    em, eo = apm.frame_energy(mic[:split])[sel], apm.frame_energy(out[:split])[sel]
    erle = 10 * np.log10(em.sum() / max(eo.sum(), 1e-20))
    # The double-talk part, the output shifted by the lag that lines it up with the near end.
    ref, e2 = near[split:], echo[split:]
    n = min(len(ref), 10 * SR)
    c = fftconvolve(out[split:][:n], ref[:n][::-1], mode="full")
    lag = int(np.argmax(np.abs(c[n - 1 : n - 1 + 4800])))
    deg = np.zeros(len(ref))
    seg = out[split + lag :]
    deg[: len(seg)] = seg
    en = apm.frame_energy(ref)
    near_act = en > en.max() * 10 ** (-30 / 10)
    efar = apm.frame_energy(far[split:])[: len(near_act)]
    both = near_act & (efar > efar.max() * 10 ** (-30 / 10))
    ng, per = project_db(deg, ref, near_act)
    eg, _ = project_db(deg, e2, both)
    muted = float(np.mean(per < -10)) if len(per) else float("nan")
    ps = pesq(16000, apm.to16(ref), apm.to16(deg), "wb")
    res = dict(erle=erle, pesq=ps, near_db=ng, echo_db=eg, muted=muted)
    if aecmos is not None:
        # As apm.py: the echo score on the far-end-only half, the degradation on the double talk.
        st = aecmos.run(
            {"lpb": apm.to16(far[:split]), "mic": apm.to16(mic[:split]), "enh": apm.to16(out[:split])}, sr=16000, talk_type="st"
        )
        dtk = aecmos.run(
            {"lpb": apm.to16(far[split:]), "mic": apm.to16(mic[split:]), "enh": apm.to16(out[split:])}, sr=16000, talk_type="dt"
        )
        res["echo_mos"], res["deg_mos"] = st["echo_mos"], dtk["deg_mos"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--voice-apm", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--variant", action="append", default=[], help="NAME=voice-apm flags")
    ap.add_argument("--ser", type=float, nargs="+", default=[0.0])
    ap.add_argument("--drr", nargs="+", default=["bench"])
    ap.add_argument("--dt", nargs="+", default=["cont"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rooms", default="300:80,200:40,400:120", help="RT60 ms:delay ms,...")
    ap.add_argument("--oracle", action="store_true", help="also score near + echo attenuated by 10/25/40 dB")
    ap.add_argument("--summary", action="store_true", help="print only the means")
    ap.add_argument("--aecmos", action="store_true", help="also AECMOS echo (far-end half) and degradation (double talk)")
    ap.add_argument("-j", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    from pesq import pesq

    aecmos = None
    if args.aecmos:
        from speechmos import aecmos

    clips = [apm.make_clip(args.work, i) for i in range(3)]
    rooms = [tuple(int(v) for v in r.split(":")) for r in args.rooms.split(",")]
    variants = [("AEC only", ("--no-ns", "--no-agc"))]
    for v in args.variant:
        name, _, flags = v.partition("=")
        variants.append((name, tuple(flags.split())))
    scenes = []
    for ser in args.ser:
        for drr in args.drr:
            for dt in args.dt:
                for seed in args.seeds:
                    rt60, delay = rooms[seed % len(rooms)]
                    key = (ser, drr, dt, seed, rt60, delay)
                    scenes.append((key, scene(args.work, clips, seed, rt60 / 1000, delay, ser, drr, dt, seed)))

    def job(sv):
        (key, s), (name, flags) = sv
        info = apm.run_apm(args, "ours", s["paths"]["mic"], far=s["paths"]["far"], extra=flags)
        r = measure(s, info["out"], pesq, aecmos)
        r["cpu"] = info["core_percent"]
        return (key, name), r

    with ThreadPoolExecutor(args.j) as ex:
        res = dict(ex.map(job, [(s, v) for s in scenes for v in variants]))
    print("| SER dB | DRR dB | double talk | seed (RT60/delay ms) | variant | ERLE dB | near PESQ | near gain dB | echo gain in DT dB | near muted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, s in [] if args.summary else scenes:
        ser, drr, dt, seed, rt60, delay = key
        if args.oracle:
            for att in (10, 25, 40):
                ref = s["near"][s["split"] :]
                deg = ref + s["echo"][s["split"] :] * 10 ** (-att / 20)
                p = pesq(16000, apm.to16(ref), apm.to16(deg), "wb")
                print(f"| {ser:g} | {drr} | {dt} | {seed} ({rt60}/{delay}) | oracle: echo −{att} dB | – | {p:.2f} | 0 | −{att} | 0 % |")
        for name, _ in variants:
            r = res[(key, name)]
            print(
                f"| {ser:g} | {drr} | {dt} | {seed} ({rt60}/{delay}) | {name} | {r['erle']:.1f} | {r['pesq']:.2f} "
                f"| {r['near_db']:.1f} | {r['echo_db']:.1f} | {100 * r['muted']:.0f} % |"
            )
    # Means per (SER, DRR, dt, variant).
    mos = ["echo_mos", "deg_mos"] if args.aecmos else []
    print(
        "\n| SER dB | DRR dB | double talk | variant | mean ERLE dB | min ERLE dB | mean near PESQ | mean near gain dB | mean muted | CPU % |"
        + ("" if not mos else " AECMOS echo | AECMOS degradation |")
    )
    print("|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(mos))
    for ser in args.ser:
        for drr in args.drr:
            for dt in args.dt:
                for name, _ in variants:
                    rs = [r for (k, n), r in res.items() if n == name and k[:3] == (ser, drr, dt)]
                    m = {f: np.mean([r[f] for r in rs]) for f in ["erle", "pesq", "near_db", "muted", "cpu"] + mos}
                    lo = min(r["erle"] for r in rs)
                    print(
                        f"| {ser:g} | {drr} | {dt} | {name} | {m['erle']:.1f} | {lo:.1f} | {m['pesq']:.2f} | {m['near_db']:.1f} "
                        f"| {100 * m['muted']:.0f} % | {m['cpu']:.1f} |" + "".join(f" {m[f]:.2f} |" for f in mos)
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
