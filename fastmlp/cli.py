"""The ``fastmlp`` command.

    fastmlp train                          breast-cancer data: progress bar, then a summary
    fastmlp train --compare-sklearn        the same, next to scikit-learn's MLPClassifier
    fastmlp train --dataset moons --n-samples 100000
    fastmlp train data.csv --target label --hidden 32 16 --save model.npz --plot curve.png
    fastmlp predict model.npz new.csv [--proba] [--output predictions.csv]
    cat new.csv | fastmlp predict model.npz -
    fastmlp bench

User mistakes (a missing file or column, a non-numeric feature, a bad option value, a corrupt
model file) and a training run that diverges end in one line on stderr,
``fastmlp: error: ...``, with exit status 1 (2 for a malformed command line); warnings are
one line each, ``fastmlp: warning: ...``, in the command's words (``--lr``, not
``learning_rate_init``). Ctrl-C ends with status 130.
"""

import argparse
import csv
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _targets, datasets, streaming, warmup
from ._diagnostics import STANDARDISE, warn_training_problems
from ._validation import check_params
from ._version import __version__
from .classifier import FastMLP
from .exceptions import DivergenceWarning
from .kernels.layout import unpack
from .kernels.registry import ACTIVATION_BY_NAME, INIT_SCHEME_BY_NAME
from .persistence import load

# Settings that train each embedded data set well in about a second; flags override them.
RECIPES = {
    "breast-cancer": {"hidden": [16], "epochs": 30},
    # The seed notebooks' network and schedule: 3-5-1 ReLU, full-batch gradient descent,
    # lr 0.1, N(0, 0.01^2) weights, a fixed 1000 epochs (tol 0: stop only on a loss increase).
    "loan": {"hidden": [5], "epochs": 1000, "batch_size": "full", "lr": 0.1,
             "init": "normal", "tol": 0.0},
    "digits": {"hidden": [32], "epochs": 30},
    "moons": {"hidden": [16], "epochs": 50},
    "csv": {"hidden": [16], "epochs": 100},
}
# Options whose default is the estimator's, by option name: read from FastMLP's signature.
DEFAULTS = {option: FastMLP().get_params()[param] for option, param in (
    ("activation", "activation"), ("batch_size", "batch_size"), ("lr", "learning_rate_init"),
    ("init", "init"), ("tol", "tol"))}
SHUFFLE = {"yes": True, "no": False, "replacement": "replacement"}
HEADER = {"auto": None, "yes": True, "no": False}
DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
# Integer labels with more distinct values than this are taken as a quantity, not classes.
MAX_NUMBERED_CLASSES = 20
# The estimator's parameters as the command's options, for messages meant for its user.
OPTION_OF_PARAMETER = {"learning_rate_init": "--lr", "max_iter": "--epochs",
                       "alpha": "--alpha"}
# fastmlp (numba) runs many more samples than the slow contenders in the same time; its
# per-epoch overhead is only amortised over enough rows.
BENCH_NETWORKS = ((3, 5), (30, 16), (100, 64))
BENCH_ROWS_FAST, BENCH_ROWS_SLOW = 20_000, 500


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message instead of usage plus message."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a malformed command line
        return int(exit.code or 0)
    standardised = not getattr(args, "no_standardize", True)
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_, **__: _show_warning(message, standardised)
        # The summary reports how many epochs ran; "not converged" adds nothing to it.
        warnings.filterwarnings("ignore", message="Stochastic Optimizer: Maximum iterations")
        # A diverged run leaves nothing worth reporting or saving: it fails the command.
        warnings.filterwarnings("error", category=DivergenceWarning)
        try:
            return args.run(args)
        except DivergenceWarning as error:
            # The estimator's "keeps the weights of epoch n" does not apply: nothing is kept.
            message = re.sub(r" The model keeps the weights of epoch \d+\.", "", str(error))
            sys.stderr.write(f"fastmlp: error: {_in_cli_words(message, standardised)}\n")
            return 1
        except KeyboardInterrupt:
            sys.stderr.write("\nfastmlp: interrupted\n")
            return 130
        except BrokenPipeError:
            # Output piped into a reader that quit (e.g. `| head`): nothing left to say.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except (OSError, ValueError) as error:
            sys.stderr.write(f"fastmlp: error: {_describe(error)}\n")
            return 1


def _describe(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split())  # one line, whatever the message's layout


def _show_warning(message, standardised: bool) -> None:
    from tqdm import tqdm

    # tqdm.write keeps a progress bar that is on screen intact below the message.
    tqdm.write(f"fastmlp: warning: {_in_cli_words(str(message), standardised)}",
               file=sys.stderr)


def _in_cli_words(message: str, standardised: bool) -> str:
    """The estimator's message on one line, with the command's options for its parameters,
    and no advice to standardise features the command has standardised."""
    message = " ".join(message.split())
    for parameter, option in OPTION_OF_PARAMETER.items():
        message = re.sub(rf"(?<![-\w]){parameter}\b", option, message)
    unscaled_fix = "drop --no-standardize"
    message = message.replace(" or standardise the features",
                              "" if standardised else f" or {unscaled_fix}")
    return message.replace(f"{STANDARDISE}; ", "" if standardised else f"{unscaled_fix}; ")


# ------------------------------------------------------------------------------ command line

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastmlp", description="Train small MLP classifiers fast, predict "
                     "with them, and compare with scikit-learn.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True,
                                     parser_class=_Parser)
    _add_train(commands)
    _add_predict(commands)
    _add_bench(commands)
    _add_compile(commands)
    return parser


