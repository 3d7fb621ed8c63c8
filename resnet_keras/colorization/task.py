"""The colorization runs: train, eval, apply and probe (`scripts/colorize.py`).

    python -m scripts.colorize train --model unet --color_space lab \
        --data_dir path/to/cifar10
    python -m scripts.colorize eval saved_models/colorizer_unet_lab.h5
    python -m scripts.colorize apply saved_models/colorizer_unet_lab.h5 photo.jpg --out colorized
    python -m scripts.colorize probe saved_models/colorizer_unet_lab.h5 --train_limit 10000

Under the output folder, `train` writes saved_models/colorizer_<model>_<space>.h5,
plots/colorization/<name>_eval.png and _examples.png, and runs/<run_name>/
(flags, log, history, metrics, the per-image test MSEs the plots are drawn
from); `eval` and `probe` merge their rows into results/colorization.md and
.json, keyed by model file name, so other models' rows stay.

A training run takes the steps every run takes (`run.lifecycle`; the fit is
`fit.fit_with_resume`, as for classifiers). Metrics
(`colorization.metrics.score_colorizer`) are means over test images of per-image
MSE, PSNR and SSIM of the sRGB image in [0, 1], for both colour spaces, so
their rows compare. The loss curves are in the model's own target space
(sRGB, or a*b* / 128).
"""

import dataclasses
import os

import keras
import numpy as np

from resnet_keras import files, stats
from resnet_keras.checks import DataError
from resnet_keras.colorization import color, models, probe, report
from resnet_keras.colorization import data as color_data
from resnet_keras.colorization import metrics as colorizer_metrics
from resnet_keras.data import image_folders
from resnet_keras.run import (
    distribute,
    fit,
    folders,
    lifecycle,
    optim,
    plots,
    provenance,
    publish,
    saving,
    tables,
)

EXAMPLES = 8  # test images in the examples figure (`example_indices`)


def example_indices(labels, n=EXAMPLES):
    """Indices of the examples figure's test images: the first test image of
    `n` classes spread over all of them (airplane, automobile, cat, deer, dog,
    frog, ship, truck for CIFAR-10), so one fixed figure shows varied scenes
    instead of the first n images (which can all be of one class)."""
    classes = np.unique(labels)
    picked = classes[np.round(np.linspace(0, len(classes) - 1, min(n, len(classes)))).astype(int)]
    first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(picked)]
    rest = [i for i in range(len(labels)) if i not in first]  # fewer classes than n
    return np.array(first + rest[: n - len(first)])


def load_data(config, image_size, classifier=False):
    """`lifecycle.prepare_data` with every split at `image_size` x `image_size`
    (`classifier`: for the linear probe, which needs two classes or more)."""
    ds, train, val, test = lifecycle.prepare_data(config, image_size, classifier)
    resize = lambda xy: (
        (color_data.resize_images(xy[0], image_size), xy[1]) if xy else xy
    )  # noqa: E731
    return ds, resize(train), resize(val), resize(test)


# --- train ------------------------------------------------------------------


def compile_colorizer(model, lr, jit_compile=False):
    """Adam (the original's optimizer) on the mean squared error."""
    model.compile(
        optimizer=optim.make_optimizer("adam", lr),
        # The loss object, not the "mse" string: an .h5 file records the string
        # as keras.metrics.mse, which plain load_model cannot deserialize
        # (Keras 3.15), so the file would only load with compile=False.
        loss=keras.losses.MeanSquaredError(),
        jit_compile=jit_compile,
    )
    return model


def train(config, log=print, retrain=False):
    """Trains one colorizer, tests it and writes its model, figures and run files.

    `retrain`: replace a finished run of the same name once this one has
    finished (without it, such a run is refused before any work).

    Returns:
        (model, metrics, paths): metrics holds the test means of the model
        and of the gray baseline; paths are the files written.
    """
    config.validate()
    done = lifecycle.finished_run(config, retrain, log=log)
    if done is not None:
        metrics = done[1]
        return None, metrics, [os.path.join(config.run_dir, n) for n in metrics.get("outputs", [])]
    strategy, run_dir = lifecycle.setup_run(config, retrain)
    with publish.discarded_on_failure(config, run_dir):
        return _train(config, strategy, run_dir, log)


