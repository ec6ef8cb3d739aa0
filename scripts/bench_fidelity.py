"""Wall time of one epoch of FBNetV3_A on digits at each training fidelity (TrainEvaluator):

    OMP_NUM_THREADS=1 python scripts/bench_fidelity.py
"""
import time, json, os
from jointnas.catalog import load_space
from jointnas.evaluation.train import TrainEvaluator
from jointnas.evaluation.base import TrialRequest
s = load_space('fbnetv3'); c = s.preset('FBNetV3_A')
e = TrainEvaluator('digits', device='cpu')
e.evaluate(c, s, TrialRequest(1, 0, fidelity={'data': 1/64}))   # warm: imports, data
out = []
for rep in range(2):
    for f in [None, {'data': 0.5}, {'width': 0.5}, {'data': 0.5, 'width': 0.5}, {'resolution': 0.875}]:
        t = time.time(); r = e.evaluate(c, s, TrialRequest(1, 0, fidelity=f))
        out.append({'fidelity': f, 'wall': time.time() - t, 'val': r.final_score, 'status': r.status, 'load': os.getloadavg()[0]})
        print(json.dumps(out[-1]), flush=True)
