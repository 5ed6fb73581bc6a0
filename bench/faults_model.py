"""Model faults while the stack runs (case 3 of bench/faults.py).

``ramp up --robot sim`` serves a copy of the demo pair from a temporary model folder. One fault
at a time is put on disk and the node is told to reload (``/<node>/reload``, std_srvs/Trigger),
then the good files are put back and reloaded:

- truncated ONNX (half the file; the card's sha256 updated to match, so the parser sees it),
- sha256 mismatch (one byte of the ONNX changed, the card as it was),
- an ONNX whose output shape differs from the card's (card sha256 updated),
- an ONNX with the card's interface that outputs NaN (card sha256 updated; it loads: the
  reload's probe inference refuses it, ramp_models.hot_swap.check_probe_inference).

Figures: refused (and the message), the node's pid unchanged (no crash), chunks still flowing
from the old model after a refusal, commands within limits and no jump, and the stack serving
again after the good pair is restored.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def nan_policy(path: Path, chunk_shape: tuple[int, ...] = (1, 20, 7)) -> None:
    """An ONNX with the demo policy's inputs (batch axis dynamic, as our exports write it) whose
    action chunk is all NaN: NaN * sum(wm_state), broadcast to (batch, H, joints)."""
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor(
        "nan", TensorProto.FLOAT, chunk_shape, [float("nan")] * int(np.prod(chunk_shape))
    )
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    nodes = [
        helper.make_node("Constant", [], ["nan_chunk"], value=value),
        helper.make_node("Constant", [], ["axes"], value=axes),
        helper.make_node("ReduceSum", ["wm_state", "axes"], ["wm_sum"], keepdims=1),
        helper.make_node("Mul", ["wm_sum", "nan_chunk"], ["action_chunk"]),
    ]
    out_shape = ["batch", *chunk_shape[1:]]
    graph = helper.make_graph(
        nodes,
        "nan_policy",
        [
            helper.make_tensor_value_info("wm_state", TensorProto.FLOAT, ["batch", 8, 32]),
            helper.make_tensor_value_info("joint_state", TensorProto.FLOAT, ["batch", 7]),
        ],
        [helper.make_tensor_value_info("action_chunk", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def set_sha(card_path: Path) -> None:
    """Write the sha256 of the card's ONNX file into the card."""
    card = yaml.safe_load(card_path.read_text())
    onnx_path = card_path.parent / card["onnx_file"]
    card["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))


def faults(model_dir: Path) -> dict[str, tuple[str, object]]:
    """Fault name -> (node, function that breaks the files in ``model_dir``)."""
    policy_card = model_dir / "policy.yaml"
    wm_card = model_dir / "world_model.yaml"

    def truncate(card: Path):
        def apply() -> None:
            onnx_path = card.parent / yaml.safe_load(card.read_text())["onnx_file"]
            data = onnx_path.read_bytes()
            onnx_path.write_bytes(data[: len(data) // 2])
            set_sha(card)

        return apply

    def flip_byte(card: Path):
        def apply() -> None:
            onnx_path = card.parent / yaml.safe_load(card.read_text())["onnx_file"]
            data = bytearray(onnx_path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            onnx_path.write_bytes(bytes(data))

        return apply

    def wrong_shape() -> None:
        nan_policy(model_dir / "policy.onnx", (1, 10, 7))
        set_sha(policy_card)

    def nan_output() -> None:
        nan_policy(model_dir / "policy.onnx")
        set_sha(policy_card)

    return {
        "truncated ONNX (world model)": ("worldmodel_node", truncate(wm_card)),
        "truncated ONNX (policy)": ("policy_node", truncate(policy_card)),
        "sha256 mismatch (world model)": ("worldmodel_node", flip_byte(wm_card)),
        "sha256 mismatch (policy)": ("policy_node", flip_byte(policy_card)),
        "output shape != card (policy)": ("policy_node", wrong_shape),
        "NaN outputs (policy)": ("policy_node", nan_output),
    }


def reload(stack, node: str) -> tuple[bool | None, str]:
    from std_srvs.srv import Trigger

    name = f"reload_{node}"
    if name not in stack.clients:
        stack.clients[name] = stack.probe.create_client(Trigger, f"/{node}/reload")
    response = stack.call(name, Trigger.Request(), timeout_s=30.0)
    if response is None:
        return None, "no answer"
    return bool(response.success), str(response.message)


def model_fault(stack, name: str, node: str, apply, good: Path, model_dir: Path) -> dict:
    """Break, reload, watch 3 s, restore, reload, watch; the figures."""
    from ramp_bringup.core.faults import step_figures, within_limits

    pids = stack.node_pids()
    apply()
    t0 = time.time()
    ok, message = reload(stack, node)
    t_reload = time.time()
    time.sleep(3.0)
    t1 = time.time()
    chunks_during = stack.count("ramp/action_chunk", t_reload + 0.5)
    # under load the demo pair makes a few chunks a second at best: a refused reload must leave
    # the old model serving, so wait up to 10 s more for its next chunk before restoring
    deadline = time.time() + 10.0
    while stack.count("ramp/action_chunk", t_reload + 0.5) == 0 and time.time() < deadline:
        time.sleep(0.1)
    served_after = stack.count("ramp/action_chunk", t_reload + 0.5) > 0
    figures = stack.figures(t0, t_reload, t1)
    for f in good.iterdir():
        shutil.copy2(f, model_dir / f.name)
    restored, restore_message = reload(stack, node)
    t_back = stack.wait_flowing(time.time(), 30.0)
    with stack.lock:
        _, stamp, pos, _ = stack.streams["ramp/sent_command"].window(t0, time.time())
    steps = step_figures(stamp, pos, stack.limits["max_velocity"])
    after = stack.node_pids()
    return {
        "fault": name,
        "node": node,
        "reload_accepted": ok,
        "message": message,
        "crashed": [k for k, pid in pids.items() if after.get(k) != pid],
        "chunks_3s_after": chunks_during,
        "served_within_13s": served_after,
        "motion_hold_s": figures["motion_hold_s"],
        "sent_outside_limits": within_limits(
            pos, stack.limits["position_lower"], stack.limits["position_upper"]
        ),
        "sent_jumps": steps.jumps,
        "restored": bool(restored),
        "restore_message": restore_message,
        "serving_again": t_back is not None,
    }


def model_campaign(workdir: Path, log, dds: str = "udp"):
    """Rows for bench/faults.py's table, and every fault's figures."""
    from tests.faultkit import SimStack
    from tests.rosutil import probe_node

    workdir.mkdir(parents=True)
    good = workdir / "good"
    shutil.copytree(ROOT / "models" / "demo", good)
    model_dir = workdir / "models" / "demo"
    shutil.copytree(good, model_dir)
    results = []
    with probe_node("model_fault_probe") as probe:
        stack = SimStack(probe, workdir, ("--model-dir", str(workdir / "models")), dds)
        try:
            if stack.wait_flowing(time.time(), 120.0) is None:
                raise RuntimeError(f"the stack never flowed; see {workdir}/ramp_up.err")
            for name, (node, apply) in faults(model_dir).items():
                result = model_fault(stack, name, node, apply, good, model_dir)
                log(f"model fault {name}: {result}")
                results.append(result)
        finally:
            stack.stop()
    rows = []
    for r in results:
        refused = r["reload_accepted"] is False
        serving = r["served_within_13s"]
        safe = not r["crashed"] and r["sent_outside_limits"] == 0 and r["sent_jumps"] == 0
        # every fault, NaN outputs included (the reload's probe inference), is refused
        outcome = (
            f"refused {refused}, old model served {serving} ({r['chunks_3s_after']} chunks in "
            "the first 3 s)"
        )
        met = safe and refused and serving
        rows.append(
            (
                f"model: {r['fault']}",
                f"{outcome}; crashed {len(r['crashed'])}, unsafe {r['sent_outside_limits']}, "
                f"jumps {r['sent_jumps']}; restored+serving {r['restored'] and r['serving_again']}",
                "refused, old model serves, no crash",
                met and r["restored"] and r["serving_again"],
            )
        )
    return rows, results