def _train(config, strategy, run_dir, log):
    data = load_data(config, config.image_size)
    ds, (x, _), val, (xt, yt) = data
    size = config.image_size
    with lifecycle.model_scope(config, strategy):
        model = models.build_colorizer(config.model, (size, size, 1), config.color_space)
        compile_colorizer(model, config.lr, distribute.use_xla(config.jit_compile))
    lifecycle.start_run(
        config, strategy, data, run_dir, log, name=config.name, params=model.count_params()
    )
    history, train_time = fit.fit_with_resume(
        model,
        color_data.pairs_dataset(
            x, config.color_space, config.batch_size, shuffle=True, seed=config.seed
        ),
        color_data.pairs_dataset(val[0], config.color_space, 500) if val else None,
        run_dir,
        config.epochs,
        len(x),
        verbose=config.verbose,
        tensorboard=config.tensorboard,
        monitor="val_loss",
        mode="min",
        patience=config.patience,
        min_epochs=config.min_epochs,
        log=log,
    )
    result = colorizer_metrics.score_colorizer(model, xt, config.color_space, keep=0)
    metrics = {
        "test": colorizer_metrics.summarize(result["model"]),
        "gray_baseline": colorizer_metrics.summarize(result["gray"]),
        "epochs": len(history.get("loss", [])),
        "max_epochs": config.epochs,
        "best_epoch": fit.best_epoch(history, "val_loss", "min"),
        "train_time_s": train_time,
        "hardware": tables.hardware(),
    }
    per_image = _per_image(result)
    # A run named with --run_name names its files too.
    name = config.run_name or config.name
    title = figure_title(name, _data_name(config), metrics)
    extras = [("test_mse.json", lambda p: files.write_json(p, per_image))]
    extras += _figures(name, model, config.color_space, history, per_image, xt, yt, title)
    paths = publish.finish(
        config, run_dir, metrics, history, model, name, extras, log=lambda _: None
    )
    t, g = metrics["test"], metrics["gray_baseline"]
    log(
        f"test MSE {t['mse']:.5f}, PSNR {t['psnr']:.2f} dB, SSIM {t['ssim']:.4f} "
        f"(gray input: MSE {g['mse']:.5f}, PSNR {g['psnr']:.2f} dB, SSIM {g['ssim']:.4f}; "
        f"{metrics['epochs']} epochs, {metrics['train_time_s']:.0f} s)"
    )
    return model, metrics, paths


# --- eval and probe: rows in results/colorization.md and .json ----------------


def load_colorizer(path):
    """(model, kind, color space) of a saved colorizer; one-line errors name the file."""
    model = saving.load_model(path, compile=False)
    try:
        kind, space = models.describe(model)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return model, kind, space


def figure_title(name, data_name, metrics):
    """A colorizer's figures' title: the run, its data and its length."""
    title = f"{name} on {data_name}, {metrics['epochs']} epochs"
    if metrics.get("best_epoch"):
        title += f" (best validation MSE at epoch {metrics['best_epoch']})"
    return title


def _figures(name, model, space, history, per_image, xt, yt, title):
    """[(file name, write(path))] of a colorizer's two figures: its loss
    curves beside the test MSE spread, and examples of the test images."""
    shown = xt[example_indices(yt)]
    predicted = colorizer_metrics.score_colorizer(model, shown, space, keep=len(shown))["predicted"]
    gray = color.training_pair(shown, space)[0].numpy()
    return [
        (
            f"{name}_eval.png",
            lambda p: plots.plot_colorization_eval(history, per_image, p, title),
        ),
        (
            f"{name}_examples.png",
            lambda p: plots.plot_colorization_examples(gray[..., 0], predicted, shown, p, title),
        ),
    ]


def _redraw_figures(path, model, space, config, source, result, xt, yt, plot_dir):
    """Draws a saved colorizer's figures again into `plot_dir` from the record
    of the run that trained it and this eval's scores, so `eval --figures
    --publish --replace` can put right figures older code drew. Refused
    (ValueError, before any row is written) unless that run was tested on the
    same data: the same data set and folder, test images and image size."""
    history, metrics, flags, _ = run_record(path)
    this = {
        "dataset": config.dataset,
        "data_source": source.removesuffix(" (cached)"),  # the same files, read from the cache
        "test_images": len(xt),
        "image_size": model.input_shape[1],
    }
    recorded = flags | {"data_source": str(flags.get("data_source")).removesuffix(" (cached)")}
    differs = [k for k, v in this.items() if recorded.get(k) != v]
    if differs:
        said = ", ".join(f"{k} {recorded.get(k)!r} against {this[k]!r}" for k in differs)
        raise ValueError(
            f"--figures: the run that trained {os.path.basename(path)} was tested on other "
            f"data ({said}); its figures are drawn only from the same test images"
        )
    name = os.path.splitext(os.path.basename(path))[0]
    title = figure_title(name, _data_name(config), metrics)
    per_image = _per_image(result)
    return [
        (os.path.join(plot_dir, file_name), write)
        for file_name, write in _figures(name, model, space, history, per_image, xt, yt, title)
    ]


