"""The plain PyTorch peer of an IMP round: ``python -m benchmarks.torch_peer --model=resnet20``.

What a researcher would write by hand in PyTorch (open_lth's way): the same CIFAR ResNet-20 (or
lenet300_100), SGD with momentum 0.9 and weight decay 1e-4 (Adam for lenet), batches of random
Fashion-MNIST-shaped examples already in memory, about 90% of the weights pruned by a fixed
mask, and the weights re-masked after every optimizer step. Prints the marginal time per
iteration (from runs of ``--short`` and ``--long`` iterations, so start-up cancels out) and
images per second, to compare with ``benchmarks.imp_throughput`` run beside it on one machine.

Needs PyTorch (CPU wheel: ``pip install torch --index-url https://download.pytorch.org/whl/cpu``);
it is not a dependency of lth_tf.
"""

from __future__ import annotations

import statistics
import sys
import time

try:
    from absl import app, flags
except ImportError:  # run by imp_throughput --torch_python in a Python of the user's
    sys.exit("error: benchmarks.torch_peer needs absl-py and torch: pip install absl-py torch")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet20", "resnet20 or lenet300_100.")
flags.DEFINE_integer("batch_size", 128, "Batch size (resnet20's paper value).")
flags.DEFINE_integer("short", 20, "Iterations of the short timed run.")
flags.DEFINE_integer("long", 120, "Iterations of the long timed run.")
flags.DEFINE_integer("repeats", 3, "Timed pairs of runs; the median is reported.")
flags.DEFINE_float("remaining", 0.1, "Fraction of the prunable weights kept by the mask.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: PyTorch's default).")
flags.DEFINE_enum(
    "mixed_precision",
    None,
    ["float16", "bfloat16"],
    "Compute the forward pass under torch.autocast in this type (weights stay float32), as "
    "benchmarks.imp_throughput --mixed_precision does on its side. Default: float32.",
)
flags.DEFINE_bool(
    "serve",
    False,
    "After the warm-up print 'ready', then for each line N read from stdin train N iterations "
    "and print their seconds (benchmarks.imp_throughput --torch_python interleaves its runs so).",
)


def resnet20(torch, in_channels: int, classes: int):
    """He et al.'s CIFAR ResNet-20 as lth_tf.models.resnet builds it (1x1 conv shortcuts)."""
    nn = torch.nn

    def conv_bn(cin, cout, kernel, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
        )

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.conv2 = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1)
            self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

        def forward(self, x):
            y = self.conv2(torch.relu(self.conv1(x)))
            return torch.relu(y + (x if self.shortcut is None else self.shortcut(x)))

    layers, cin = [conv_bn(in_channels, 16, 3, 1), nn.ReLU()], 16
    for stage, cout in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(Block(cin, cout, 2 if stage and not block else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def lenet300_100(torch, inputs: int, classes: int):
    nn = torch.nn
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(inputs, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, classes),
    )


def main(argv: list[str]) -> None:
    try:
        import torch
    except ImportError:
        sys.exit("error: PyTorch is not installed; pip install torch (the CPU wheel will do)")
    if FLAGS.model not in ("resnet20", "lenet300_100"):
        sys.exit(f"error: --model: {FLAGS.model!r} is not resnet20 or lenet300_100")
    if FLAGS.threads:
        torch.set_num_threads(FLAGS.threads)
    torch.manual_seed(0)
    batch = FLAGS.batch_size
    if FLAGS.model == "resnet20":
        model = resnet20(torch, 1, 10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    else:
        model = lenet300_100(torch, 784, 10)
        optimizer = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    # Conv and linear weights (not biases, not batch norm): what IMP prunes.
    prunable = [p for name, p in model.named_parameters() if p.dim() > 1]
    masks = [(torch.rand_like(p) < FLAGS.remaining).float() for p in prunable]
    with torch.no_grad():
        for p, m in zip(prunable, masks, strict=True):
            p.mul_(m)
    # 60 batches in memory, cycled: Fashion-MNIST's shape, pixels scaled as lth_tf's model does.
    images = torch.randint(0, 256, (60, batch, 1, 28, 28)).float() / 255
    labels = torch.randint(0, 10, (60, batch))
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    # torch.autocast with enabled=False is float32 as if it were not there.
    precision = getattr(torch, FLAGS.mixed_precision or "bfloat16")
    autocast = dict(device_type="cpu", dtype=precision, enabled=bool(FLAGS.mixed_precision))

    def run(iterations: int) -> float:
        began = time.perf_counter()
        for i in range(iterations):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(**autocast):
                loss = loss_fn(model(images[i % 60]), labels[i % 60])
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for p, m in zip(prunable, masks, strict=True):
                    p.mul_(m)
        return time.perf_counter() - began

    run(10)  # warm-up
    if FLAGS.serve:
        print("ready", flush=True)
        for line in sys.stdin:
            print(run(int(line)), flush=True)
        return
    marginal = []
    for _ in range(FLAGS.repeats):
        short, long = run(FLAGS.short), run(FLAGS.long)
        marginal.append((long - short) / (FLAGS.long - FLAGS.short))
    per_iteration = statistics.median(marginal)
    print(
        f"torch {torch.__version__} {FLAGS.model}, {FLAGS.mixed_precision or 'float32'}, "
        f"batch {batch}, {torch.get_num_threads()} "
        f"threads: {per_iteration:.4f} s/iteration (median of "
        f"{', '.join(f'{m:.4f}' for m in marginal)}), {batch / per_iteration:,.0f} images/s"
    )


if __name__ == "__main__":
    app.run(main)
