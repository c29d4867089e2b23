"""Small graphs that tests build by hand."""

import numpy as np

from snnc import ir


def chain(*nodes, dt=1e-3):
    """A graph of (name, op) pairs connected in order."""
    graph = ir.Graph(dt=dt)
    for name, op in nodes:
        graph.add(name, op)
    for (a, _), (b, _) in zip(nodes, nodes[1:]):
        graph.connect(a, b)
    return graph


def lif(v_decay=0.9, v_gain=1.0, bias=0.0, v_threshold=1.0, v_reset=0.0, reset="value", shape=()):
    full = lambda value: np.full(shape, value, dtype=np.float64)  # noqa: E731
    return ir.LIF(v_decay=full(v_decay), v_gain=full(v_gain), bias=full(bias), v_threshold=full(v_threshold),
                  v_reset=full(v_reset), reset=reset)


def cuba_chain():
    """Input -> identity synapses -> 2 CubaLIF neurons (i_decay 0.75, v_decay 0.9) -> Output."""
    return chain(("in", ir.Input(shape=(2,))), ("fc", ir.Affine(weight=np.eye(2))),
                 ("n", ir.CubaLIF(i_decay=np.array(0.75), i_gain=np.array(1.0), v_decay=np.array(0.9),
                                  v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(1.0),
                                  v_reset=np.array(0.0))), ("out", ir.Output()))


def recurrent_mlp(rng, n_in=5, n_hidden=7, n_out=3):
    """Input -> Affine -> CubaLIF (with recurrent Affine) -> Affine -> LIF -> Output."""
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(n_in,)))
    graph.add("fc1", ir.Affine(weight=rng.normal(0, 1, (n_hidden, n_in)), bias=rng.normal(0, 0.1, n_hidden)))
    graph.add("hidden", ir.CubaLIF(i_decay=rng.uniform(0.3, 0.9, n_hidden), i_gain=np.ones(n_hidden),
                                   v_decay=rng.uniform(0.5, 0.95, n_hidden), v_gain=np.ones(n_hidden),
                                   bias=np.zeros(n_hidden), v_threshold=np.ones(n_hidden),
                                   v_reset=np.zeros(n_hidden), reset="subtract"))
    graph.add("rec", ir.Affine(weight=rng.normal(0, 0.5, (n_hidden, n_hidden))))
    graph.add("fc2", ir.Affine(weight=rng.normal(0, 1, (n_out, n_hidden)), delay=rng.integers(0, 4, (n_out, n_hidden))))
    graph.add("out_lif", lif(shape=(n_out,)))
    graph.add("out", ir.Output())
    for edge in [("in", "fc1"), ("fc1", "hidden"), ("hidden", "rec"), ("rec", "hidden"), ("hidden", "fc2"),
                 ("fc2", "out_lif"), ("out_lif", "out")]:
        graph.connect(*edge)
    return graph


