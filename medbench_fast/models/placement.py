"""Where onnxruntime placed each node of a session, and whether a GPU run may accept it.

onnxruntime reports the placement itself: ``InferenceSession.get_provider_graph_assignment_info()``
(with the session entry :data:`RECORD_ENTRY`), or, in versions without it, the
"Node(s) placed on [provider]" lines its session logger writes at verbose level
(:func:`parse_placement_log`). Both give :class:`Placement`: the nodes of the graph
onnxruntime runs (after its optimisations), per provider.

The CUDA provider places shape arithmetic on the CPU by design: nodes fed only by the
CPU-resident outputs of ``Shape``/``Size`` (and by initializers), such as the
``Shape -> Gather -> Unsqueeze -> Concat`` chains of every transformer export, run faster
there than a device round trip. A strict GPU run accepts exactly those
(:func:`shape_nodes`: computed from tensor shapes and constants only) and refuses any other
node on the CPU, which is tensor compute (Conv, MatMul, Gemm, attention, Resize of scores,
...), naming it (:func:`refused`).

:func:`expected_cuda_placement` replays onnxruntime's own rule for choosing those CPU nodes
(``GetCpuPreferredNodes``) on a graph, for tools and tests on machines without a GPU.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

CPU = "CPUExecutionProvider"
RECORD_ENTRY = "session.record_ep_graph_assignment_info"
#: Operators whose output the CUDA provider keeps in host memory (the seeds of shape arithmetic).
SHAPE_OPS = ("Shape", "Size")
#: Inputs the CUDA kernels read from host memory (a host tensor there keeps the node on the GPU).
_CUDA_HOST_INPUTS = {"Reshape": (1,), "Expand": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "Tile": (1,),
                     "Slice": (1, 2, 3, 4), "Unsqueeze": (1,), "Squeeze": (1,), "Resize": (1, 2, 3),
                     "Upsample": (1,), "TopK": (1,), "Pad": (1, 2, 3), "Split": (1,), "ReduceSum": (1,),
                     "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,), "CumSum": (1,),
                     "Trilu": (1,), "OneHot": (1,)}


@dataclass
class Placement:
    """``nodes``: provider -> ``[(node name, op type)]``; ``source``: how onnxruntime reported it."""

    nodes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    source: str = "onnxruntime assignment info"
    counts_only: dict[str, int] = field(default_factory=dict)  # "All nodes placed on" lines: count, no list

    def summary(self) -> dict:
        """``{provider: {"nodes": n, "op_types": {op: count}}}`` as ``run.json`` records it."""
        out = {}
        for provider, nodes in self.nodes.items():
            out[provider] = {"nodes": len(nodes), "op_types": dict(sorted(Counter(op for _, op in nodes).items()))}
        for provider, count in self.counts_only.items():
            out.setdefault(provider, {"nodes": count, "op_types": None})
        return out

    def on(self, provider: str) -> list[tuple[str, str]]:
        return list(self.nodes.get(provider, []))


def read_assignment(session) -> Placement | None:
    """The placement onnxruntime recorded for ``session`` (created with :data:`RECORD_ENTRY`),
    or None where this onnxruntime has no such report."""
    getter = getattr(session, "get_provider_graph_assignment_info", None)
    if getter is None:
        return None
    try:
        subgraphs = getter()
    except Exception:  # not recorded (entry unknown to this version)
        return None
    placement = Placement()
    for sub in subgraphs:
        placement.nodes.setdefault(sub.ep_name, []).extend((n.name, n.op_type) for n in sub.get_nodes())
    return placement


_ALL = re.compile(r"All nodes placed on \[(\w+)\]\. Number of nodes: (\d+)")
_SOME = re.compile(r"Node\(s\) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE = re.compile(r"^\s*(?:\S+\s+\[V:onnxruntime:[^\]]*\]\s+)?\s+(\S+) \((.*)\)\s*$")


def parse_placement_log(text: str) -> Placement | None:
    """The placement in onnxruntime's verbose session log (``Node placements`` block), or None."""
    placement = Placement(source="onnxruntime node-placement log")
    current = None
    found = False
    for line in text.splitlines():
        m = _ALL.search(line)
        if m:
            placement.counts_only[m.group(1)] = int(m.group(2))
            current, found = None, True
            continue
        m = _SOME.search(line)
        if m:
            current, found = m.group(1), True
            placement.nodes.setdefault(current, [])
            continue
        m = _NODE.match(line.split("] ", 1)[-1] if "[V:onnxruntime" in line else line)
        if current is not None and m:
            placement.nodes[current].append((m.group(2), m.group(1)))
        elif current is not None and line.strip():
            current = None
    return placement if found else None


