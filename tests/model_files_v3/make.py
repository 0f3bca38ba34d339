"""Write the format-3 model files of this folder and what they compute (expected.json).

Run once, with skae at commit 425af19 (the last to write format 3, before the fit plan), as
``python tests/model_files_v3/make.py tests/model_files_v3``;
tests/test_persistence.py checks that today's skae loads them and computes the same.
"""

import json
import sys
import warnings

import numpy as np

from skae import (
    AutoEncoderImputer,
    AutoEncoderOutlierDetector,
    AutoEncoderTransformer,
    VariationalAutoEncoderTransformer,
)

out = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.random((40, 6)).astype(np.float32)
X_missing = X.copy()
X_missing[rng.random(X.shape) < 0.15] = np.nan
common = dict(n_components=2, hidden_layer_sizes=(8,), max_iter=3, random_state=0, device="cpu")
models = {
    "AutoEncoderTransformer": (AutoEncoderTransformer, X, "transform"),
    "AutoEncoderTransformer_missing": (AutoEncoderTransformer, X_missing, "transform"),
    "VariationalAutoEncoderTransformer": (VariationalAutoEncoderTransformer, X, "transform"),
    "AutoEncoderOutlierDetector": (AutoEncoderOutlierDetector, X, "score_samples"),
    "AutoEncoderImputer": (AutoEncoderImputer, X_missing, "transform"),
}
expected = {}
warnings.simplefilter("ignore")  # three epochs: far from converged, on purpose
for name, (cls, data, method) in models.items():
    est = cls(**common).fit(data)
    est.save(f"{out}/{name}.safetensors")
    output = np.asarray(getattr(est, method)(data), dtype=np.float64)
    expected[name] = {"method": method, "missing": data is X_missing, "output": output.tolist()}
with open(f"{out}/expected.json", "w") as file:
    json.dump(expected, file)