def _add_compile(commands) -> None:
    compile_ = commands.add_parser(
        "compile", help="compile the kernels of the common configurations ahead of first use",
        description="Numba compiles each training configuration's kernels on first use (seconds "
        "each) and caches them on disk. This compiles the common ones in parallel, e.g. after "
        "installing or upgrading fastmlp, so that first fits load them: " + "; ".join(
            ", ".join(f"{key}={value}" for key, value in params.items()) or "the defaults"
            for params in warmup.COMMON_CONFIGURATIONS) + f" (each in {', '.join(warmup.DTYPES)}).")
    compile_.add_argument("--jobs", type=_positive_int, metavar="N",
                          help="worker processes (default: one per core)")
    compile_.add_argument("--quiet", action="store_true", help="print nothing")
    compile_.set_defaults(run=compile_command)


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train", help="train on an embedded data set or a CSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a FastMLP on an embedded data set (default: breast cancer) or on\n"
        "a CSV file with numeric feature columns and a label column (its delimiter and\n"
        "header row are detected). Features are standardised on the training rows; a\n"
        "stratified test split measures the model.",
        epilog="options left unset take the data set's recipe, then the defaults:\n" + "\n".join(
            f"  {'DATA.csv' if name == 'csv' else name:14} " + " ".join(_recipe_flags(recipe))
            for name, recipe in RECIPES.items()))
    data = train.add_argument_group("data")
    data.add_argument("csv", nargs="?", metavar="DATA.csv", help="a CSV file to train on")
    data.add_argument("--target", metavar="COLUMN",
                      help="the CSV column holding the labels (default: the last column)")
    data.add_argument("--task", choices=("auto", "classification", "regression"),
                      default="auto", help="what the target is (default auto: numbers that "
                      f"are not integers, or more than {MAX_NUMBERED_CLASSES} distinct "
                      "integers, are a regression target)")
    _add_csv_format_options(data)
    data.add_argument("--dataset", choices=datasets.DATASETS,
                      help="an embedded data set (default: breast-cancer): " + "; ".join(
                          f"{name}: {text}" for name, text in datasets.DESCRIPTIONS.items()))
    data.add_argument("--n-samples", type=_positive_int, metavar="N",
                      help="samples to generate for --dataset moons (default 1000)")
    data.add_argument("--noise", type=_nonnegative_float, metavar="SD",
                      help="noise of --dataset moons (default 0.2)")
    data.add_argument("--test-size", type=_test_fraction, metavar="F",
                      help="fraction of rows held out for testing, 0 for none (default 0.25; "
                      "loan is tested on its three unseen applicants)")
    data.add_argument("--no-standardize", action="store_true",
                      help="train on the features as they are")
    data.add_argument("--chunksize", type=_positive_int, metavar="N",
                      help="stream the CSV file in chunks of N lines, for files larger than "
                      "memory: a first pass finds the classes and the standardisation, each "
                      "epoch is one partial_fit per chunk in file order (--tol and "
                      "--n-iter-no-change stop on each pass's loss), the test rows are "
                      "drawn row by row (not stratified) and scored in a last pass")

    net = train.add_argument_group("network")
    net.add_argument("--hidden", type=_layer_sizes, nargs="+", metavar="N",
                     help="hidden layer widths, e.g. --hidden 32 16 or --hidden 32,16 "
                     "(default: see the recipes below)")
    net.add_argument("--activation", choices=sorted(ACTIVATION_BY_NAME),
                     help="hidden activation (default relu)")
    net.add_argument("--init", choices=tuple(INIT_SCHEME_BY_NAME),
                     help="initial weights (default glorot)")

    fit = train.add_argument_group("training")
    fit.add_argument("--epochs", type=_positive_int, metavar="N",
                     help="maximum epochs (default: see the recipes below)")
    fit.add_argument("--batch-size", type=_batch_size, metavar="N|full",
                     help="samples per gradient step (default 1: per-sample SGD)")
    fit.add_argument("--lr", type=_positive_float, metavar="RATE",
                     help="learning rate (default 0.01)")
    fit.add_argument("--momentum", type=_momentum, default=0.0, metavar="M",
                     help="momentum in [0, 1) (default 0)")
    fit.add_argument("--no-nesterov", action="store_true",
                     help="classical instead of Nesterov momentum")
    fit.add_argument("--alpha", type=_nonnegative_float, default=0.0, metavar="A",
                     help="L2 penalty (default 0)")
    fit.add_argument("--shuffle", choices=tuple(SHUFFLE), default="yes",
                     help="sample order of each epoch (default yes: a new permutation)")
    fit.add_argument("--tol", type=_nonnegative_float, metavar="TOL",
                     help="stop when the loss improves by less than this ... (default 1e-4)")
    fit.add_argument("--n-iter-no-change", type=_positive_int, default=10, metavar="N",
                     help="... for this many epochs (default 10)")
    fit.add_argument("--early-stopping", action="store_true",
                     help="hold out --validation-fraction of the training rows and stop on "
                     "their accuracy")
    fit.add_argument("--validation-fraction", type=_open_fraction, default=0.1, metavar="F",
                     help="held out by --early-stopping (default 0.1)")
    fit.add_argument("--seed", type=_seed, default=0,
                     help="seeds the split, the weights and the sample order (default 0)")
    fit.add_argument("--float32", action="store_true", help="train in float32")
    fit.add_argument("--backend", choices=("numba", "numpy"), default="numba",
                     help="compiled kernels or the NumPy reference (default numba)")

    out = train.add_argument_group("output")
    out.add_argument("--compare-sklearn", action="store_true",
                     help="also train scikit-learn's MLPClassifier with the same network and "
                     "schedule and show both")
    out.add_argument("--save", metavar="MODEL", help="write the model to this file; it takes "
                     "the raw feature columns (the standardisation is folded into its first "
                     "layer)")
    out.add_argument("--plot", metavar="FILE.png", help="draw the loss curve and the test "
                     "accuracy per epoch (with --early-stopping the validation accuracy and "
                     "the epoch whose weights were kept; with --compare-sklearn "
                     "scikit-learn's curves beside; needs matplotlib: pip install "
                     "'fastmlp[plot]')")
    out.add_argument("--quiet", action="store_true",
                     help="no progress bar, notes or summary: only warnings and errors")
    train.set_defaults(run=train_command)


def _add_csv_format_options(group) -> None:
    group.add_argument("--delimiter", type=_delimiter, metavar="CHAR",
                       help="the CSV field delimiter: a character, or comma, semicolon, tab, "
                       "pipe (default: detected)")
    group.add_argument("--header", choices=tuple(HEADER), default="auto",
                       help="whether the CSV's first row names the columns (default auto: "
                       "not when it holds numbers where the other rows do; the columns are "
                       "then named col1, col2, ...)")


