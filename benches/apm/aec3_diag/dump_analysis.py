#!/usr/bin/env python3
"""Reads AEC3's per-block dump (sonora built with sonora-diag.patch, SONORA_AEC3_DUMP=FILE) for one
echo_diag.py scene and prints what the linear filter and the suppressor each did.

Dump columns per 4 ms block of the lower band (0-8 kHz): Y2 (capture power), E2 (linear filter
output power, clamped to Y2), S2 (linear echo estimate), R2 (residual echo estimate), the
suppressor's gain weighted by Y2, its mean gain, dominant-nearend state, usable linear estimate,
linear output used.

    SONORA_AEC3_DUMP=/tmp/d.txt voice-apm --input MIC --far FAR --output OUT --no-ns --no-agc
    .venv/bin/python benches/apm/aec3_diag/dump_analysis.py /tmp/d.txt --work DIR \
        --ser 0 --drr bench --dt cont --seed 0
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import apm  # noqa: E402
import echo_diag  # noqa: E402

B = 192  # one 4 ms AEC3 block at 48 kHz


def db(x):
    return 10 * np.log10(max(x, 1e-20))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("--work", required=True)
    ap.add_argument("--ser", type=float, default=0.0)
    ap.add_argument("--drr", default="bench")
    ap.add_argument("--dt", default="cont")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rooms", default="300:80,200:40,400:120")
    args = ap.parse_args()
    rooms = [tuple(int(v) for v in r.split(":")) for r in args.rooms.split(",")]
    rt60, delay = rooms[args.seed % len(rooms)]
    clips = [apm.make_clip(args.work, i) for i in range(3)]
    s = echo_diag.scene(args.work, clips, args.seed, rt60 / 1000, delay, args.ser, args.drr, args.dt, args.seed)
    d = np.loadtxt(args.dump)
    n = min(len(d), len(s["far"]) // B)
    y2, e2, s2, r2, gw, _gm, dn, usable, _lin = d[:n].T

    def blocks(x):
        return (x[: n * B].reshape(n, B) ** 2).mean(1)

    nb, eb = blocks(s["near"]), blocks(s["echo"])
    t = np.arange(n) * B
    far_only = (t < s["split"]) & (t >= 2 * apm.SR) & (eb > eb.max() * 1e-3)
    dt = (t >= s["split"]) & (nb > nb.max() * 1e-3) & (eb > eb.max() * 1e-3)
    # Y2 per unit of time-domain power, from the far-end-only part (the capture is the echo there).
    k = y2[far_only].sum() / eb[far_only].sum()
    print(f"blocks {n}: far-end only {far_only.sum()}, double talk {dt.sum()}")
    print(
        f"far-end only: linear filter ERLE (Y2/E2) {db(y2[far_only].sum() / e2[far_only].sum()):.1f} dB, "
        f"suppressor gain {db((gw[far_only] * y2[far_only]).sum() / y2[far_only].sum()):.1f} dB, "
        f"usable linear estimate {usable[far_only].mean():.2f}"
    )
    print(
        f"double talk: Y2/E2 {db(y2[dt].sum() / e2[dt].sum()):.1f} dB (near/echo at the input "
        f"{db(nb[dt].sum() / eb[dt].sum()):.1f} dB), E2 over the near end {db(e2[dt].sum() / (k * nb[dt].sum())):.1f} dB "
        f"(0: the linear filter left no echo), R2 over the near end {db(r2[dt].sum() / (k * nb[dt].sum())):.1f} dB, "
        f"suppressor gain {db((gw[dt] * y2[dt]).sum() / y2[dt].sum()):.1f} dB (median block {db(np.median(gw[dt])):.1f} dB), "
        f"dominant nearend {dn[dt].mean():.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
