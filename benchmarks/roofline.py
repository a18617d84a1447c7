"""Measured against predicted: our decoder's decode step and the flow head's sampling time.

For each size we time the real module on this machine and put the roofline prediction of
:mod:`omni_edu.cost` beside it, using the peaks that :func:`omni_edu.cost.calibrate_this_machine`
measures here (large fp32 matmul, large memory copy). On a GPU we also give the prediction
from the datasheet preset of the closest known device (``--preset``).

* decode: one new token per step with a KV cache holding ``--context`` tokens (the prefill is
  not timed); the roofline reads every weight and the cache once per step (memory-bound).
* flow: sampling one image of ``n_tokens`` tokens with ``--flow-steps`` Euler steps; every step
  runs the head's MLP on all tokens at once (compute-bound as soon as there are many tokens).

``ratio = measured / predicted``: near 1 means the module runs at the roofline; a large ratio
means per-operation overheads (Python, kernel launches) dominate, which is what small models
on any device show.

Run: ``python benchmarks/roofline.py [--device cpu|cuda] [--threads N]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from omni_edu import cost
from omni_edu.model.heads.flow import FlowHead, FlowHeadConfig
from omni_edu.model.transformer import Decoder, DecoderConfig
from omni_edu.model.weights import count_parameters

DECODER_SIZES = [(64, 2, 4), (256, 4, 4), (512, 6, 8), (1024, 8, 16)]  # (d_model, layers, heads)
FLOW_SIZES = [(128, 16), (128, 256), (512, 256), (512, 1024)]  # (width, tokens per image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch)")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--flow-steps", type=int, default=16)
    parser.add_argument("--preset", default="H100", help="datasheet device to compare on CUDA")
    parser.add_argument("--quick", action="store_true", help="only the two smallest sizes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    on_gpu = device.type == "cuda"
    here = cost.calibrate_this_machine(size=4096 if on_gpu else 512, copy_mib=256 if on_gpu else 32)
    preset = cost.get_hardware(args.preset) if on_gpu else None
    decoders = DECODER_SIZES[:2] if args.quick else DECODER_SIZES
    flows = FLOW_SIZES[:2] if args.quick else FLOW_SIZES

    decode_rows = []
    for d_model, n_layers, n_heads in decoders:
        config = DecoderConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads)
        decoder = Decoder(config).to(device).eval()
        shape = cost.decoder_shape(decoder)
        measured = cost.measure_decode_step(decoder, context=args.context)
        step = cost.decode_step_cost(shape, args.context, dtype="fp32")
        row = {
            "d_model": d_model,
            "n_layers": n_layers,
            "params": int(shape.n_params),
            "measured_ms": 1e3 * measured,
            "predicted_ms": 1e3 * step.time(here),
            "intensity_flop_per_byte": step.intensity,
            "bound": step.bound(here),
        }
        row["ratio"] = row["measured_ms"] / row["predicted_ms"]
        if preset is not None:
            row[f"predicted_ms_{preset.name}_fp32"] = 1e3 * step.time(preset)
        decode_rows.append(row)

    flow_rows = []
    for width, n_tokens in flows:
        head = FlowHead(FlowHeadConfig(token_dim=48, cond_dim=64, width=width)).to(device).eval()
        measured = cost.measure_flow_sampling(head, n_tokens, steps=args.flow_steps)
        sample = cost.flow_sampling_cost(head, n_tokens, steps=args.flow_steps)
        row = {
            "width": width,
            "tokens": n_tokens,
            "params": count_parameters(head),
            "measured_ms": 1e3 * measured,
            "predicted_ms": 1e3 * sample.time(here),
            "intensity_flop_per_byte": sample.intensity,
            "bound": sample.bound(here),
        }
        row["ratio"] = row["measured_ms"] / row["predicted_ms"]
        if preset is not None:
            row[f"predicted_ms_{preset.name}_fp32"] = 1e3 * sample.time(preset)
        flow_rows.append(row)

    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "device": here.name,
                "threads": args.threads,
                "torch": torch.__version__,
                "calibrated_fp32_gflops": here.flops("fp32") / 1e9,
                "calibrated_bandwidth_gbs": here.mem_bandwidth / 1e9,
                "context": args.context,
                "flow_steps": args.flow_steps,
                "decode": decode_rows,
                "flow": flow_rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
