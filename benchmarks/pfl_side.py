"""pfl-research's half of ``benchmarks/vs_flower.py``: runs in pfl's own virtual environment.

One pfl simulation (``pfl`` 0.6.0, its PyTorch path, ``SimulatedBackend`` in one process, torch
on one thread): N users, every user every round (cohort N, ``minimize_reuse`` sampling), each
training the same logistic regression as Dandelion's workers on its own rows of the benchmark's
data table with the same SGD — 1 epoch (by default) of mini-batches of 16, each user's rows
shuffled once per round, plain ``torch.optim.SGD`` at the same learning rate on the batch's mean
log-loss — its delta clipped to the same L2 bound (``NormClippingOnly``), weighted by examples
(``WeightByDatapoints``) and averaged into the model with a central SGD of learning rate 1
(FedAvg). The model is a weight per feature and a bias; a row's logit is the sum of its
features' weights times their values plus the bias (the table's sparse rows, padded with index
-1 and value 0), which is what Dandelion's trainer computes.

pfl's local evaluation before and after training (on by default in the rounds it evaluates) is
turned off in every round, the first included: Dandelion's workers and Flower's clients do not
evaluate either.

Prints (time.time() throughout) ``{"start": t}`` just before
``algorithm.run`` (torch and pfl imported, the table loaded), one JSON line per closed round,
``{"round": r, "end": t}``, and then ``{"final_accuracy": a,
"model": PATH}`` with the final model's held-out accuracy and the model as float32 values
(the table's feature order, then the bias) in ``PATH`` (``.npy``).

    python benchmarks/pfl_side.py TABLE.npz N ROUNDS LR EPOCHS BATCH CLIP MODEL_OUT.npy
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import numpy as np
import torch
from pfl.aggregate.simulate import SimulatedBackend
from pfl.aggregate.weighting import WeightByDatapoints
from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
from pfl.callback.base import TrainingProcessCallback
from pfl.data.dataset import Dataset
from pfl.data.federated_dataset import FederatedDataset
from pfl.data.sampling import get_user_sampler
from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
from pfl.metrics import Weighted
from pfl.model.pytorch import PyTorchModel
from pfl.privacy import NormClippingOnly


class SparseLogReg(torch.nn.Module):
    """Logistic regression over padded sparse rows: ``idx`` (B, k) int64 (-1: padding),
    ``val`` (B, k) float32 (0 at padding), ``y`` (B,) float32 in {0, 1}."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(num_features))
        self.b = torch.nn.Parameter(torch.zeros(()))

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        return (self.w[idx.clamp(min=0)] * val).sum(dim=1) + self.b

    def loss(self, idx: torch.Tensor, val: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.train()
        return torch.nn.functional.binary_cross_entropy_with_logits(self(idx, val), y)

    def metrics(
        self, idx: torch.Tensor, val: torch.Tensor, y: torch.Tensor, eval: bool = False
    ) -> dict[str, Any]:
        with torch.no_grad():
            z = self(idx, val)
            right = float(((z > 0).float() == y).sum())
        return {"accuracy": Weighted(right, len(y))}


class NoLocalEvaluation(FederatedAveraging):  # type: ignore[misc]
    """FedAvg with the users' local evaluation off in every round (pfl evaluates in round 1
    whatever ``evaluation_frequency`` says)."""

    def get_next_central_contexts(self, *args: Any, **kwargs: Any) -> Any:
        contexts, model, metrics = super().get_next_central_contexts(*args, **kwargs)
        if contexts is not None:
            contexts = tuple(dataclasses.replace(c, do_evaluation=False) for c in contexts)
        return contexts, model, metrics


class Marks(TrainingProcessCallback):  # type: ignore[misc]
    def after_central_iteration(
        self, aggregate_metrics: Any, model: Any, *, central_iteration: int
    ) -> Any:
        print(json.dumps({"round": central_iteration + 1, "end": time.time()}), flush=True)
        return False, aggregate_metrics.__class__()


def main() -> None:
    path, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    lr, epochs, batch, clip = (
        float(sys.argv[4]),
        int(sys.argv[5]),
        int(sys.argv[6]),
        float(sys.argv[7]),
    )
    model_out = sys.argv[8]
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    with np.load(path) as t:
        table = {k: t[k] for k in t.files}
    nf = int(table["num_features"])
    ptr = table["ptr"]
    indices = torch.from_numpy(table["indices"].astype(np.int64))
    values = torch.from_numpy(table["values"].astype(np.float32))
    labels = torch.from_numpy((table["labels"] == 1).astype(np.float32))
    draws: dict[int, int] = {}

    def make_dataset(user: int) -> Dataset:
        a, b = int(ptr[user]), int(ptr[user + 1])
        draws[user] = draws.get(user, 0) + 1
        order = torch.from_numpy(np.random.default_rng([user, draws[user]]).permutation(b - a) + a)
        return Dataset((indices[order], values[order], labels[order]), user_id=str(user))

    users = list(range(n))
    training = FederatedDataset(make_dataset, get_user_sampler("minimize_reuse", users))
    module = SparseLogReg(nf)
    model = PyTorchModel(
        model=module,
        local_optimizer_create=torch.optim.SGD,
        central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0),
    )
    backend = SimulatedBackend(
        training_data=training,
        val_data=None,
        postprocessors=[NormClippingOnly(2, clip), WeightByDatapoints()],
    )
    algorithm_params = NNAlgorithmParams(
        central_num_iterations=rounds,
        evaluation_frequency=rounds + 1,
        train_cohort_size=n,
        val_cohort_size=0,
    )
    train_params = NNTrainHyperParams(
        local_num_epochs=epochs, local_learning_rate=lr, local_batch_size=batch
    )
    print(json.dumps({"start": time.time()}), flush=True)
    NoLocalEvaluation().run(
        algorithm_params=algorithm_params,
        backend=backend,
        model=model,
        model_train_params=train_params,
        model_eval_params=NNEvalHyperParams(local_batch_size=None),
        callbacks=[Marks()],
        send_metrics_to_platform=False,
    )
    with torch.no_grad():
        params = torch.cat([module.w, module.b.reshape(1)]).numpy().astype(np.float32)
        z = module(
            torch.from_numpy(table["test_indices"].astype(np.int64)),
            torch.from_numpy(table["test_values"].astype(np.float32)),
        ).numpy()
    accuracy = float(np.mean((z > 0) == (table["test_labels"] == 1)))
    np.save(model_out, params)
    print(json.dumps({"final_accuracy": round(accuracy, 4), "model": model_out}), flush=True)


if __name__ == "__main__":
    main()
