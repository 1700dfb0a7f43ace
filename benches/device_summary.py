#!/usr/bin/env python3
"""Gathers what benches/device.sh left in OUT into OUT/device.json (everything, one object)
and OUT/device.md (a table). Usage: device_summary.py OUT SMALL(0|1). Standard library only."""
import json
import os
import sys


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def load(path):
    text = read(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        return {"error": f"unreadable JSON: {e}"}


def fmt_t(t, digits=3):
    if not t:
        return "n/a"
    return f"{t['median']:.{digits}f} [{t['min']:.{digits}f}, {t['max']:.{digits}f}]"


def fmt_s(t, digits=4):
    return "n/a" if not t else f"{t['median']:.{digits}f}"


def main():
    out, small = sys.argv[1], sys.argv[2] == "1"
    machine = {}
    for line in (read(os.path.join(out, "machine.txt")) or "").splitlines():
        key, _, value = line.partition(": ")
        machine[key] = value
    notes = [n for n in (read(os.path.join(out, "notes.txt")) or "").splitlines() if n]
    bench = {d: load(os.path.join(out, f"bench-{d}.json")) for d in ("f32", "bf16", "smoke")}
    torch = {d: load(os.path.join(out, f"torch-{d}.json")) for d in ("float32", "bfloat16")}
    summary = dict(
        schema="gradtail.device/1", small=small, machine=machine, notes=notes,
        info=read(os.path.join(out, "info.txt")), bench=bench, torch=torch,
    )
    with open(os.path.join(out, "device.json"), "w") as f:
        json.dump(summary, f, indent=1)

    md = ["# gradtail device run", ""]
    if small:
        md += ["**Small mode**: tiny sizes to check the script end to end; timings mean nothing.", ""]
    for key in ("date", "commit", "host", "cpu", "nvidia-smi", "vulkan"):
        if key in machine:
            md.append(f"- {key}: {machine[key]}")
    md += ["", "| dtype | tool | engine / device | K × P | end to end s, median [min, max] | input GB/s "
           "| upload s | submit s | readback s (wait) | host s | kernel s | kernel GB/s (% of copy) "
           "| dev copy GB/s | upload GB/s | units / submits |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dtype, tdtype in (("f32", "float32"), ("bf16", "bfloat16")):
        b = bench[dtype]
        if b and "engines" in b:
            size = f"{b['samples']} × {b['params']}"
            for e in b["engines"]:
                a = e.get("adapter")
                if a is None:
                    where = "host CPU"
                elif e.get("cpu_device"):
                    where = f"{a['name']} (CPU device: not GPU figures)"
                else:
                    where = f"{a['name']} ({a['driver']})"
                head = f"| {dtype} | gradtail | {e['engine']}: {where} | {size} | {fmt_t(e['end_to_end_s'])} " \
                       f"| {e['input_gb_s']:.2f} "
                if e["engine"] != "gpu":
                    md.append(head + f"| | | | | | | {e['ceiling_gb_s']:.1f} (host read) | | |")
                    continue
                kg = (f"{e['kernel_gb_s']:.1f} ({100 * e['kernel_fraction_of_ceiling']:.0f}%)"
                      if e.get("kernel_gb_s") is not None else "n/a")
                md.append(head + f"| {fmt_s(e['upload_s'])} | {fmt_s(e['submit_s'])} "
                          f"| {fmt_s(e['readback_s'])} ({fmt_s(e['readback_wait_s'])}) | {fmt_s(e['host_s'])} "
                          f"| {fmt_s(e.get('kernel_s'))} | {kg} | {e['ceiling_gb_s']:.1f} "
                          f"| {e['upload_gb_s']:.1f} | {e['units']} / {e['submits']} |")
        elif b:
            md.append(f"| {dtype} | gradtail | {b.get('error', 'no result')} | | | | | | | | | | | | |")
        t = torch[tdtype]
        if t and "device_resident_s" in t:
            size = f"{t['samples']} × {t['params']}"
            gb = t["input_bytes"] / 1e9
            for label, key in (("data on the device", "device_resident_s"),
                               ("from pinned host memory", "from_host_s")):
                md.append(f"| {dtype} | torch {t['torch']} | CUDA {t['cuda']}: {t['device']}, {label} "
                          f"| {size} | {fmt_t(t[key])} | {gb / t[key]['median']:.2f} | | | | | | | | | |")
    md.append("")
    for dtype, tdtype in (("f32", "float32"), ("bf16", "bfloat16")):
        b, t = bench[dtype], torch[tdtype]
        if not (b and "engines" in b and t and "from_host_s" in t):
            continue
        g = next((e for e in b["engines"] if e["engine"] == "gpu" and not e.get("cpu_device")), None)
        if g and b["samples"] == t["samples"] and b["params"] == t["params"]:
            mine, host, dev = (g["end_to_end_s"]["median"], t["from_host_s"]["median"],
                               t["device_resident_s"]["median"])
            md.append(f"- {dtype}: gradtail's GPU engine {mine:.3f} s end to end from host memory: "
                      f"{host / mine:.2f}× as fast as torch from pinned host memory ({host:.3f} s) and "
                      f"{dev / mine:.2f}× as fast as torch on data already on the device ({dev:.3f} s).")
    for dtype in ("smoke", "f32", "bf16"):
        b = bench[dtype]
        for pair, rows in (b or {}).get("agreement", []):
            worst = ", ".join(f"{r['stat']} {r['max_error']:.1e}" for r in rows
                              if r["stat"].startswith("alpha") or r["stat"] in ("mean", "var"))
            label = "tiny-size check (f32)" if dtype == "smoke" else dtype
            md.append(f"- {label} largest disagreement, {pair} (α as 1/α, mean in sd, var relative): {worst}")
    md += ["", "Phases are host wall clock (upload + submit + readback + host = end to end); kernel is "
           "device time from timestamp queries and overlaps them. Kernel GB/s counts each input byte once per pass.",
           "The torch peer runs on its own device-generated SαS(1.7) data of the same size."]
    if notes:
        md += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    with open(os.path.join(out, "device.md"), "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