def conv_net(rng):
    """Conv2d (strided, padded, dilated), depthwise Conv2d, pooling, flatten, a residual Add, Affine."""
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(2, 9, 9)))
    graph.add("conv", ir.Conv2d(weight=rng.normal(0, 1, (4, 2, 3, 3)), bias=rng.normal(0, 0.1, 4),
                                stride=(1, 1), padding=(2, 2), dilation=(2, 2)))
    graph.add("if1", ir.IF(v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(1.0), v_reset=np.array(0.0)))
    graph.add("depthwise", ir.Conv2d(weight=rng.normal(0, 1, (4, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=4))
    graph.add("skip", ir.Scale(scale=np.full((4, 9, 9), 0.5)))
    graph.add("join", ir.Add())
    graph.add("lif1", lif(v_decay=0.8, shape=(4, 9, 9)))
    graph.add("sum", ir.SumPool2d(kernel_size=2, stride=2))
    graph.add("avg", ir.AvgPool2d(kernel_size=3, stride=1, padding=1))
    graph.add("max", ir.MaxPool2d(kernel_size=2, stride=1))
    graph.add("flat", ir.Flatten(start_dim=0, end_dim=-1))
    graph.add("fc", ir.Affine(weight=rng.normal(0, 0.5, (6, 36)), bias=np.zeros(6)))
    graph.add("li", ir.LI(v_decay=np.array(0.9), v_gain=np.array(0.1), bias=np.array(0.0)))
    graph.add("out", ir.Output())
    for edge in [("in", "conv"), ("conv", "if1"), ("if1", "depthwise"), ("if1", "skip"), ("depthwise", "join"),
                 ("skip", "join"), ("join", "lif1"), ("lif1", "sum"), ("sum", "avg"), ("avg", "max"),
                 ("max", "flat"), ("flat", "fc"), ("fc", "li"), ("li", "out")]:
        graph.connect(*edge)
    return graph


def spikes(rng, shape, rate=0.3):
    return (rng.random(shape) < rate).astype(np.float64)


def random_network(rng, delays=True):
    """A random two-layer network with a recurrent layer: Input -> (LIF | IF | CubaLIF) with recurrence
    -> CubaLIF or LIF -> Output, with random sizes, decays, thresholds, biases and per-synapse delays."""
    n_in, n_hidden, n_out = (int(v) for v in rng.integers(3, 40, size=3))
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(n_in,)))
    delay = (lambda shape: rng.integers(0, 6, size=shape)) if delays else (lambda shape: None)
    graph.add("fc1", ir.Affine(weight=rng.normal(0, 1, (n_hidden, n_in)), bias=rng.normal(0, 0.05, n_hidden),
                               delay=delay((n_hidden, n_in))))
    kind = rng.integers(3)
    common = dict(bias=rng.normal(0, 0.02, n_hidden), v_threshold=rng.uniform(0.5, 2.0, n_hidden),
                  v_reset=np.zeros(n_hidden))
    if kind == 0:
        hidden = ir.LIF(v_decay=np.array(rng.uniform(0.5, 0.99)), v_gain=np.array(1.0), **common)
    elif kind == 1:
        hidden = ir.IF(v_gain=np.array(rng.uniform(0.5, 1.5)), **common)
    else:
        hidden = ir.CubaLIF(i_decay=np.array(rng.uniform(0.2, 0.9)), i_gain=np.array(1.0),
                            v_decay=np.array(rng.uniform(0.5, 0.99)), v_gain=np.array(1.0), **common)
    graph.add("hidden", hidden)
    graph.add("rec", ir.Affine(weight=rng.normal(0, 0.3, (n_hidden, n_hidden))))
    graph.add("fc2", ir.Affine(weight=rng.normal(0, 1, (n_out, n_hidden)), delay=delay((n_out, n_hidden))))
    graph.add("readout", ir.CubaLIF(i_decay=np.array(0.5), i_gain=np.array(1.0), v_decay=np.array(0.9),
                                    v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(1.0),
                                    v_reset=np.array(0.0)))
    graph.add("out", ir.Output())
    for edge in [("in", "fc1"), ("fc1", "hidden"), ("hidden", "rec"), ("rec", "hidden"), ("hidden", "fc2"),
                 ("fc2", "readout"), ("readout", "out")]:
        graph.connect(*edge)
    return graph


def mlp(rng, sizes=(40, 30, 20, 10)):
    """A dense feed-forward LIF network."""
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(sizes[0],)))
    previous = "in"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        graph.add(f"fc{i}", ir.Affine(weight=rng.normal(0, 1.5 / np.sqrt(n_in), (n_out, n_in)), bias=np.zeros(n_out)))
        graph.add(f"lif{i}", lif(v_decay=0.9, v_threshold=0.5, shape=(n_out,)))
        graph.connect(previous, f"fc{i}")
        graph.connect(f"fc{i}", f"lif{i}")
        previous = f"lif{i}"
    graph.add("out", ir.Output())
    graph.connect(previous, "out")
    return graph


#: Node names holding quotes, newlines and Python code, for checking that generated programs keep
#: names inert: each node of ``hostile_mlp`` is renamed to one of these, and the graph to
#: HOSTILE_GRAPH_NAME, which would end the docstring at the top of a program.
HOSTILE_NAMES = {"in": "in'); open('PWNED_QUOTE', 'w'); ('",
                 "fc0": '"""\nimport os; os.system("touch PWNED_DOCSTRING")\n"""',
                 "lif0": "lif0\nopen('PWNED_NEWLINE', 'w')\n",
                 "lif1": "lif1 # {params}\\\nopen('PWNED_CONTINUATION', 'w')"}
HOSTILE_GRAPH_NAME = 'mlp"""; open("PWNED_GRAPH_NAME", "w"); """'



def delayed_mlp():
    """A 6-5-4 MLP whose first synapse group (fc0) has per-synapse delays of 0 to 2 steps."""
    graph = mlp(np.random.default_rng(6), sizes=(6, 5, 4))
    graph["fc0"].op.delay = np.random.default_rng(7).integers(0, 3, size=(5, 6))
    return graph

def hostile_mlp(rng):
    """A 6-5-4 MLP whose nodes are named by HOSTILE_NAMES, and the graph by HOSTILE_GRAPH_NAME."""
    graph = mlp(rng, sizes=(6, 5, 4))
    renamed = ir.Graph(dt=graph.dt, name=HOSTILE_GRAPH_NAME)
    for node in graph:
        renamed.add(HOSTILE_NAMES.get(node.name, node.name), node.op)
    for source, target in graph.edges:
        renamed.connect(HOSTILE_NAMES.get(source, source), HOSTILE_NAMES.get(target, target))
    return renamed