def run_record(path):
    """(history, metrics, flags, predictions) of the run that trained the
    colorizer at `path` (`report.run_folder_of`); ValueError if it has none."""
    folder = report.run_folder_of(path)
    loaded = folders.load_run(folder) if folder else None
    if loaded is None:
        raise ValueError(f"--figures: {path} has no run record with its history to draw from")
    return loaded


def _per_image(result):
    """The per-image test MSEs the eval figure is drawn from."""
    return {"model_mse": result["model"]["mse"], "gray_mse": result["gray"]["mse"]}


def evaluate_file(path, config, results_dir, log=print, figures=False):
    """Tests a saved colorizer against the gray baseline and records both rows.

    The test images are the config's test split (`test_limit` of it), resized
    to the model's input size. `figures`: also draw the model's two figures
    again, beside the table (`_redraw_figures`). Returns the model's row.
    """
    invocation = provenance.invocation()  # before the work: its started_utc is the start
    model, kind, space = load_colorizer(path)
    size = model.input_shape[1]
    ds, _, _, (xt, yt) = load_data(dataclasses.replace(config, val_size=0), size)
    result = colorizer_metrics.score_colorizer(model, xt, space)
    plot_dir = os.path.join(os.path.dirname(results_dir), "plots", "colorization")
    drawn = (
        _redraw_figures(path, model, space, config, ds.source, result, xt, yt, plot_dir)
        if figures
        else []
    )
    data_name = _data_name(config)
    row = {
        "model": kind,
        "color_space": space,
        "test_images": len(xt),
        "data": data_name,
        "image_size": size,
        "params": model.count_params(),
        **colorizer_metrics.summarize(result["model"]),
        # Capped PSNR: above one 8-bit level the uncapped values measure round-off.
        "against_gray": colorizer_metrics.against_gray(
            result["model"]["psnr_capped"],
            result["gray"]["psnr_capped"],
            colorizer_metrics.colorfulness(xt),
        ),
        "run": report.run_of(path),
        # This evaluation's record: command, commit, CPU, start and end.
        "evaluation": invocation | {"finished_utc": provenance.now_utc()},
    }
    gray_kind = "luma" if space == "rgb" else "luminance"
    gray = {
        "model": f"gray input as colour ({gray_kind} gray)",
        "color_space": space,
        "test_images": len(xt),
        "data": data_name,
        "image_size": size,
        **colorizer_metrics.summarize(result["gray"]),
    }
    # One baseline row per gray conversion and test set, however many models share it.
    baseline_key = f"gray_{space}_{data_name}_{len(xt)}_{size}px"
    report.update(
        results_dir,
        {
            "colorizers": {os.path.basename(path): row},
            "baselines": {baseline_key: gray},
        },
    )
    log(
        f"{os.path.basename(path)}: test MSE {row['mse']:.5f}, PSNR {row['psnr']:.2f} dB "
        f"(capped {row['psnr_capped']:.2f}), SSIM {row['ssim']:.4f}; gray input as colour: "
        f"MSE {gray['mse']:.5f}, PSNR {gray['psnr']:.2f} dB (capped {gray['psnr_capped']:.2f}), "
        f"SSIM {gray['ssim']:.4f}; the model's capped PSNR is "
        f"higher on {row['against_gray'][0]['above_gray'] * 100:.1f} % of the images"
    )
    for figure, write in drawn:  # after the row: a figure cannot cost the table its row
        log(f"wrote {write(figure)}")
    return row


def probe_file(path, config, results_dir, epochs=10, log=print):
    """`linear_probe` of a saved colorizer on the config's data; records its row."""
    invocation = provenance.invocation()  # before the work: its started_utc is the start
    model, _, space = load_colorizer(path)
    size = model.input_shape[1]
    ds, train, _, test = load_data(dataclasses.replace(config, val_size=0), size, classifier=True)
    keras.utils.set_random_seed(config.seed)
    result = probe.linear_probe(model, space, train, test, ds.num_classes, epochs, seed=config.seed)
    # Trained against random encoder on the same test images: a paired test.
    paired = stats.mcnemar(
        test[1], result.pop("trained_predictions"), result.pop("random_predictions")
    )
    row = {
        "train_images": len(train[0]),
        "test_images": len(test[0]),
        "epochs": epochs,
        "data": _data_name(config),
        "classes": ds.num_classes,
        **result,
        "paired": {k: paired[k] for k in ("a_only", "b_only", "p_value", "z")},
        # The probe's record: command, commit, CPU, start and end.
        "invocation": invocation | {"finished_utc": provenance.now_utc()},
    }
    report.update(results_dir, {"probes": {os.path.basename(path): row}})
    log(
        f"{os.path.basename(path)}: linear probe accuracy {result['trained_accuracy']:.4f} "
        f"(random encoder: {result['random_accuracy']:.4f}; {row['classes']} classes, "
        f"{row['train_images']} train / {row['test_images']} test images)"
    )
    return row


