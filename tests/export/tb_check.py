"""Reads a zgrad run directory with TensorBoard's own reader and compares
its scalars with metrics.jsonl; exit 0 and one line "ok ..." when they
agree, else 1 and what differs.

    python tb_check.py RUN_DIR

Expected, per line of metrics.jsonl (one epoch, or one evaluation interval
of a GPT): at the run's optimizer step count so far, train_loss, test_loss,
test_acc, lr, grad_norm and throughput (samples / seconds), each as a
float32, each only where finite (JSON null is left out). Orphan purging is
off, so a point written twice (by two files, say) shows twice.
"""
import json
import math
import os
import sys

import glob
import struct

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

TAGS = ["train_loss", "test_loss", "test_acc", "lr", "grad_norm", "throughput"]


def expected(run):
    want = {t: [] for t in TAGS}
    step = 0
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            step += m["steps"]
            vals = {t: m.get(t) for t in TAGS[:5]}
            if m.get("samples", -1) >= 0 and m["seconds"] > 0:
                vals["throughput"] = m["samples"] / m["seconds"]
            for t, v in vals.items():
                if v is not None and math.isfinite(v):
                    want[t].append((step, float(np.float32(v))))
    return {t: v for t, v in want.items() if v}


def check_framing(path):
    """Each record's length and data carry TensorBoard's masked CRC-32C."""
    data = open(path, "rb").read()
    at = records = 0
    while at < len(data):
        if at + 12 > len(data):
            return f"{path}: a torn record header at byte {at}"
        head = data[at : at + 8]
        (n,) = struct.unpack("<Q", head)
        (crc,) = struct.unpack("<I", data[at + 8 : at + 12])
        if crc != masked_crc32c(head):
            return f"{path}: the length CRC of record {records} is wrong"
        body = data[at + 12 : at + 12 + n]
        if len(body) < n or at + 16 + n > len(data):
            return f"{path}: record {records} is torn"
        (crc,) = struct.unpack("<I", data[at + 12 + n : at + 16 + n])
        if crc != masked_crc32c(body):
            return f"{path}: the data CRC of record {records} is wrong"
        at += 16 + n
        records += 1
    return None


def main():
    run = sys.argv[1]
    files = glob.glob(os.path.join(run, "*tfevents*"))
    if len(files) != 1:
        print(f"tb_check: {len(files)} event files in {run}: {files}")
        return 1
    bad = check_framing(files[0])
    if bad:
        print("tb_check: " + bad)
        return 1
    ea = EventAccumulator(run, size_guidance={"scalars": 0}, purge_orphaned_data=False)
    ea.Reload()
    got_tags = sorted(ea.Tags()["scalars"])
    want = expected(run)
    problems = []
    if got_tags != sorted(want):
        problems.append(f"tags {got_tags}, expected {sorted(want)}")
    walls = []
    for t in want:
        if t not in got_tags:
            continue
        got = [(e.step, e.value) for e in ea.Scalars(t)]
        walls += [e.wall_time for e in ea.Scalars(t)]
        if got != want[t]:
            problems.append(f"{t}: {got}, expected {want[t]}")
    if problems:
        print("tb_check: " + "; ".join(problems))
        return 1
    n = sum(len(v) for v in want.values())
    print(f"ok {n} points in {len(want)} tags, wall times {min(walls):.3f}..{max(walls):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