def _graph_nodes(model):
    """(node, its inputs, its outputs) of ``model``'s main graph in topological order (the fp16
    converter appends its input casts at the end of the node list)."""
    nodes = [(n, [i for i in n.input if i], list(n.output)) for n in model.graph.node]
    produced = {o: index for index, (_, _, outs) in enumerate(nodes) for o in outs}
    waiting = [sum(1 for i in set(ins) if i in produced) for _, ins, _ in nodes]
    users: dict[int, list[int]] = {}
    for index, (_, ins, _) in enumerate(nodes):
        for i in set(ins):
            if i in produced:
                users.setdefault(produced[i], []).append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    order = []
    while ready:
        index = ready.pop(0)
        order.append(index)
        for user in users.get(index, []):
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return [nodes[index] for index in order]


def shape_nodes(model) -> set[str]:
    """Names of the nodes of ``model`` (``onnx.ModelProto``) that compute on tensor shapes and
    constants only: ``Shape``/``Size`` and every node whose inputs are all outputs of such
    nodes, initializers or ``Constant`` outputs (and not all constants of a graph input)."""
    constant = {t.name for t in model.graph.initializer}
    derived: set[str] = set()
    names: set[str] = set()
    for node, inputs, outputs in _graph_nodes(model):
        if node.op_type == "Constant":
            constant.update(outputs)
            continue
        if node.op_type in SHAPE_OPS:
            ok = True
        else:
            ok = bool(inputs) and all(i in derived or i in constant for i in inputs) and any(i in derived for i in inputs)
        if ok:
            derived.update(outputs)
            names.add(node.name)
    return names


def refused(placement: Placement, model, gpu_provider: str) -> list[tuple[str, str]]:
    """The CPU nodes of ``placement`` a strict ``gpu_provider`` run refuses: everything on the
    CPU except shape arithmetic of ``model`` (the file the session loaded)."""
    shape = shape_nodes(model)
    return [(name, op) for name, op in placement.on(CPU) if not (name in shape or op in SHAPE_OPS)]


def describe_refused(nodes: list[tuple[str, str]], limit: int = 8) -> str:
    shown = ", ".join(f"{op} {name!r}" for name, op in nodes[:limit])
    more = f" and {len(nodes) - limit} more" if len(nodes) > limit else ""
    return f"{len(nodes)} node(s) that compute on tensors would run on the CPU: {shown}{more}"


def expected_cuda_placement(model, *, cpu_only: set[str] = frozenset()) -> Placement:
    """The placement onnxruntime's CUDA provider chooses for ``model``, replayed from its rule
    (``GetCpuPreferredNodes``): starting from the consumers of ``Shape``/``Size`` outputs
    (host memory), a node goes to the CPU when each input is a host tensor, an initializer
    or a graph input, and none is float16; its consumers are then considered in turn.
    ``cpu_only``: node names with no CUDA kernel (placed on the CPU regardless). Assumes
    every other node has a CUDA kernel and no input the kernel itself reads from the host."""
    nodes = _graph_nodes(model)
    constant = {t.name for t in model.graph.initializer}
    constant.update(o for n, _, outs in nodes if n.op_type == "Constant" for o in outs)
    graph_inputs = {v.name for v in model.graph.input}
    fp16 = {v.name for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]
            if v.type.tensor_type.elem_type == 10}
    consumers: dict[str, list[int]] = {}
    for index, (_, inputs, _) in enumerate(nodes):
        for name in inputs:
            consumers.setdefault(name, []).append(index)
    host: set[str] = set()
    candidates: set[int] = set()
    for node, _, outputs in nodes:
        if node.op_type in SHAPE_OPS:
            host.update(outputs)
            for name in outputs:
                candidates.update(consumers.get(name, []))
    on_cpu: set[int] = {i for i, (n, _, _) in enumerate(nodes) if n.name in cpu_only}
    seen: set[int] = set()
    while candidates:
        index = min(candidates)  # topological order, as onnxruntime's priority queue
        candidates.discard(index)
        if index in seen or index in on_cpu:
            continue
        seen.add(index)
        node, _, outputs = nodes[index]
        if node.op_type in ("Constant", *SHAPE_OPS):
            continue
        host_inputs = _CUDA_HOST_INPUTS.get(node.op_type, ())
        place = True
        for position, name in enumerate(node.input):
            if not name:
                continue
            if name in fp16:
                place = False
            elif name in constant or name in graph_inputs:
                continue
            elif name not in host or position in host_inputs:
                place = False
            if not place:
                break
        if place:
            on_cpu.add(index)
            host.update(outputs)
            for name in outputs:
                candidates.update(consumers.get(name, []))
    placement = Placement(source="replay of onnxruntime's CUDA placement rule")
    for index, (node, _, _) in enumerate(nodes):
        if node.op_type == "Constant":
            continue
        provider = CPU if index in on_cpu else "CUDAExecutionProvider"
        placement.nodes.setdefault(provider, []).append((node.name, node.op_type))
    return placement
