"""Lay out a small directed acyclic graph in rows, top to bottom, for the lineage and run pages.

Each node goes into the row of its longest path from a source; nodes in a row are ordered by the
mean position of their parents (one barycentre pass), which keeps most edges short. The result
is plain numbers: the page draws the boxes and the curves as inline SVG, with no script and no
layout library (Graphviz is a system binary; nothing on PyPI lays out a 30-node DAG offline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NODE_WIDTH = 170
NODE_HEIGHT = 42
COLUMN_GAP = 16   # between nodes of one row
ROW_GAP = 26      # between rows
MARGIN = 10


# What a blessing artifact's node says: the Evaluator's ModelBlessing (accurate enough) and the
# InfraValidator's InfraBlessing (`serving start` loaded the model and answered eval examples).
BLESSING_WORDS = {"ModelBlessing": ("blessed", "not blessed"),
                  "InfraBlessing": ("infra-validated", "infra failed")}


def blessing_word(type_name: str, blessed: object) -> str:
    """' blessed' / ' not blessed' (or the InfraBlessing's words) for a blessing node, else ''."""
    words = BLESSING_WORDS.get(type_name)
    return "" if words is None else " " + words[0 if blessed else 1]


@dataclass
class Node:
    key: str            # unique: "a42" (artifact 42), "e7" (execution 7)
    title: str          # first line: the type or component
    subtitle: str       # second line: id, state, property
    href: str           # the page this node links to
    kind: str           # "artifact" | "execution" | "deployment" (CSS class)
    x: int = 0
    y: int = 0


@dataclass
class Edge:
    source: str
    target: str
    path: str = ""      # SVG path data, filled by ``layout``


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def add_node(self, node: Node) -> None:
        self.nodes.setdefault(node.key, node)

    def add_edge(self, source: str, target: str) -> None:
        if source in self.nodes and target in self.nodes and source != target and not any(
                e.source == source and e.target == target for e in self.edges):
            self.edges.append(Edge(source, target))


def _columns(graph: Graph) -> dict[str, int]:
    parents: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for edge in graph.edges:
        parents[edge.target].append(edge.source)
    column: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(key: str) -> int:
        if key in column:
            return column[key]
        if key in visiting:  # a cycle (never in MLMD lineage): cut it here
            return 0
        visiting.add(key)
        column[key] = max((depth(p) + 1 for p in parents[key]), default=0)
        visiting.discard(key)
        return column[key]

    for key in graph.nodes:
        depth(key)
    return column


def layout(graph: Graph) -> Graph:
    """Set every node's x/y, every edge's path and the drawing's size; returns ``graph``."""
    if not graph.nodes:
        return graph
    column = _columns(graph)
    parents: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for edge in graph.edges:
        parents[edge.target].append(edge.source)
    row: dict[str, float] = {}
    by_column: dict[int, list[str]] = {}
    for key in graph.nodes:  # insertion order is the callers' preferred order
        by_column.setdefault(column[key], []).append(key)
    for index in sorted(by_column):
        keys = by_column[index]
        if index:
            keys.sort(key=lambda k: sum(row.get(p, 0.0) for p in parents[k]) / max(
                1, len(parents[k])))
        for position, key in enumerate(keys):
            row[key] = float(position)
    widest = max(len(keys) for keys in by_column.values())
    graph.width = MARGIN * 2 + widest * NODE_WIDTH + (widest - 1) * COLUMN_GAP
    graph.height = MARGIN * 2 + len(by_column) * NODE_HEIGHT + (len(by_column) - 1) * ROW_GAP
    for index, keys in by_column.items():
        offset = (graph.width - (len(keys) * NODE_WIDTH + (len(keys) - 1) * COLUMN_GAP)) // 2
        for position, key in enumerate(keys):
            node = graph.nodes[key]
            node.x = offset + position * (NODE_WIDTH + COLUMN_GAP)
            node.y = MARGIN + index * (NODE_HEIGHT + ROW_GAP)
    for edge in graph.edges:
        a, b = graph.nodes[edge.source], graph.nodes[edge.target]
        x1, y1 = a.x + NODE_WIDTH // 2, a.y + NODE_HEIGHT
        x2, y2 = b.x + NODE_WIDTH // 2, b.y
        bend = max(12, (y2 - y1) // 2)
        edge.path = f"M{x1},{y1} C{x1},{y1 + bend} {x2},{y2 - bend} {x2},{y2}"
    return graph
