"""Checks ONNX files that zgrad wrote: onnx.checker (full check, with shape
inference) passes, and onnxruntime's output for the saved input matches
zgrad's forward within 1e-5 relative (max |ort - zgrad| / max |zgrad|).

    python onnx_check.py DIR CASE...

For each CASE, DIR holds CASE.onnx, CASE.in.npy (the input) and
CASE.out.npy (zgrad's output), and optionally CASE.sd.txt: a line "NAME
D0 D1 ..." per parameter of zgrad's module, each of which must be an
initializer of that name and shape (so the file's weights load into the
PyTorch model of the same state_dict names). Prints one line per case;
exits 1 when any case fails.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

TOLERANCE = 1e-5


def check(d, case):
    path = os.path.join(d, case + ".onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    x = np.load(os.path.join(d, case + ".in.npy"))
    want = np.load(os.path.join(d, case + ".out.npy"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    if got.shape != want.shape:
        return f"{case}: onnxruntime gives shape {got.shape}, zgrad {want.shape}"
    rel = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))
    if not rel <= TOLERANCE:
        return f"{case}: relative difference {rel:.3g} > {TOLERANCE}"
    names = os.path.join(d, case + ".sd.txt")
    named = ""
    if os.path.exists(names):
        inits = {i.name: list(i.dims) for i in model.graph.initializer}
        with open(names) as f:
            want = [line.split() for line in f if line.strip()]
        for w in want:
            if inits.get(w[0]) != [int(x) for x in w[1:]]:
                return f"{case}: parameter {w[0]} {w[1:]} is not an initializer of that shape"
        named = f", {len(want)} parameters named as the state_dict"
    print(f"ok {case}: opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, "
          f"output {list(got.shape)}, relative difference {rel:.3g}{named}")
    return None


def main():
    d, cases = sys.argv[1], sys.argv[2:]
    bad = [p for p in (check(d, c) for c in cases) if p]
    for p in bad:
        print("onnx_check: " + p)
    return 1 if bad or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
