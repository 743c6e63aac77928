"""Flower's half of ``benchmarks/secagg.py``: one SecAgg+ round in Flower's own virtual
environment.

Flower 1.41's real ``SecAggPlusWorkflow`` (inside its ``DefaultWorkflow``, FedAvg) and its real
``secaggplus_mod`` in Flower's simulation (``run_simulation``, Ray backend, one CPU per client:
two actors on two cores). Each of the n clients is a ``NumPyClient`` whose ``fit`` returns a
d-dimensional update made as Dandelion's benchmark makes its own (uniform in [-1, 1] / sqrt(d)
from ``default_rng([seed, i])``, i = 1 … n) with ``num_examples`` 1.

Parameters as Dandelion's: ``num_shares`` = k + 1 (Flower counts the client itself among the
holders of its shares; k neighbours), ``reconstruction_threshold`` = t, ``clipping_range`` = C
(the clip norm), ``quantization_range`` = 2·C·2^f (the same step, 2^-f, as Dandelion's fixed
point with f scale bits), ``modulus_range`` 2^32, ``max_weight`` 1 (so that the weight factor
does not scale the update before quantization).

Dropouts: the chosen clients (``dropout`` of n, drawn from ``random.Random(seed)``) answer the
collect-masked-vectors stage with an error reply from a client mod placed before
``secaggplus_mod``: they advertised their keys and shared them, and never send a masked vector,
the moment at which Dandelion's benchmark drops its own.

Measured:

- per client, the time inside ``secaggplus_mod`` (a timing mod around it, summed over the four
  stages, minus the time inside the client's own ``fit``, timed by a mod below it);
- per client, the bytes of what it receives and sends: the protobuf size of each message's
  content (``RecordDict``, the metadata left out), with the model download inside the
  collect-masked-vectors instruction counted apart;
- the server's time inside the workflow's four stage functions minus the time they spend in
  ``grid.send_and_receive`` (waiting for clients, and the simulation's own message passing),
  and minus the strategy's ``configure_fit`` and ``aggregate_fit`` (reported apart: FedAvg
  averages n copies of the already aggregated vector, Flower's backward compatibility);
- the start-up (Ray, its actors, the first message to every node) apart from the round.

Prints JSON lines on stdout: ``{"startup": …}`` once every node has answered a first
get-properties message, ``{"round": …}`` after the round, and ``{"summary": …}`` at the end.

    python benchmarks/flower_secagg_side.py N D K T SCALE_BITS CLIP DROPOUT SEED OUT_DIR LAUNCHED
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _update(seed: int, i: int, d: int) -> np.ndarray:
    values = np.random.default_rng([seed, i]).uniform(-1, 1, d) / d**0.5
    return values.astype(np.float32)


def _emit(kind: str, payload: dict[str, Any]) -> None:
    print(json.dumps({kind: payload}), flush=True)


def main() -> None:
    from flwr.app import Error, Message
    from flwr.app.message_type import MessageType
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.common import (
        GetPropertiesIns,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )
    from flwr.common.constant import ErrorCode, MessageTypeLegacy
    from flwr.common.secure_aggregation.secaggplus_constants import (
        RECORD_KEY_CONFIGS,
        Key,
        Stage,
    )
    from flwr.common.serde import array_record_to_proto, recorddict_to_proto
    from flwr.compat.common.recorddict_compat import getpropertiesins_to_recorddict
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.simulation import run_simulation

    n, d, k, t, scale_bits = (int(a) for a in sys.argv[1:6])
    clip, dropout = float(sys.argv[6]), float(sys.argv[7])
    seed, out_dir, launched = int(sys.argv[8]), Path(sys.argv[9]), float(sys.argv[10])
    out_dir.mkdir(parents=True, exist_ok=True)
    dropped = set(random.Random(seed).sample(range(n), round(dropout * n)))
    quantization_range = int(2 * clip * 2**scale_bits)

    # --- client side (runs in the Ray actors; records go to one file per process) ----------

    fit_spent = [0.0, 0.0]  # wall, CPU

    def content_bytes(msg: Message) -> int:
        return 0 if msg.has_error() else recorddict_to_proto(msg.content).ByteSize()

    def timing_mod(msg: Message, ctxt: Any, call_next: Any) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        pid = int(ctxt.node_config["partition-id"])
        stage = str(msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])
        received = content_bytes(msg)  # before the mod pops the stage from the configs
        model = sum(
            array_record_to_proto(rec).ByteSize() for rec in msg.content.array_records.values()
        )
        fit_spent[:] = [0.0, 0.0]
        t0, c0 = time.perf_counter(), time.process_time()
        out = call_next(msg, ctxt)
        spent = time.perf_counter() - t0 - fit_spent[0]
        cpu = time.process_time() - c0 - fit_spent[1]
        line = {"pid": pid, "stage": stage, "s": spent, "cpu_s": cpu, "fit_s": fit_spent[0]}
        line |= {"received": received, "model": model, "sent": content_bytes(out)}
        line["error"] = out.has_error()
        with open(out_dir / f"clients-{os.getpid()}.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        return out

    def dropout_mod(msg: Message, ctxt: Any, call_next: Any) -> Message:
        if (
            msg.metadata.message_type == MessageType.TRAIN
            and int(ctxt.node_config["partition-id"]) in dropped
            and msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]
            == Stage.COLLECT_MASKED_VECTORS
        ):
            return Message(Error(ErrorCode.UNKNOWN, "dropped out"), reply_to=msg)
        return call_next(msg, ctxt)

    def fit_timer_mod(msg: Message, ctxt: Any, call_next: Any) -> Message:
        t0, c0 = time.perf_counter(), time.process_time()
        out = call_next(msg, ctxt)
        fit_spent[0] += time.perf_counter() - t0
        fit_spent[1] += time.process_time() - c0
        return out

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            return [_update(seed, self.pid + 1, d)], 1, {}

        def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
            return {}

    def client_fn(context: Any) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    client_app = ClientApp(
        client_fn=client_fn, mods=[timing_mod, dropout_mod, secaggplus_mod, fit_timer_mod]
    )

    # --- server side --------------------------------------------------------------------------

    # Each figure is a pair: wall time (perf_counter) and the process's CPU time (process_time,
    # which also counts the threads Flower's Shamir code starts).
    server: dict[str, Any] = {"stages": {}, "waits": {}, "excluded": {}}

    def clock() -> np.ndarray:
        return np.array([time.perf_counter(), time.process_time()])

    class TimedGrid:
        """The grid, with the time spent in ``send_and_receive`` counted."""

        def __init__(self, grid: Any) -> None:
            self._grid, self.waited = grid, np.zeros(2)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._grid, name)

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
            t0 = clock()
            out = list(self._grid.send_and_receive(messages, timeout=timeout))
            self.waited += clock() - t0
            return out

    def excluded() -> np.ndarray:
        return sum(server["excluded"].values(), np.zeros(2))

    class TimedSecAggPlus(SecAggPlusWorkflow):  # type: ignore[misc]
        def _timed(self, name: str, stage: Any, grid: Any, context: Any, state: Any) -> bool:
            timed = TimedGrid(grid)
            before = excluded()
            t0 = clock()
            ok = bool(stage(timed, context, state))
            spent = clock() - t0 - timed.waited - (excluded() - before)
            server["stages"][name], server["waits"][name] = spent, timed.waited
            return ok

        def setup_stage(self, grid: Any, context: Any, state: Any) -> bool:
            server["round_start"] = time.time()
            return self._timed("setup", super().setup_stage, grid, context, state)

        def share_keys_stage(self, grid: Any, context: Any, state: Any) -> bool:
            return self._timed("share_keys", super().share_keys_stage, grid, context, state)

        def collect_masked_vectors_stage(self, grid: Any, context: Any, state: Any) -> bool:
            stage = super().collect_masked_vectors_stage
            return self._timed("collect_masked_vectors", stage, grid, context, state)

        def unmask_stage(self, grid: Any, context: Any, state: Any) -> bool:
            ok = self._timed("unmask", super().unmask_stage, grid, context, state)
            server["round_end"] = time.time()
            return ok

    class TimedFedAvg(FedAvg):  # type: ignore[misc]
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            t0 = clock()
            out = super().configure_fit(server_round, parameters, client_manager)
            server["excluded"]["configure_fit"] = clock() - t0
            return out

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            t0 = clock()
            out = super().aggregate_fit(server_round, results, failures)
            server["excluded"]["aggregate_fit"] = clock() - t0
            server["results"], server["failures"] = len(results), len(failures)
            t0 = clock()
            if results:  # every result carries the unmasked mean: check it against the plain one
                got = parameters_to_ndarrays(results[0][1].parameters)[0].astype(np.float64)
                want = np.zeros(d)
                for pid in range(n):
                    if pid not in dropped:
                        want += _update(seed, pid + 1, d)
                want /= n - len(dropped)
                server["max_abs_error"] = float(np.max(np.abs(got - want)))
            server["excluded"]["check"] = clock() - t0
            return out

    app = ServerApp()

    @app.main()  # type: ignore[misc]
    def _main(grid: Any, context: Any) -> None:
        entered = time.time()
        nodes = list(grid.get_node_ids())
        while len(nodes) < n:
            time.sleep(0.1)
            nodes = list(grid.get_node_ids())
        warm = getpropertiesins_to_recorddict(GetPropertiesIns({}))
        msgs = [
            Message(content=warm, dst_node_id=nid, message_type=MessageTypeLegacy.GET_PROPERTIES)
            for nid in nodes
        ]
        replies = list(grid.send_and_receive(msgs))
        ready = time.time()
        _emit(
            "startup",
            {
                "launch_to_ready_s": ready - launched,
                "serverapp_to_ready_s": ready - entered,
                "warm_replies": sum(not m.has_error() for m in replies),
            },
        )
        strategy = TimedFedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=n,
            min_available_clients=n,
            initial_parameters=ndarrays_to_parameters([np.zeros(d, dtype=np.float32)]),
        )
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=1), strategy=strategy
        )
        workflow = TimedSecAggPlus(
            num_shares=k + 1,
            reconstruction_threshold=t,
            max_weight=1.0,
            clipping_range=clip,
            quantization_range=quantization_range,
            modulus_range=2**32,
        )
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)

        def wall(pairs: dict[str, np.ndarray]) -> dict[str, float]:
            return {name: float(pair[0]) for name, pair in pairs.items()}

        def cpu(pairs: dict[str, np.ndarray]) -> dict[str, float]:
            return {name: float(pair[1]) for name, pair in pairs.items()}

        stages = server["stages"]
        _emit(
            "round",
            {
                "wall_s": server.get("round_end", 0.0) - server.get("round_start", 0.0),
                "server_s": sum(wall(stages).values()),
                "server_cpu_s": sum(cpu(stages).values()),
                "stages_s": wall(stages),
                "stages_cpu_s": cpu(stages),
                "waits_s": wall(server["waits"]),
                "excluded_s": wall(server["excluded"]),
                "results": server.get("results"),
                "failures": server.get("failures"),
                "max_abs_error": server.get("max_abs_error"),
            },
        )

    run_simulation(
        server_app=app,
        client_app=client_app,
        num_supernodes=n,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )

    per_client: dict[int, dict[str, float]] = {}
    for path in out_dir.glob("clients-*.jsonl"):
        for raw in path.read_text().splitlines():
            rec = json.loads(raw)
            keys = ("s", "cpu_s", "rx", "tx", "model")
            c = per_client.setdefault(rec["pid"], dict.fromkeys(keys, 0.0))
            c["s"] += rec["s"]
            c["cpu_s"] += rec["cpu_s"]
            c["rx"] += rec["received"]
            c["tx"] += rec["sent"]
            c["model"] += rec["model"]
    survivors = [c for pid, c in per_client.items() if pid not in dropped]
    if not survivors:
        _emit("summary", {"error": "no client records"})
        return
    times = [c["s"] for c in survivors]
    _emit(
        "summary",
        {
            "n": n,
            "d": d,
            "num_shares": k + 1,
            "threshold": t,
            "quantization_range": quantization_range,
            "dropped": len(dropped),
            "clients_recorded": len(per_client),
            "client_s": statistics.median(times),
            "client_s_max": max(times),
            "client_s_q1_q3": statistics.quantiles(times, n=4)[::2] if len(times) > 1 else times,
            "client_cpu_s": statistics.median(c["cpu_s"] for c in survivors),
            "client_received_bytes": statistics.median(c["rx"] for c in survivors),
            "client_model_bytes": statistics.median(c["model"] for c in survivors),
            "client_sent_bytes": statistics.median(c["tx"] for c in survivors),
        },
    )


if __name__ == "__main__":
    main()