def _recipe_flags(recipe: dict) -> list[str]:
    flags = []
    for name, value in recipe.items():
        value = " ".join(map(str, value)) if isinstance(value, list) else value
        flags.append(f"--{name.replace('_', '-')} {value}")
    return flags


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict", help="predict the rows of a CSV file with a saved model",
        description="One prediction per row on stdout, in the original label values. "
        "Columns are matched to the model's features by name; a model without feature names "
        "takes every column in order. When a column holds the true labels (--target, or the "
        "one column the model does not use whose values are all labels it knows), the "
        "accuracy and per-class counts go to stderr.")
    predict.add_argument("model", metavar="MODEL", help="a model file from 'fastmlp train "
                         "--save' or FastMLP.save")
    predict.add_argument("csv", metavar="DATA.csv", help="rows to predict; - reads standard "
                         "input")
    predict.add_argument("--target", metavar="COLUMN",
                         help="the column holding the true labels, to report the accuracy")
    _add_csv_format_options(predict)
    predict.add_argument("--proba", action="store_true",
                         help="the probability of each class instead, with a header row")
    predict.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    predict.add_argument("--quiet", action="store_true",
                         help="no notes and no accuracy report on stderr")
    predict.set_defaults(run=predict_command)


def _add_bench(commands) -> None:
    bench = commands.add_parser(
        "bench", help="samples per second: fastmlp vs the NumPy reference vs scikit-learn",
        description="Per-sample SGD (batch 1, float64, ReLU) on random data for a few "
        "network shapes; each cell is measured for about --seconds after a warm-up.")
    bench.add_argument("--seconds", type=_positive_float, default=0.3,
                       help="time spent measuring each cell (default 0.3)")
    bench.set_defaults(run=bench_command)