def _data_name(config):
    if config.data_dir is None:
        return config.dataset
    return os.path.basename(os.path.normpath(config.data_dir))


# --- apply: users' own pictures -------------------------------------------------


def read_gray(path, color_space):
    """Any picture Pillow reads -> (H, W, 1) float32 gray in 0-255.

    Gray files are used as they are; colour ones are converted as the
    model's training images were (`colorization.color.to_gray`). Raises OSError
    with the file's name for anything unreadable, and DataError (a
    ValueError) for a picture over `image_folders.MAX_PIXELS`: apply works
    on full-resolution float arrays, whose memory grows with the pixels.
    """
    from PIL import Image, ImageOps

    if not os.path.isfile(path):
        raise OSError(f"{path}: no such file")
    image_folders.quiet_bomb_warning()
    try:
        with Image.open(path) as im:
            image_folders.check_pixels(im, path, TOO_LARGE)
            im = image_folders.to_8bit(ImageOps.exif_transpose(im))  # phones store photos rotated
            if im.mode in ("1", "L", "LA"):
                return np.asarray(im.convert("L"), "float32")[..., None]
            rgb = np.asarray(im.convert("RGB"), "float32") / 255.0
    except DataError:
        raise
    except Exception as e:  # PIL raises many types for broken files
        raise OSError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    return color.to_gray(rgb, color_space).numpy() * 255.0


TOO_LARGE = "shrink it first (apply colours every pixel at full resolution)"


def pictures_in(paths):
    """`paths` with each folder replaced by the pictures in it (sorted; not
    its subfolders, nor hidden files such as macOS's `._photo.jpg`)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += [
                os.path.join(p, f)
                for f in sorted(os.listdir(p))
                if not f.startswith(".")
                and f.lower().endswith(image_folders.IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(p, f))
            ]
        else:
            out.append(p)
    return out


def output_names(pictures, out_dir):
    """out_dir/<name>_colorized.png for each picture, numbered where two
    pictures share a name (a.jpg and a.png, or two folders' a.jpg)."""
    targets, used = [], set()
    for f in pictures:
        stem = os.path.splitext(os.path.basename(f))[0] + "_colorized"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        targets.append(os.path.join(out_dir, f"{name}.png"))
    return targets


def check_pictures(pictures, targets, overwrite):
    """Refuses, before any picture is colorized, an output file already
    there (unless `overwrite`) and a picture over MAX_PIXELS, found from its
    header alone; unreadable pictures are left to `colorize_files`' warnings."""
    from PIL import Image

    if not overwrite:
        for t in targets:
            if os.path.exists(t):
                raise ValueError(f"{t}: already exists; pass --overwrite to replace it")
    image_folders.quiet_bomb_warning()
    for f in pictures:
        try:
            im = Image.open(f)
        except Image.DecompressionBombError as e:  # over 179 megapixels: Pillow's own refusal
            raise DataError(f"{f}: {e}; {TOO_LARGE}") from None
        except Exception:  # PIL raises many types for broken files
            continue
        with im:
            image_folders.check_pixels(im, f, TOO_LARGE)


def colorize_files(path, pictures, out_dir, log=print, warn=print, overwrite=False):
    """Colorizes each picture file (a folder: its pictures, `pictures_in`)
    into out_dir/<name>_colorized.png.

    An output file already there is refused unless `overwrite`, and so is a
    picture over `image_folders.MAX_PIXELS`, both before any work
    (`check_pictures`).

    Returns:
        (written paths, failed files). A bad file gets one `warn` line and
        the others are still done.
    """
    from PIL import Image

    model, _, space = load_colorizer(path)
    pictures = pictures_in(pictures)
    if not pictures:
        raise ValueError("no pictures to colorize (the folders given hold none)")
    targets = output_names(pictures, out_dir)
    check_pictures(pictures, targets, overwrite)
    files.check_writable(out_dir, flag="out")
    written, failed = [], []
    for f, target in zip(pictures, targets):
        try:
            rgb = color_data.colorize_image(model, read_gray(f, space), space)
        except OSError as e:
            warn(str(e).splitlines()[0])
            failed.append(f)
            continue
        with files.atomic_path(target) as tmp:
            Image.fromarray(rgb).save(tmp, format="PNG")
        written.append(target)
        log(f"{f} -> {target} ({rgb.shape[1]}x{rgb.shape[0]})")
    return written, failed
