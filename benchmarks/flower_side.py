"""Flower's half of ``benchmarks/vs_flower.py``: runs in Flower's own virtual environment.

One Flower simulation (Ray backend, one CPU per client): N clients, every client every round
(FedAvg, fraction_fit = 1), each training the same logistic regression on its own rows of the
benchmark's data table with the same SGD as Dandelion's workers (``train_many`` on one job: the
numpy fast path, which matches the browser's pure-Python code), its delta clipped to the same
L2 bound as Dandelion's workers clip theirs.

Prints (time.time() throughout) one JSON line per closed round, ``{"round": r, "start": t0,
"end": t1, "results": k, "failures": f}`` (``start`` when the strategy configures the round:
the first round's span holds the Ray actors' start and their first data load), and after the
last round ``{"final_accuracy": a, "model": PATH}``: the final model's held-out accuracy and the
model as float32 values in ``PATH`` (``.npy``).

    python benchmarks/flower_side.py TABLE.npz N ROUNDS LR EPOCHS BATCH CLIP MODEL_OUT.npy
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from browser_worker.training import Hyper  # noqa: E402
from dandelion.emulation.fasttrain import TrainJob, train_many  # noqa: E402
from dandelion.emulation.localdata import TableSource  # noqa: E402
from dandelion.taskspec.models import ModelSpec  # noqa: E402

_TABLE: TableSource | None = None


def _table(path: str) -> TableSource:
    global _TABLE
    if _TABLE is None:
        _TABLE = TableSource(path)
    return _TABLE


def main() -> None:
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    path, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    lr, epochs, batch, clip = (
        float(sys.argv[4]),
        int(sys.argv[5]),
        int(sys.argv[6]),
        float(sys.argv[7]),
    )
    model_out = sys.argv[8]
    hyper = Hyper(lr, epochs, batch, clip)
    nf = _table(path).num_features
    spec = ModelSpec("logreg", nf)

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            data = _table(path).local(self.pid)
            params = np.asarray(parameters[0], dtype=np.float32)
            state = random.Random(f"flower{self.pid}:{config.get('round', 0)}").getstate()
            result = train_many(spec, hyper, [TrainJob(data, params, state)])[0]
            new = params.copy()
            new[result.touched] += result.clipped.astype(np.float32)
            return [new], result.num_examples, {}

    def client_fn(context: Context) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    class Timed(FedAvg):  # type: ignore[misc]
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            self._start = time.time()
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            out = super().aggregate_fit(server_round, results, failures)
            line = {"round": server_round, "start": self._start, "end": time.time()}
            print(
                json.dumps({**line, "results": len(results), "failures": len(failures)}), flush=True
            )
            if server_round == rounds and out[0] is not None:
                final(parameters_to_ndarrays(out[0])[0])
            return out

    def final(params: np.ndarray) -> None:
        test = _table(path).test_set()
        w = params.astype(np.float64)
        values = np.where(test.indices >= 0, test.values, 0.0)
        z = w[-1] + (w[test.indices.clip(min=0)] * values).sum(axis=1)
        accuracy = float(np.mean((z > 0) == (test.labels == 1)))
        np.save(model_out, params.astype(np.float32))
        print(json.dumps({"final_accuracy": round(accuracy, 4), "model": model_out}), flush=True)

    initial = ndarrays_to_parameters([np.zeros(spec.param_count, dtype=np.float32)])

    def server_fn(context: Context) -> ServerAppComponents:
        strategy = Timed(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=n,
            min_available_clients=n,
            initial_parameters=initial,
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=n,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )


if __name__ == "__main__":
    main()