def _number(text: str, convert, test, expected: str):
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not test(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def _seed(text: str) -> int:
    return _number(text, int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")


def _positive_float(text: str) -> float:
    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a positive number")


def _nonnegative_float(text: str) -> float:
    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")


def _momentum(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _test_fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def _open_fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < 1, "a fraction in (0, 1)")


def _batch_size(text: str) -> int | str:
    return "full" if text == "full" else _number(text, int, lambda v: v >= 1,
                                                 "a positive integer or 'full'")


def _delimiter(text: str) -> str:
    text = DELIMITER_NAMES.get(text.lower(), text)
    if len(text) != 1 or text in "\"\r\n" or text.isalnum():
        raise argparse.ArgumentTypeError(f"expected one character or one of "
                                         f"{', '.join(DELIMITER_NAMES)}, got {text!r}")
    return text


def _layer_sizes(text: str) -> list[int]:
    return [_positive_int(part) for part in text.split(",") if part.strip()]


# ------------------------------------------------------------------------------ train

@dataclass
class _Data:
    title: str
    names: list[str]
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    split: str
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None


@dataclass
class _Run:
    """One trained model and what the summary and the plot report about it."""
    name: str
    model: object
    seconds: float
    test_accuracy: list[float] = field(default_factory=list)


class _Frame:
    """The least of a DataFrame that FastMLP reads feature names from: ``columns`` and
    ``__array__``. Fitting with names lets ``predict`` pick a CSV's columns by name."""

    def __init__(self, values: np.ndarray, columns):
        self.values = values
        self.columns = list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype, copy=False)


def train_command(args) -> int:
    recipe = RECIPES["csv" if args.csv else args.dataset or "breast-cancer"]
    _check_train_options(args)
    params = _estimator_params(args, recipe)
    model = FastMLP(**params)
    check_params(model)
    if args.chunksize:
        return _train_streaming(args, model)
    data = _load_training_data(args)
    if not args.no_standardize:
        _standardise(data)
    if args.float32:
        data.X = data.X.astype(np.float32)
        data.X_test = None if data.X_test is None else data.X_test.astype(np.float32)
    if not args.quiet:
        print(_describe_training(data, params, args))
    # A status line while it lasts, on a terminal only (like the progress bar); the report
    # below says how long it took.
    status = params["backend"] == "numba" and not args.quiet and sys.stderr.isatty()
    if status:
        sys.stderr.write("fastmlp: loading the numba kernels (compiled on first use of a "
                         "configuration, seconds; `fastmlp compile` prepares the common ones)...")
        sys.stderr.flush()
    track_test = bool(args.plot) and data.X_test is not None and not args.early_stopping
    bar = not args.quiet and sys.stderr.isatty()    # a bar in a log file is noise
    # A bar (verbose), early stopping or one partial_fit per epoch train an epoch a call.
    many_epochs = not (bar or track_test or params["early_stopping"])
    warm_up = _warm_up(params, data, many_epochs)
    if status:
        sys.stderr.write("\r\033[K")     # the status line, erased
    if params["backend"] == "numba":
        _note(args, f"numba kernels ready in {_seconds(warm_up)} (compiled on first use, then "
              "loaded from a disk cache; not counted below)")
    runs = [_fit_fastmlp(model, data, track_test, bar)]
    if args.compare_sklearn:
        runs.append(_fit_sklearn(params, data, track_test, args.quiet))
    if not args.quiet:
        print(_summary(runs, data))
    if args.plot:
        _plot(args.plot, runs, data)
        _note(args, f"plot written to {args.plot}")
    if args.save:
        if data.mean is not None:
            _fold_standardisation(model, data.mean, data.scale)
        model.set_params(verbose=False)  # the bar was for this command, not the model
        model.save(args.save)
        _note(args, f"model written to {args.save}")
    return 0


def _train_streaming(args, model: FastMLP) -> int:
    """train_command for --chunksize: the CSV file's chunks through partial_fit, --epochs
    passes over the file (see fastmlp.streaming)."""
    fmt, _ = _csv_format(args, args.csv)
    source = streaming.ChunkedCsv(args.csv, args.chunksize, args.target, fmt,
                                  0.25 if args.test_size is None else args.test_size,
                                  args.seed, np.float32 if args.float32 else np.float64)
    source.survey()
    if args.task == "auto":
        _refuse_regression_target(source.classes, args.target or "the last column", args.csv)
    if len(source.classes) < 2:
        raise ValueError(f"{args.csv}: every row has the label {source.classes[0]!r}; a "
                         "classifier needs at least 2 classes.")
    standardise = not args.no_standardize
    if not args.quiet:
        print(_describe_streaming(source, model, args))
    if model.backend == "numba":
        _note(args, f"numba kernels ready in {_seconds(_warm_up_streaming(model, source))} "
              "(not counted below)")
    run = _Run("fastmlp", model, 0.0)
    losses, best, stale = [], math.inf, 0
    for _ in range(model.max_iter):
        total, n = 0.0, 0
        for X, y in source.chunks(standardise):
            start = time.perf_counter()
            model.partial_fit(_Frame(X, source.names), y, classes=source.classes)
            run.seconds += time.perf_counter() - start
            total, n = total + model.loss_curve_[-1] * len(y), n + len(y)
        losses.append(total / n)
        # fit's stopping rule, on each pass's mean training loss.
        stale = 0 if losses[-1] <= best - model.tol else stale + 1
        best = min(best, losses[-1])
        if stale > model.n_iter_no_change:
            break
    if not args.quiet:
        print("\n".join(_table(["", "fastmlp"], [[label, value] for label, value in
                                                _measure_streaming(run, source, losses,
                                                                   standardise).items()])))
    if args.save:
        if standardise:
            _fold_standardisation(model, source.mean, source.scale)
        model.save(args.save)
        _note(args, f"model written to {args.save}")
    return 0


def _warm_up_streaming(model: FastMLP, source) -> float:
    """_warm_up for streaming: one partial_fit and prediction on the first chunk's first
    batch, with every class (the first chunk may not hold them all). Returns its seconds."""
    start = time.perf_counter()
    X, y = next(source.chunks(standardise=False))
    n = len(y) if model.batch_size == "full" else min(model.batch_size, len(y))
    tiny = FastMLP(**{**model.get_params(), "verbose": False})
    frame = _Frame(X[:n], source.names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # what one epoch on a few rows learns is not news
        tiny.partial_fit(frame, y[:n], classes=source.classes).predict_proba(frame)
    return time.perf_counter() - start


def _describe_streaming(source, model: FastMLP, args) -> str:
    classes = source.classes
    shown = ", ".join(map(str, classes)) if len(classes) <= 6 else f"{len(classes)} classes"
    held_out = (f"{source.n_test} test rows held out (each row with probability "
                f"{source.test_size}, seed {args.seed})") if source.n_test else "no test split"
    return (f"{args.csv}: {source.n_train + source.n_test} rows streamed in chunks of "
            f"{args.chunksize} lines, {len(source.names)} features, labels {shown}; "
            f"{source.n_train} training rows, {held_out}"
            f"{'' if args.no_standardize else '; features standardised'}\n"
            f"network {len(source.names)}-{'-'.join(map(str, model.hidden_layer_sizes))}-"
            f"{1 if len(classes) == 2 else len(classes)} ({model.activation}), "
            f"{model.max_iter} passes over the file, one partial_fit per chunk")


def _measure_streaming(run: _Run, source, losses: list[float], standardise: bool) -> dict:
    """The summary's rows: the last pass's mean training loss, and the test rows' accuracy
    and log-loss, scored chunk by chunk."""
    model = run.model
    measures = {"train loss (last pass)": f"{losses[-1]:.4f}"}
    correct, log_loss, n = 0, 0.0, 0
    for X, y in source.chunks(standardise, test=True):
        frame = _Frame(X, source.names)
        correct += int((model.predict(frame) == y).sum())
        log_loss += _log_loss(model.predict_proba(frame), y, model.classes_) * len(y)
        n += len(y)
    if n:
        measures["test accuracy"] = f"{correct / n:.4f}"
        measures["test log-loss"] = f"{log_loss / n:.4f}"
    measures["passes"] = f"{len(losses)} of {model.max_iter}"
    measures["samples/s"] = f"{model.t_ / run.seconds:,.0f}"
    measures["training time"] = _seconds(run.seconds)
    return measures


def _note(args, text: str | None, file=None) -> None:
    """Say ``text`` unless --quiet (stdout: train's report; predict passes stderr)."""
    if text and not args.quiet:
        print(text if file is None else f"fastmlp: {text}", file=file or sys.stdout)


def _csv_format(args, path, note_file=None) -> tuple[datasets.CsvFormat, list[str]]:
    """The CSV file's layout, as given by --delimiter and --header or detected, and its
    column names; a note says what was detected when it is not a comma-separated file with
    a header row."""
    fmt = datasets.sniff_format(path, args.delimiter, HEADER[args.header])
    header = datasets.read_header(path, fmt)
    parts = []
    if fmt.delimiter != "," and args.delimiter is None:
        parts.append(f"{datasets.DELIMITERS.get(fmt.delimiter)}-separated (--delimiter to "
                     "change)")
    if not fmt.header and args.header == "auto":
        parts.append(f"no header row (its first row holds data), columns named col1.."
                     f"col{len(header)} (--header yes if the first row names the columns)")
    if parts:
        _note(args, f"{path}: {'; '.join(parts)}", file=note_file)
    return fmt, header


def _check_train_options(args) -> None:
    """Option combinations that cannot work, and unwritable outputs, before any training."""
    if args.csv and args.dataset:
        raise ValueError("give a CSV file or --dataset, not both.")
    if args.target and not args.csv:
        raise ValueError("--target names a column of a CSV file; none was given.")
    if (args.delimiter or args.header != "auto") and not args.csv:
        raise ValueError("--delimiter and --header describe a CSV file; none was given.")
    if args.task == "regression":
        raise ValueError("--task regression: fastmlp train fits classifiers only, for now; "
                         "train a fastmlp.FastMLPRegressor from Python.")
    if (args.n_samples is not None or args.noise is not None) and args.dataset != "moons":
        raise ValueError("--n-samples and --noise apply to --dataset moons only.")
    if args.dataset == "loan" and args.test_size is not None:
        raise ValueError("--dataset loan is tested on its three unseen applicants; "
                         "--test-size does not apply.")
    if args.chunksize and not args.csv:
        raise ValueError("--chunksize streams a CSV file; none was given.")
    streamed_out = [option for option, used in (("--compare-sklearn", args.compare_sklearn),
                                                ("--plot", args.plot),
                                                ("--early-stopping", args.early_stopping))
                    if used]
    if args.chunksize and streamed_out:
        raise ValueError(f"--chunksize: {', '.join(streamed_out)} need(s) the data in memory; "
                         "leave out --chunksize (or the option).")
    if args.compare_sklearn and args.shuffle == "replacement":
        raise ValueError("--compare-sklearn: scikit-learn cannot draw samples with "
                         "replacement (--shuffle replacement).")
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"{option} {path}: the directory does not exist.")
        if path and os.path.isdir(path):
            raise ValueError(f"{option} {path}: is a directory; give a file name.")
    if args.plot:
        _check_plot_support(args.plot)


def _check_plot_support(path: str) -> None:
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise ValueError("--plot needs matplotlib, which is not installed: "
                         "pip install 'fastmlp[plot]'.") from None
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise ValueError(f"--plot {path}: matplotlib cannot write .{suffix} files; use one "
                         f"of {', '.join(sorted(formats))}.")


def _estimator_params(args, recipe: dict) -> dict:
    def option(name):
        value = getattr(args, name)
        return value if value is not None else recipe.get(name, DEFAULTS.get(name))

    # --hidden 32 16 and --hidden 32,16 both arrive as lists of lists.
    hidden = [size for group in args.hidden for size in group] if args.hidden else \
        recipe["hidden"]
    return dict(hidden_layer_sizes=tuple(hidden),
                activation=option("activation"), batch_size=option("batch_size"),
                learning_rate_init=option("lr"), max_iter=option("epochs"),
                shuffle=SHUFFLE[args.shuffle], random_state=args.seed, tol=option("tol"),
                momentum=args.momentum, nesterovs_momentum=not args.no_nesterov,
                alpha=args.alpha, n_iter_no_change=args.n_iter_no_change,
                early_stopping=args.early_stopping,
                validation_fraction=args.validation_fraction, init=option("init"),
                backend=args.backend)


def _load_training_data(args) -> _Data:
    if args.csv:
        fmt, header = _csv_format(args, args.csv)
        X, y, names = datasets.read_csv(args.csv, args.target, fmt)
        if args.task == "auto":
            _refuse_regression_target(y, args.target or header[-1], args.csv)
        title = args.csv
    else:
        title = args.dataset or "breast-cancer"
        X, y, names = datasets.load_dataset(
            title, n_samples=args.n_samples or 1000,
            noise=0.2 if args.noise is None else args.noise, random_state=args.seed)
    if title == "loan":
        X_test, y_test, _ = datasets.load_loan(unseen=True)
        return _Data(title, names, X, y, X_test, y_test,
                     f"{len(y)} training rows, tested on the {len(y_test)} unseen applicants")
    test_size = 0.25 if args.test_size is None else args.test_size
    if test_size == 0:
        return _Data(title, names, X, y, None, None, "no test split")
    labels, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"cannot make a stratified test split: {np.sum(counts < 2)} of the "
                         f"{len(labels)} classes have a single row (e.g. "
                         f"{labels[counts < 2][:1].tolist()[0]!r}). Use --test-size 0, or "
                         "gather more rows of those classes.")
    try:
        X, X_test, y, y_test = datasets.stratified_split(X, y, test_size, args.seed)
    except ValueError as error:
        raise ValueError(f"cannot make a stratified test split of {len(y)} rows: {error} "
                         "Use another --test-size, or --test-size 0.") from None
    return _Data(title, names, X, y, X_test, y_test,
                 f"{len(y)} training / {len(y_test)} test rows (stratified, seed {args.seed})")


