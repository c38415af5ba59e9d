"""Optuna's TPESampler on the benchmark functions of runner/tests/tpe.rs:
for each function and seed, the best value after each trial. Also each
function's value at a few fixed points, so the test can check that both
sides minimise the same function. Prints one JSON object.

    tpe_peer.py SEEDS TRIALS
"""
import json
import math
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def quadratic(lr, layers):
    """A shifted quadratic in log10 of the learning rate, plus a penalty per depth."""
    return (math.log10(lr) + 3.5) ** 2 + {2: 0.5, 4: 0.0, 6: 0.3}[layers]


def branin(x1, x2):
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


FUNCTIONS = {
    "quadratic": (
        lambda trial: quadratic(trial.suggest_float("train.lr", 1e-5, 1e-1, log=True), trial.suggest_categorical("model.layers", [2, 4, 6])),
        [quadratic(1e-3, 2), quadratic(3e-5, 6), quadratic(0.05, 4)],
    ),
    "branin": (
        lambda trial: branin(trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15)),
        [branin(-5, 0), branin(math.pi, 2.275), branin(1, 7)],
    ),
}


def main():
    seeds, trials = int(sys.argv[1]), int(sys.argv[2])
    out = {}
    for name, (objective, checks) in FUNCTIONS.items():
        curves = []
        for seed in range(seeds):
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
            study.optimize(objective, n_trials=trials)
            best, curve = math.inf, []
            for trial in study.trials:
                best = min(best, trial.value)
                curve.append(best)
            curves.append(curve)
        out[name] = {"curves": curves, "checks": checks}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
