#!/usr/bin/env python
"""The README preset tables' speed columns, from predict_benchmark.py's JSON files (issue 22).

Per preset: "CPU ms (b1)" (`predict` at batch 1, `benchmarks/preset_speed_cpu.sh`), "GPU ms (b1)" (`predict`
at batch 1) and "GPU img/s (b32)" (the network's forward at batch 32), the GPU ones from
`benchmarks/preset_speed_device_runs.sh`. Presets named in README.md's "## Presets" tables that were not
measured take the numbers of the measured preset of their family and size (`rtmdet_r_l_dota_ms` those of
`rtmdet_r_l_dota`: same architecture, other weights). A column with no file prints "—".

    python benchmarks/preset_speed_table.py            # the default files under benchmarks/results
    python benchmarks/preset_speed_table.py --gpu a.json,b.json --cpu c.json
"""

import argparse
import glob
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# A later file's rows replace an earlier one's: Ins at batch 1 was measured again once `predict` pasted only
# the masks some image fills (52-61 ms → 13-21 ms).
GPU_FILES = ("det", "ins", "ins_b1_filled_slots", "rot")
DEFAULT_GPU = ",".join(os.path.join(RESULTS, f"preset_speed_h100_jax_bf16_{f}.json") for f in GPU_FILES)
DEFAULT_CPU = os.path.join(RESULTS, "preset_speed_cpu_tf_*.json")
FAMILIES = {"": "det", "_ins": "ins", "_r": "rot"}
ARCHITECTURE = re.compile(r"^rtmdet(_ins|_r)?_(tiny|s|m|l|x)_")
COMMANDS = {
    "gpu": "bash benchmarks/preset_speed_device_runs.sh OUT_DIR",
    "cpu": "bash benchmarks/preset_speed_cpu.sh",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", default=DEFAULT_GPU, help="comma-separated JSON files or globs")
    p.add_argument("--cpu", default=DEFAULT_CPU, help="comma-separated JSON files or globs")
    p.add_argument("--readme", default=os.path.join(HERE, "..", "README.md"), help="presets to list ('' for none)")
    return p.parse_args(argv)


def architecture(preset):
    """(family, size) of a detector preset, or None."""
    match = ARCHITECTURE.match(preset)
    return (FAMILIES[match.group(1) or ""], match.group(2)) if match else None


def load(patterns):
    """{(preset, batch): row} and the runs' descriptions of every file matching `patterns`."""
    rows, runs = {}, []
    for pattern in filter(None, patterns.split(",")):
        for path in sorted(glob.glob(pattern)):
            with open(path) as f:
                report = json.load(f)
            dtypes = sorted({row["dtype"] for row in report["results"]})
            device = report.get("device", "?")
            runs.append(f"{os.path.basename(path)}: {device}, {report['backend']}, {'/'.join(dtypes)}")
            for row in report["results"]:
                rows[(row["preset"], row["batch"])] = row
    return rows, runs


def readme_presets(path):
    """Preset names of the detector rows of README.md's "## Presets" tables, in order."""
    if not path or not os.path.exists(path):
        return []
    names, inside = [], False
    with open(path) as f:
        for line in f:
            if line.startswith("## "):
                inside = line.strip() == "## Presets"
            match = re.match(r"\| `([a-z0-9_]+)` \|", line) if inside else None
            if match and architecture(match.group(1)):
                names.append(match.group(1))
    return names


def cell(rows, preset, batch, stage, key, fmt, measured):
    """The formatted value, from `preset` or the measured preset of its architecture."""
    row = rows.get((preset, batch)) or rows.get((measured.get(architecture(preset)), batch))
    if not row or stage not in row:
        return "—"
    return fmt.format(row[stage][key])


def main(argv=None):
    args = parse_args(argv)
    gpu, gpu_runs = load(args.gpu)
    cpu, cpu_runs = load(args.cpu)
    measured = {}
    for preset, _ in list(gpu) + list(cpu):
        if architecture(preset):
            measured.setdefault(architecture(preset), preset)
    measured_presets = [p for p, _ in list(gpu) + list(cpu) if architecture(p)]
    presets = list(dict.fromkeys(readme_presets(args.readme) + measured_presets))
    print("GPU: " + ("; ".join(gpu_runs) or "no file") + f"  ({COMMANDS['gpu']})")
    print("CPU: " + ("; ".join(cpu_runs) or "no file") + f"  ({COMMANDS['cpu']})")
    for family in ("det", "ins", "rot"):
        members = [p for p in presets if architecture(p)[0] == family]
        if not members:
            continue
        print(f"\n{family}\n\n| preset | CPU ms (b1) | GPU ms (b1) | GPU img/s (b32) |\n|---|---|---|---|")
        for preset in members:
            cells = (
                cell(cpu, preset, 1, "predict", "median_ms", "{:,.0f}", measured),
                cell(gpu, preset, 1, "predict", "median_ms", "{:.1f}", measured),
                cell(gpu, preset, 32, "forward", "images_per_s", "{:,.0f}", measured),
            )
            print(f"| `{preset}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