def _refuse_regression_target(y: np.ndarray, target: str, path) -> None:
    """A target of quantities rather than labels (prices, temperatures) is a regression task,
    which a classifier would turn into one class per distinct value."""
    try:
        values = np.unique(y.astype(np.float64))
    except ValueError:
        return      # text labels
    integers = bool((values == np.round(values)).all())
    if not np.isfinite(values).all() or (integers and len(values) <= MAX_NUMBERED_CLASSES):
        return
    kind = "integers" if integers else "numbers, not all integers"
    shown = ", ".join(f"{value:g}" for value in values[:3])
    raise ValueError(f"{path}: the target column {target!r} holds {len(values)} distinct "
                     f"{kind} ({shown}, ...): a regression target, and fastmlp train fits "
                     "classifiers only, for now (fastmlp.FastMLPRegressor fits it from "
                     "Python). If these values are class labels, add --task classification.")


def _standardise(data: _Data) -> None:
    """Zero mean and unit variance on the training rows (constant columns stay as they are)."""
    data.mean = data.X.mean(axis=0)
    data.scale = data.X.std(axis=0)
    data.scale[data.scale == 0] = 1
    data.X = (data.X - data.mean) / data.scale
    if data.X_test is not None:
        data.X_test = (data.X_test - data.mean) / data.scale


def _describe_training(data: _Data, params: dict, args) -> str:
    classes = np.unique(data.y)
    shown = ", ".join(map(str, classes)) if len(classes) <= 6 else f"{len(classes)} classes"
    n_outputs = 1 if len(classes) == 2 else len(classes)
    sizes = [data.X.shape[1], *params["hidden_layer_sizes"], n_outputs]
    batch = params["batch_size"]
    schedule = ("full-batch gradient descent" if batch == "full" else
                "per-sample SGD" if batch == 1 else f"mini-batch SGD (batch {batch})")
    n_samples = len(data.y) + (0 if data.y_test is None else len(data.y_test))
    return (f"{data.title}: {n_samples} samples, {data.X.shape[1]} features, "
            f"labels {shown}; {data.split}"
            f"{'' if args.no_standardize else '; features standardised'}\n"
            f"network {'-'.join(map(str, sizes))} ({params['activation']}), {schedule}, "
            f"lr {params['learning_rate_init']}, up to {params['max_iter']} epochs, "
            f"{'float32' if args.float32 else 'float64'}, {params['backend']} backend")


