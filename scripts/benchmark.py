"""Training/evaluation/input-pipeline speed and peak memory of the project's own path.

    python -m scripts.benchmark --model resnet --n 3 --batch_size 128 --steps 60

Builds the real model (`experiment.build_model`), the real augmenting
`tf.data` pipeline (`data.train_dataset`) and the real `compile`/`fit` path,
on random uint8 images by default (`--data_dir` for real ones). The first
`--warmup` steps are not counted. The last line holds every figure as
key=value pairs. Speed is measured here, never asserted in tests.
"""

import resource
import time

import numpy as np

from scripts import common  # defines the shared flags  # noqa: I001

import keras
from absl import flags

from resnet_keras import data, experiment, training

flags.DEFINE_integer("steps", 60, "Training steps timed, warm-up included.")
flags.DEFINE_integer("warmup", 10, "Steps not counted (tracing, allocator warm-up).")
flags.DEFINE_integer("eval_batch_size", 1000, "Batch size of the evaluation measurement.")
FLAGS = flags.FLAGS

DEFAULTS = dict(model="resnet", n=3, batch_size=128, opt="sgd", lr=0.1, seed=0, jit_compile=False)


class StepTimer(keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_end(self, logs=None):
        self.t1 = time.perf_counter()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def images(settings, count):
    if settings.get("data_dir"):
        ds = data.load_dataset(settings["dataset"], settings["data_dir"])
        idx = np.resize(np.arange(len(ds.x_train)), count)
        return ds.x_train[idx], ds.y_train[idx], ds.num_classes
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    return x, rng.integers(0, 10, (count, 1)).astype("uint8"), 10


def main(argv):
    s = common.resolve(dict(DEFAULTS, dataset="cifar10"),
                       ["model", "n", "batch_size", "opt", "lr", "seed", "jit_compile", "data_dir", "dataset"])  # fmt: skip
    if FLAGS.warmup >= FLAGS.steps:
        raise ValueError(f"--steps ({FLAGS.steps}) must exceed --warmup ({FLAGS.warmup})")
    keras.utils.set_random_seed(s["seed"])
    bs, steps = s["batch_size"], FLAGS.steps
    x, y, num_classes = images(s, bs * steps)
    config = experiment.TrainConfig(model=s["model"], n=s["n"], batch_size=bs, opt=s["opt"])
    config.validate()

    # Input pipeline alone: decode-free uint8 batches, augmentation, prefetch.
    ds = data.train_dataset(x, y, bs, seed=s["seed"])
    it = iter(ds)
    for _ in range(FLAGS.warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps - FLAGS.warmup):
        next(it)
    pipeline = (steps - FLAGS.warmup) * bs / (time.perf_counter() - t0)

    model = experiment.build_model(config, num_classes, x)
    training.compile_classifier(model, training.make_optimizer(s["opt"], s["lr"]),
                                jit_compile=s["jit_compile"])  # fmt: skip
    timer = StepTimer(FLAGS.warmup)
    model.fit(ds, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
    train = (steps - FLAGS.warmup) * bs / (timer.t1 - timer.t0)
    rss_train = peak_rss_mb()

    eb = FLAGS.eval_batch_size
    xe = np.resize(x, (max(eb * 4, eb),) + x.shape[1:])
    model.predict(xe[:eb], batch_size=eb, verbose=0)  # warm-up
    t0 = time.perf_counter()
    model.predict(xe, batch_size=eb, verbose=0)
    evaluation = len(xe) / (time.perf_counter() - t0)

    print(f"model={s['model']} n={s['n']} params={model.count_params()} batch={bs} "
          f"steps={steps} warmup={FLAGS.warmup} jit={s['jit_compile']}")  # fmt: skip
    print(f"train_img_per_s={train:.1f} eval_img_per_s={evaluation:.1f} "
          f"pipeline_img_per_s={pipeline:.1f} peak_rss_mb={rss_train:.0f}")


if __name__ == "__main__":
    common.run(main)