def _warm_up(params: dict, data: _Data, many_epochs: bool) -> float:
    """Train and predict one epoch on one row per class and enough rows for one batch, so
    that compiling (or loading) the numba kernels that training runs (the batch size decides
    the kernel) is not counted as training time; with ``many_epochs``, also the kernel that
    runs many epochs a call. Returns its seconds."""
    start = time.perf_counter()
    _, first_rows = np.unique(data.y, return_index=True)
    batch = len(data.y) if params["batch_size"] == "full" else params["batch_size"]
    rows = np.union1d(first_rows, np.arange(min(batch, len(data.y))))
    X = _Frame(data.X[rows], data.names)
    if params["backend"] == "numba":
        warmup.compile_prediction_aside(params, data.X[rows], data.y[rows])
    tiny = FastMLP(**{**params, "max_iter": 1, "early_stopping": False, "verbose": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # what one epoch on a few rows learns is not news
        # A configuration's second fit in a process compiles its many-epochs kernel
        # (kernels.dispatch.sgd_epochs_due), and training would be that second fit.
        for _ in range(2 if many_epochs else 1):
            tiny.fit(X, data.y[rows])
        tiny.predict_proba(X)
    return time.perf_counter() - start


def _fit_fastmlp(model: FastMLP, data: _Data, track_test: bool, bar: bool) -> _Run:
    """Train with ``fit`` (with ``bar``, a progress bar shows the loss), or with ``track_test``
    one ``partial_fit`` per epoch so that each epoch's test accuracy is known for the plot.
    The second costs ``partial_fit``'s checks per epoch, which shows on tiny data sets."""
    X = _Frame(data.X, data.names)
    if not track_test:
        model.set_params(verbose=bar)
        start = time.perf_counter()
        model.fit(X, data.y)
        return _Run("fastmlp", model, time.perf_counter() - start)
    from tqdm import tqdm

    run = _Run("fastmlp", model, 0.0)
    X_test = _Frame(data.X_test, data.names)
    classes = np.unique(data.y)
    with tqdm(total=model.max_iter, desc="FastMLP", unit="epoch", disable=not bar) as progress:
        for _ in range(model.max_iter):
            start = time.perf_counter()
            model.partial_fit(X, data.y, classes=classes)
            run.seconds += time.perf_counter() - start  # (a divergence raised: see main)
            run.test_accuracy.append(model.score(X_test, data.y_test))
            progress.set_postfix(loss=f"{model.loss_curve_[-1]:.5f}",
                                 test_acc=f"{run.test_accuracy[-1]:.4f}", refresh=False)
            progress.update()
            # fit's own stopping rule, which partial_fit keeps count of but does not apply.
            if model.get_training_state().no_improvement_count > model.n_iter_no_change:
                break
    # fit's check for a useless model, which partial_fit leaves out.
    warn_training_problems(model, data.X, _targets.encode(data.y, model.classes_, model._kind,
                                                          model._dtype))
    return run


def _fit_sklearn(params: dict, data: _Data, track_test: bool, quiet: bool) -> _Run:
    """scikit-learn's MLPClassifier on the same network and schedule, trained as fastmlp was:
    with ``track_test`` one ``partial_fit`` per epoch, for each epoch's test accuracy."""
    from sklearn.neural_network import MLPClassifier

    batch = params["batch_size"]
    model = MLPClassifier(
        hidden_layer_sizes=params["hidden_layer_sizes"],
        activation=ACTIVATION_BY_NAME[params["activation"]].name, solver="sgd",
        learning_rate="constant", learning_rate_init=params["learning_rate_init"],
        batch_size=len(data.y) if batch == "full" else batch, max_iter=params["max_iter"],
        shuffle=bool(params["shuffle"]), random_state=params["random_state"],
        tol=params["tol"], n_iter_no_change=params["n_iter_no_change"],
        momentum=params["momentum"], nesterovs_momentum=params["nesterovs_momentum"],
        alpha=params["alpha"], early_stopping=params["early_stopping"],
        validation_fraction=params["validation_fraction"])
    if not quiet:
        print("training scikit-learn's MLPClassifier with the same network and schedule...",
              file=sys.stderr, flush=True)
    run = _Run("scikit-learn", model, 0.0)
    if not track_test:
        start = time.perf_counter()
        model.fit(data.X, data.y)
        run.seconds = time.perf_counter() - start
        return run
    classes = np.unique(data.y)
    for _ in range(model.max_iter):
        start = time.perf_counter()
        model.partial_fit(data.X, data.y, classes=classes)
        run.seconds += time.perf_counter() - start
        run.test_accuracy.append(model.score(data.X_test, data.y_test))
        # fit's stopping rule, which partial_fit keeps count of but does not apply.
        if model._no_improvement_count > model.n_iter_no_change:
            break
    return run


def _summary(runs: list[_Run], data: _Data) -> str:
    columns = [_measure(run, data) for run in runs]
    labels = list(columns[0])
    lines = _table(["", *(run.name for run in runs)],
                   [[label, *(column[label] for column in columns)] for label in labels])
    stop = _stop_reason(runs[0].model)
    if stop:
        lines.append(stop)
    if len(runs) == 2:
        lines.append(f"fastmlp trained {runs[1].seconds / runs[0].seconds:,.0f}x faster "
                     "than scikit-learn")
    return "\n".join(lines)


def _stop_reason(model: FastMLP) -> str | None:
    """Why fastmlp stopped before --epochs (a divergence has been warned about already)."""
    no_improvement = model.get_training_state().no_improvement_count
    epochs = len(model.loss_curve_)
    if epochs == model.max_iter or no_improvement <= model.n_iter_no_change:
        return None
    what = "validation accuracy" if model.early_stopping else "training loss"
    return (f"fastmlp stopped after {epochs} epochs: the {what} improved by less than "
            f"--tol {model.tol} for more than {model.n_iter_no_change} epochs in a row")


def _measure(run: _Run, data: _Data) -> dict[str, str]:
    """The summary's rows for one model, formatted."""
    model = run.model
    parts = [("train", data.X, data.y)]
    if data.X_test is not None:
        parts.append(("test", data.X_test, data.y_test))
    if isinstance(model, FastMLP):
        parts = [(part, _Frame(X, data.names), y) for part, X, y in parts]
    measures = {f"{part} accuracy": f"{model.score(X, y):.4f}" for part, X, y in parts}
    for part, X, y in parts:
        loss = _log_loss(model.predict_proba(X), y, model.classes_)
        measures[f"{part} log-loss"] = f"{loss:.4f}"
    # Epochs of the whole run: the tracked runs call partial_fit once per epoch.
    measures["epochs"] = f"{len(model.loss_curve_)} of {model.max_iter}"
    measures["samples/s"] = f"{model.t_ / run.seconds:,.0f}"
    measures["training time"] = _seconds(run.seconds)
    return measures


def _seconds(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def _log_loss(proba: np.ndarray, y: np.ndarray, classes: np.ndarray) -> float:
    """Mean cross-entropy of the true labels; NaN when a label is not among ``classes``."""
    index = np.searchsorted(classes, y)
    if (index >= len(classes)).any() or (classes[np.minimum(index, len(classes) - 1)] != y).any():
        return math.nan
    p = proba[np.arange(len(y)), index]
    return float(-np.log(np.clip(p, np.finfo(proba.dtype).eps, 1)).mean())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [_row(cells, widths) for cells in [header, *rows]]


def _row(cells: list[str], widths: list[int]) -> str:
    """Left-aligned first column, right-aligned others."""
    return "  ".join([cells[0].ljust(widths[0]),
                      *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))])


def _plot(path: str, runs: list[_Run], data: _Data) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    figure = _figure(plt, runs, data)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _figure(plt, runs: list[_Run], data: _Data):
    """The loss per epoch of each run, and below it each run's test accuracy per epoch (or,
    with early stopping, its validation accuracy and the epoch whose weights were kept)."""
    early = runs[0].model.early_stopping
    curves = [run.model.validation_scores_ if early else run.test_accuracy for run in runs]
    figure, axes = plt.subplots(2 if curves[0] else 1, 1, sharex=True, squeeze=False,
                                figsize=(7, 6 if curves[0] else 3.5))
    loss_axes = axes[0, 0]
    for index, run in enumerate(runs):
        epochs = np.arange(1, len(run.model.loss_curve_) + 1)
        loss_axes.plot(epochs, run.model.loss_curve_, color=f"C{index}", label=run.name)
    loss_axes.set_ylabel("training loss")
    loss_axes.set_yscale("log")
    loss_axes.set_title(f"{data.title}: {len(runs[0].model.loss_curve_)} epochs")
    if curves[0]:
        accuracy_axes = axes[1, 0]
        for index, (run, curve) in enumerate(zip(runs, curves)):
            accuracy_axes.plot(np.arange(1, len(curve) + 1), curve, color=f"C{index}",
                               label=run.name)
            if early:
                # Both estimators keep the weights of the first epoch with the best score.
                kept = int(np.argmax(curve)) + 1
                for target in (loss_axes, accuracy_axes):
                    target.axvline(kept, color=f"C{index}", linestyle="--", linewidth=1,
                                   label=f"{run.name}: weights of epoch {kept} kept"
                                   if target is accuracy_axes else None)
        accuracy_axes.set_ylabel("validation accuracy" if early else "test accuracy")
        accuracy_axes.legend()
    loss_axes.legend()
    axes[-1, 0].set_xlabel("epoch")
    figure.tight_layout()
    return figure


def _fold_standardisation(model: FastMLP, mean: np.ndarray, scale: np.ndarray) -> None:
    """Make the model take raw features: a first layer W, b on (x - mean) / scale equals one
    with W / scale and b - (mean / scale) @ W on x. The optimizer's buffers, laid out like the
    weights (momentum's velocity is a change of weights), map the same way."""
    state = model.get_training_state()
    for buffer in (state.params, *state.optimizer.buffers.values()):
        coefs, intercepts = unpack(buffer, state.layout)
        W, b = coefs[0], intercepts[0]
        b -= ((mean / scale) @ W).astype(b.dtype)
        W /= scale[:, None].astype(W.dtype)


# ------------------------------------------------------------------------------ predict

def predict_command(args) -> int:
    model = load(args.model)
    if not isinstance(model, FastMLP):
        raise ValueError(f"{args.model} holds a {type(model).__name__}: fastmlp predict "
                         "handles FastMLP classifiers only, for now; call the model's "
                         "predict from Python (fastmlp.load).")
    source = datasets.TextSource(sys.stdin.read()) if args.csv == "-" else args.csv
    fmt, header = _csv_format(args, source, note_file=sys.stderr)
    target, labels = _labels(model, header, args.target, source, fmt)
    features = _feature_columns(model, header, target, source)
    X = datasets.read_columns(source, features, fmt=fmt)[0]
    if getattr(model, "feature_names_in_", None) is not None:
        X = _Frame(X, features)
    ignored = [name for name in header if name not in features and name != target]
    if ignored:
        _note(args, f"ignoring column(s) the model does not use: {', '.join(ignored)}",
              file=sys.stderr)
    predictions = model.predict(X)
    if args.proba:
        table = [list(map(str, model.classes_)),
                 *([f"{p:.6g}" for p in row] for row in model.predict_proba(X))]
    else:
        table = [[str(value) for value in np.atleast_1d(row)] for row in predictions]
    if args.output:
        with open(args.output, "w", newline="") as file:
            csv.writer(file, lineterminator="\n").writerows(table)
    else:
        csv.writer(sys.stdout, lineterminator="\n").writerows(table)
    if target and not args.quiet:
        _report_accuracy(predictions.astype(str), labels, target)
    return 0


def _labels(model: FastMLP, header: list[str], target: str | None, path, fmt):
    """The column of true labels and its cells: ``target`` when given, else the one column
    beyond the model's features when every value in it is a label the model knows (as
    ``predict`` prints it); (None, None) when there is none."""
    if target is not None:
        datasets.column_index(header, target, path)
        if model._kind == _targets.MULTILABEL:
            raise ValueError("--target: a multi-label model's predictions are not scored "
                             "against one label column.")
        return target, datasets.read_cells(path, target, fmt)
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        extra = header[-1:] if len(header) == model.n_features_in_ + 1 else []
    else:
        extra = [name for name in header if name not in set(names)]
    if len(extra) != 1 or model._kind == _targets.MULTILABEL:
        return None, None
    cells = datasets.read_cells(path, extra[0], fmt)
    known = {str(label) for label in model.classes_}
    if len(cells) and set(np.unique(cells)) <= known:
        return extra[0], cells
    return None, None


def _feature_columns(model: FastMLP, header: list[str], target: str | None, path) -> list[str]:
    """The CSV's columns that hold the model's features, in the model's order: by name, or
    for a model without names every column but the target."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = list(names)
        missing = [name for name in names if name not in header]
        if missing:
            raise ValueError(f"{path} lacks the model's feature column(s) "
                             f"{', '.join(map(repr, missing))}.")
        if target in names:
            raise ValueError(f"--target {target}: that column is one of the model's features.")
        return names
    columns = [name for name in header if name != target]
    if len(columns) != model.n_features_in_:
        besides = f" besides the labels in {target!r}" if target else ""
        raise ValueError(f"{path} has {len(columns)} columns{besides}, but the model takes "
                         f"{model.n_features_in_} features (it has no feature names to "
                         "pick columns by).")
    return columns


def _report_accuracy(predicted: np.ndarray, labels: np.ndarray, target: str) -> None:
    """Accuracy and per-class counts on stderr: stdout holds only the predictions."""
    correct = predicted == labels
    print(f"fastmlp: accuracy {correct.mean():.4f} ({correct.sum()} of {len(labels)} rows) "
          f"against column {target!r}", file=sys.stderr)
    rows = [[str(label), str(np.sum(labels == label)), str(np.sum(predicted == label)),
             str(np.sum(correct & (labels == label)))]
            for label in np.unique(np.concatenate([labels, predicted]))]
    for line in _table(["class", "rows", "predicted", "correct"], rows):
        print(line, file=sys.stderr)


# ------------------------------------------------------------------------------ bench

def compile_command(args) -> int:
    def report(configuration: dict, seconds: float) -> None:
        settings = ", ".join(f"{key}={value}" for key, value in
                             configuration["params"].items()) or "defaults"
        _note(args, f"  {configuration['dtype']:8} {configuration['target']:10} {settings}: "
              f"{_seconds(seconds)}")

    _note(args, f"compiling fastmlp's kernels for {len(warmup.configurations())} common "
          "configurations (cached on disk for every later process)...")
    seconds = warmup.compile_kernels(args.jobs, report)
    _note(args, f"done in {_seconds(seconds)}")
    return 0


def bench_command(args) -> int:
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    print("per-sample SGD (batch 1, float64, ReLU, one thread): training samples per second")
    header = ["network", "fastmlp (numba)", "NumPy reference", "scikit-learn", "vs NumPy",
              "vs sklearn"]
    widths = [9, 16, 16, 13, 9, 10]
    print(_row(header, widths))
    for n_features, hidden in BENCH_NETWORKS:
        X = rng.standard_normal((BENCH_ROWS_FAST, n_features))
        y = (X[:, 0] + X[:, -1] > 0).astype(np.int64)
        slow = slice(BENCH_ROWS_SLOW)

        def fastmlp(backend, rows):
            return lambda epochs: FastMLP(hidden, max_iter=epochs, n_iter_no_change=epochs,
                                          random_state=0, backend=backend).fit(X[rows], y[rows])

        def sklearn(epochs):
            return MLPClassifier(hidden, solver="sgd", learning_rate="constant", momentum=0,
                                 alpha=0, batch_size=1, learning_rate_init=0.01,
                                 max_iter=epochs, n_iter_no_change=epochs, random_state=0
                                 ).fit(X[slow], y[slow])

        fastmlp("numba", slow)(1)  # compiles, or loads from the disk cache, the kernels
        rates = [_samples_per_second(fastmlp("numba", slice(None)), BENCH_ROWS_FAST,
                                     args.seconds)]
        # fastmlp trains on one thread, and so do the others here, where they are at their
        # best: BLAS threads on one sample's small products made scikit-learn and the NumPy
        # reference about half as fast at 3-5-1 and 30-16-1 (two cores), flattering fastmlp.
        with threadpool_limits(limits=1):
            rates += [_samples_per_second(fastmlp("numpy", slow), BENCH_ROWS_SLOW,
                                          args.seconds),
                      _samples_per_second(sklearn, BENCH_ROWS_SLOW, args.seconds)]
        cells = [f"{n_features}-{hidden}-1", *(f"{rate:,.0f}" for rate in rates),
                 f"{rates[0] / rates[1]:,.0f}x", f"{rates[0] / rates[2]:,.0f}x"]
        print(_row(cells, widths), flush=True)
    print(f"(fastmlp timed on {BENCH_ROWS_FAST:,} rows, the others on {BENCH_ROWS_SLOW:,}: "
          "their cost per sample does not depend on the row count)")
    return 0


def _samples_per_second(fit, n_rows: int, seconds: float) -> float:
    """``fit(epochs)`` trains a fresh model for that many epochs on ``n_rows`` rows; run it
    with more epochs until one run lasts at least half of ``seconds``."""
    epochs = 1
    while True:
        start = time.perf_counter()
        fit(epochs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 2 or epochs == 10_000:
            return epochs * n_rows / elapsed
        epochs = min(10_000, max(epochs + 1, round(epochs * seconds / elapsed)))


if __name__ == "__main__":
    sys.exit(main())
