"""The ``fastmlp`` command, driven in subprocesses on files the tests write."""

import csv
import fcntl
import math
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import FastMLP, cli, datasets

pytestmark = pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")

FEATURES = ["income", "score", "loans"]


def run(*args, cwd, env=None, timeout=180, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastmlp.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, input=stdin,
                          env={**os.environ, **(env or {})})


def run_on_a_terminal(*args, cwd) -> tuple[int, str]:
    """Run the command with stderr on a pseudo-terminal; returns its status and stderr."""
    parent, child = terminal()
    process = subprocess.Popen([sys.executable, "-m", "fastmlp.cli", *map(str, args)],
                               cwd=cwd, stdout=subprocess.DEVNULL, stderr=child)
    os.close(child)
    stderr = read_terminal(parent)
    return process.wait(timeout=180), stderr


def terminal() -> tuple[int, int]:
    """A pseudo-terminal of 24 lines of 100 columns (tqdm draws nothing 0 columns wide)."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    return parent, child


def read_terminal(fd: int, until: str | None = None) -> str:
    """What a pseudo-terminal shows until its writer closes it (or ``until`` appears)."""
    seen = b""
    while until is None or until.encode() not in seen:
        try:
            chunk = os.read(fd, 4096)
        except OSError:     # Linux: the writer closed its end
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_table(n=200, seed=0):
    """Three numeric features on different scales and a string label that depends on them."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(1, 12, n), rng.uniform(3, 9, n), rng.integers(0, 4, n)])
    labels = np.where(0.6 * X[:, 0] + X[:, 1] - 1.5 * X[:, 2] > 7.5, "approve", "reject")
    return X, labels


def summary_value(stdout: str, row: str, column: int = 0) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith(row))
    return re.split(r"\s{2,}", line[len(row):].strip())[column]


def assert_one_line_error(result, *fragments, status=1) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A CSV file, and a model trained on it by the command (--save, --plot)."""
    path = tmp_path_factory.mktemp("cli")
    X, labels = make_table()
    write_csv(path / "train.csv", [*FEATURES, "decision"],
              [[*map(str, row), label] for row, label in zip(X, labels)])
    result = run("train", "train.csv", "--target", "decision", "--hidden", "8,4",
                 "--epochs", "40", "--test-size", "0.2", "--seed", "3", "--save", "model.npz",
                 "--plot", "curve.png", cwd=path)
    assert result.returncode == 0, result.stderr
    (path / "train.out").write_text(result.stdout)
    return path


# ------------------------------------------------------------------------------ train

def test_train_without_arguments_trains_on_breast_cancer(tmp_path):
    result = run("train", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "breast-cancer: 569 samples, 30 features" in out
    assert "426 training / 143 test rows (stratified" in out
    for row in ("train accuracy", "test accuracy", "train log-loss", "test log-loss",
                "epochs", "samples/s", "training time"):
        assert row in out
    assert float(summary_value(out, "test accuracy")) > 0.9
    assert result.stderr == ""  # no progress bar when stderr is not a terminal (a log)
    assert os.listdir(tmp_path) == []


def test_train_on_breast_cancer_does_not_import_scikit_learn(tmp_path):
    # Importing scikit-learn takes about a second: most of a warm `fastmlp train`.
    code = ("import sys; from fastmlp import cli; cli.main(['train', '--quiet']); "
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'sklearn'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_breast_cancer_is_scikit_learns(monkeypatch):
    from sklearn.datasets import load_breast_cancer
    expected = load_breast_cancer()
    for source in ("its file", "its loader"):
        if source == "its loader":
            monkeypatch.setattr(datasets, "_sklearn_data_file", lambda name: None)
        X, y, names = datasets.load_breast_cancer()
        np.testing.assert_array_equal(X, expected.data)
        np.testing.assert_array_equal(y, expected.target_names[expected.target])
        assert names == list(expected.feature_names)


@pytest.mark.parametrize("test_size", [0.1, 0.25, 0.5, 0.7])
def test_stratified_split_is_a_partition_in_each_class_share(test_size):
    y = np.repeat(np.array(["a", "b", "c"]), [50, 31, 7])
    X = np.arange(2.0 * len(y)).reshape(-1, 2)
    X_train, X_test, y_train, y_test = datasets.stratified_split(X, y, test_size, seed=0)
    assert len(y_test) == math.ceil(test_size * len(y))     # scikit-learn's count
    rows = np.concatenate([X_train[:, 0], X_test[:, 0]]).astype(int) // 2
    assert sorted(rows) == list(range(len(y)))               # every row once, with its label
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), y[rows])
    for label, count in zip(*np.unique(y, return_counts=True)):
        assert abs((y_test == label).sum() - count * len(y_test) / len(y)) < 1
        assert (y_train == label).any()
    again = datasets.stratified_split(X, y, test_size, seed=0)
    other = datasets.stratified_split(X, y, test_size, seed=1)
    assert np.array_equal(again[1], X_test) and not np.array_equal(other[1], X_test)


@pytest.mark.parametrize("test_size, message", [(0.7, "class 0 would have no training rows"),
                                                (0.9, "leaves 4 of the 4 rows for testing")])
def test_stratified_split_refuses_an_empty_part(test_size, message):
    with pytest.raises(ValueError, match=message):
        datasets.stratified_split(np.zeros((4, 1)), np.array([0, 0, 1, 1]), test_size, seed=0)


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_only_on_a_terminal_and_not_quiet(tmp_path, quiet):
    status, stderr = run_on_a_terminal("train", "--epochs", "5",
                                       *(["--quiet"] if quiet else []), cwd=tmp_path)
    assert status == 0, stderr
    assert ("FastMLP" in stderr and "5/5" in stderr) != quiet, stderr


def test_quiet_prints_nothing_for_a_clean_run(tmp_path):
    write_csv(tmp_path / "d.csv", ["a", "b", "y"],
              [[i % 7, (i * 3) % 5, "u" if i % 7 > 3 else "v"] for i in range(40)])
    (tmp_path / "d.tsv").write_text((tmp_path / "d.csv").read_text().replace(",", "\t"))
    result = run("train", "d.tsv", "--epochs", "3", "--save", "m.npz", "--quiet", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert "d.tsv: tab-separated" in run("train", "d.tsv", "--epochs", "3",
                                          cwd=tmp_path).stdout
    told = run("train", "d.tsv", "--delimiter", "tab", "--epochs", "3", cwd=tmp_path)
    assert told.returncode == 0 and "separated" not in told.stdout   # nothing was assumed


def test_compare_sklearn_shows_both_side_by_side(tmp_path):
    result = run("train", "--compare-sklearn", "--epochs", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "scikit-learn" in line)
    assert header.split() == ["fastmlp", "scikit-learn"]
    assert summary_value(result.stdout, "epochs", 1) == "3 of 3"
    assert re.search(r"fastmlp trained [\d,]+x faster than scikit-learn", result.stdout)


@pytest.mark.parametrize("args, expected", [
    (["--dataset", "digits", "--epochs", "1"], "digits: 1797 samples, 64 features, labels "
                                               "even, odd"),
    (["--dataset", "moons", "--n-samples", "300", "--noise", "0.1", "--epochs", "2"],
     "moons: 300 samples, 2 features, labels 0, 1"),
])
def test_embedded_data_sets(tmp_path, args, expected):
    result = run("train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_loan_reproduces_the_seed_notebooks(tmp_path):
    """3-5-1 ReLU, full batch, lr 0.1, 1000 epochs: all ten applicants and the three unseen
    ones classified correctly."""
    result = run("train", "--dataset", "loan", "--save", "loan.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "loan: 13 samples, 3 features, labels approve, reject; 10 training rows, tested " \
        "on the 3 unseen applicants" in result.stdout
    assert summary_value(result.stdout, "test accuracy") == "1.0000"
    model = fastmlp.load(tmp_path / "loan.npz")
    assert model.n_iter_ == 1000 and model.hidden_layer_sizes == (5,)
    unseen = Path(fastmlp.__file__).parent / "data" / "loan_approval_unseen.csv"
    predicted = run("predict", "loan.npz", unseen, cwd=tmp_path)
    assert predicted.stdout.split() == ["approve", "reject", "approve"]


def test_train_on_a_csv_saves_and_plots(workdir):
    out = (workdir / "train.out").read_text()
    assert "train.csv: 200 samples, 3 features, labels approve, reject" in out
    assert "network 3-8-4-1 (relu)" in out
    assert "model written to model.npz" in out and "plot written to curve.png" in out
    assert (workdir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = fastmlp.load(workdir / "model.npz")
    assert list(model.feature_names_in_) == FEATURES
    assert model.hidden_layer_sizes == (8, 4) and model.random_state == 3


def test_training_options_reach_the_estimator(tmp_path):
    X, labels = make_table(n=80)
    write_csv(tmp_path / "d.csv", [*FEATURES, "y"], [[*row, label] for row, label in
                                                    zip(X, labels)])
    result = run("train", "d.csv", "--hidden", "6", "3", "--activation", "tanh",
                 "--batch-size", "full", "--lr", "0.05", "--epochs", "7", "--momentum", "0.5",
                 "--no-nesterov", "--alpha", "0.001", "--shuffle", "no", "--tol", "0",
                 "--n-iter-no-change", "20", "--init", "he", "--float32", "--backend",
                 "numpy", "--seed", "11", "--save", "m.npz", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model = fastmlp.load(tmp_path / "m.npz")
    expected = dict(hidden_layer_sizes=(6, 3), activation="tanh", batch_size="full",
                    learning_rate_init=0.05, max_iter=7, momentum=0.5,
                    nesterovs_momentum=False, alpha=0.001, shuffle=False, tol=0.0,
                    n_iter_no_change=20, init="he", backend="numpy", random_state=11,
                    verbose=False)
    assert {name: model.get_params()[name] for name in expected} == expected
    assert model._dtype == np.float32 and model.n_iter_ == 7


def test_early_stopping_plots_validation_accuracy(workdir):
    result = run("train", "train.csv", "--target", "decision", "--early-stopping",
                 "--epochs", "15", "--plot", "early.png", "--quiet", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert (workdir / "early.png").exists()


def test_divergence_is_a_one_line_error_in_the_commands_words(workdir):
    """The features were standardised by the command: the advice is --lr only."""
    result = run("train", "train.csv", "--target", "decision", "--lr", "100",
                 "--activation", "identity", "--epochs", "30", "--save", "diverged.npz",
                 "--quiet", cwd=workdir)
    assert_one_line_error(result, "fastmlp: error: Training diverged in epoch",
                          "Try a smaller --lr (now 100.0).")
    assert "learning_rate_init" not in result.stderr and "standardi" not in result.stderr
    assert "keeps the weights" not in result.stderr     # nothing is kept
    assert not (workdir / "diverged.npz").exists()


def test_a_dead_network_is_a_warning_with_the_commands_fix(tmp_path):
    """Breast-cancer features as they are kill every ReLU unit (the estimator's check)."""
    result = run("train", "--no-standardize", "--quiet", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: warning: FastMLP: every ReLU "
                                                   "unit of hidden layer 1 is inactive")
    assert "Fix: drop --no-standardize; use a smaller --lr (now 0.01)." in lines[0]
    assert "learning_rate_init" not in lines[0] and "StandardScaler" not in lines[0]


# ------------------------------------------------------------------------------ predict

def read_rows(path: Path):
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_predict_matches_the_model_on_raw_features(workdir):
    """The saved model takes raw columns (the standardisation is folded into it) and the
    label column is ignored by name."""
    result = run("predict", "model.npz", "train.csv", cwd=workdir)
    assert result.returncode == 0, result.stderr
    predictions = np.array(result.stdout.split())
    rows = read_rows(workdir / "train.csv")[1:]
    assert len(predictions) == len(rows)
    labels = np.array([row[3] for row in rows])
    assert (predictions == labels).mean() > 0.9
    assert_accuracy_report(result.stderr, predictions, labels, "decision")


def assert_accuracy_report(stderr: str, predictions, labels, column: str) -> None:
    """predict's report on stderr says the accuracy and per-class counts of these rows."""
    correct = predictions == labels
    lines = stderr.strip().splitlines()
    assert lines[0] == (f"fastmlp: accuracy {correct.mean():.4f} ({correct.sum()} of "
                        f"{len(labels)} rows) against column {column!r}")
    assert lines[1].split() == ["class", "rows", "predicted", "correct"]
    for line, label in zip(lines[2:], np.unique(labels), strict=True):
        assert line.split() == [label, str(np.sum(labels == label)),
                                str(np.sum(predictions == label)),
                                str(np.sum(correct & (labels == label)))]


def test_predict_reads_standard_input_and_scores_a_named_target(workdir):
    text = (workdir / "train.csv").read_text().replace(",", ";")
    result = run("predict", "model.npz", "-", "--target", "decision", cwd=workdir, stdin=text)
    assert result.returncode == 0, result.stderr
    from_file = run("predict", "model.npz", "train.csv", "--quiet", cwd=workdir)
    assert result.stdout == from_file.stdout and from_file.stderr == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "fastmlp: <stdin>: semicolon-separated (--delimiter to change)"
    labels = np.array([row[3] for row in read_rows(workdir / "train.csv")[1:]])
    assert_accuracy_report("\n".join(lines[1:]), np.array(result.stdout.split()), labels,
                           "decision")


def test_predict_does_not_score_a_column_of_other_values(workdir):
    X, labels = make_table(n=12, seed=2)
    write_csv(workdir / "other.csv", [*FEATURES, "note"],
              [[*row, "approve" if i else "maybe"] for i, row in enumerate(X)])
    result = run("predict", "model.npz", "other.csv", cwd=workdir)
    assert result.returncode == 0 and len(result.stdout.split()) == 12
    assert result.stderr == "fastmlp: ignoring column(s) the model does not use: note\n"
    assert_one_line_error(run("predict", "model.npz", "other.csv", "--target", "nope",
                              cwd=workdir), "other.csv has no column 'nope'")


def test_saved_model_agrees_with_the_training_summary(tmp_path):
    X, labels = make_table(n=150, seed=5)
    write_csv(tmp_path / "d.csv", [*FEATURES, "y"], [[*row, label] for row, label in
                                                    zip(X, labels)])
    trained = run("train", "d.csv", "--test-size", "0", "--epochs", "20", "--save", "m.npz",
                  cwd=tmp_path)
    reported = float(summary_value(trained.stdout, "train accuracy"))
    predicted = run("predict", "m.npz", "d.csv", "--quiet", cwd=tmp_path).stdout.split()
    assert np.mean(np.array(predicted) == labels) == pytest.approx(reported, abs=1e-4)


def test_predict_picks_columns_by_name_in_any_order(workdir):
    X, _ = make_table(n=10, seed=1)
    write_csv(workdir / "new.csv", ["loans", "income", "score"],
              [[row[2], row[0], row[1]] for row in X])
    result = run("predict", "model.npz", "new.csv", cwd=workdir)
    assert result.returncode == 0 and result.stderr == ""
    model = fastmlp.load(workdir / "model.npz")
    assert result.stdout.split() == list(model.predict(cli._Frame(X, FEATURES)))


def test_predict_proba_to_a_file(workdir):
    result = run("predict", "model.npz", "train.csv", "--proba", "--output", "p.csv",
                 "--quiet", cwd=workdir)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    rows = read_rows(workdir / "p.csv")
    assert rows[0] == ["approve", "reject"]
    proba = np.array(rows[1:], dtype=float)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_predict_with_a_model_saved_from_python(tmp_path):
    """No feature names: the columns are taken in order, and their number must match."""
    X, labels = make_table(n=60)
    FastMLP(4, max_iter=3, random_state=0).fit(X, labels == "approve").save(tmp_path / "m.npz")
    write_csv(tmp_path / "x.csv", ["a", "b", "c"], X)
    result = run("predict", "m.npz", "x.csv", cwd=tmp_path)
    expected = FastMLP(4, max_iter=3, random_state=0).fit(X, labels == "approve").predict(X)
    assert result.stdout.split() == [str(value) for value in expected]
    truth = np.array([str(value) for value in labels == "approve"])
    write_csv(tmp_path / "xy.csv", ["a", "b", "c", "y"], np.column_stack([X, truth]))
    scored = run("predict", "m.npz", "xy.csv", cwd=tmp_path)
    assert scored.stdout == result.stdout
    assert_accuracy_report(scored.stderr, np.array(scored.stdout.split()), truth, "y")
    write_csv(tmp_path / "wide.csv", ["a", "b", "c", "d"], np.column_stack([X, X[:, 0]]))
    assert_one_line_error(run("predict", "m.npz", "wide.csv", cwd=tmp_path),
                          "has 4 columns, but the model takes 3 features")


# ------------------------------------------------------------------------------ CSV reading

def test_messy_csv_reads_like_a_clean_one(tmp_path):
    """A byte-order mark, blank lines, spaces around cells, quotes and Windows line ends
    change nothing, in NumPy's fast reader and in the csv-module reader it falls back to for
    error messages."""
    clean = write_csv(tmp_path / "clean.csv", ["a", "b", "y"],
                      [[1, 2.5, "yes"], [3, -4, "no"], [5, 6e-3, "yes"]])
    messy = tmp_path / "messy.csv"
    messy.write_text('\ufeff\n a , b ,y\n1, 2.5 , yes\n\n"3",-4,"no"\n5 ,6e-3, yes \n\n',
                     encoding="utf-8")
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(clean.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    X, y, names = datasets.read_csv(clean)
    for path in (clean, messy, crlf):
        got = datasets.read_csv(path)
        assert np.array_equal(got[0], X) and np.array_equal(got[1], y) and got[2] == names
        careful = datasets._read_columns_carefully(path, ["a", "b"], "y")
        assert np.array_equal(careful[0], X) and np.array_equal(careful[1], y)
    assert list(y) == ["yes", "no", "yes"]


@pytest.mark.parametrize("labels, expected", [
    (["0", "1", "-2"], [0, 1, -2]), (["1", "+1", "2"], ["1", "+1", "2"]),
    (["1.0", "2.0", "1.0"], ["1.0", "2.0", "1.0"]), (["007", "7", "1"], ["007", "7", "1"]),
])
def test_labels_print_as_written(tmp_path, labels, expected):
    path = write_csv(tmp_path / "d.csv", ["x", "y"], [[i, label] for i, label in
                                                      enumerate(labels)])
    assert datasets.read_csv(path)[1].tolist() == expected


@pytest.mark.parametrize("text, expected", [
    ("a,b,y\n1,2,u\n3,4,v\n", datasets.CsvFormat(",", True)),
    ("a;b;y\n1;2;u\n3;4;v\n", datasets.CsvFormat(";", True)),
    ("1\t2\tu\n3\t4\tv\n", datasets.CsvFormat("\t", False)),
    ("x|y\n0.5|1\n1.5|0\n", datasets.CsvFormat("|", True)),
    ("1,2.5,yes\n,4,no\n5,NA,yes\n", datasets.CsvFormat(",", False)),  # missing cells
    ("city,country\nParis,France\nLima,Peru\n", datasets.CsvFormat(",", True)),  # text only
    ('"1,5";2;u\n"3,5";4;v\n', datasets.CsvFormat(";", False)),  # commas inside quotes
])
def test_delimiter_and_header_are_detected(tmp_path, text, expected):
    path = tmp_path / "d.csv"
    path.write_text(text)
    assert datasets.sniff_format(path) == expected
    assert datasets.sniff_format(datasets.TextSource(text)) == expected


def test_a_csv_without_a_header_is_read_and_said_so(tmp_path):
    X, labels = make_table(n=60)
    rows = [[*map(str, row), label] for row, label in zip(X, labels)]
    (tmp_path / "bare.csv").write_text("".join(",".join(row) + "\n" for row in rows))
    result = run("train", "bare.csv", "--epochs", "3", "--save", "m.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "bare.csv: no header row (its first row holds data), columns named col1..col4 "
        "(--header yes if the first row names the columns)")
    assert "bare.csv: 60 samples, 3 features, labels approve, reject" in result.stdout
    assert list(fastmlp.load(tmp_path / "m.npz").feature_names_in_) == ["col1", "col2", "col3"]
    # Told otherwise, the first row names the columns, and the command says nothing about it.
    forced = run("train", "bare.csv", "--header", "yes", "--epochs", "3", "--test-size", "0",
                 "--save", "m2.npz", cwd=tmp_path)
    assert forced.returncode == 0 and "no header" not in forced.stdout
    assert list(fastmlp.load(tmp_path / "m2.npz").feature_names_in_) == rows[0][:3]


@pytest.mark.parametrize("values, task", [
    (["1.0", "2.0", "3.0"], "classification"),      # integers as floats: labels
    ([str(i) for i in range(20)], "classification"),
    ([str(i) for i in range(21)], "regression"),    # more integers than classes
    (["0.5", "1", "2"], "regression"),
    (["low", "2.5", "high"], "classification"),
])
def test_a_regression_target_is_detected(tmp_path, values, task):
    rows = [[i, value] for i, value in enumerate(values * 2)]
    write_csv(tmp_path / "d.csv", ["x", "y"], rows)
    result = run("train", "d.csv", "--epochs", "1", "--test-size", "0", cwd=tmp_path)
    if task == "classification":
        assert result.returncode == 0, result.stderr
        assert f"labels {', '.join(sorted(set(values)))}" in result.stdout or \
            f"labels {len(set(values))} classes" in result.stdout
    else:
        assert_one_line_error(result, "a regression target", "--task classification")
        forced = run("train", "d.csv", "--task", "classification", "--epochs", "1",
                     "--test-size", "0", cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
        assert f"network 1-16-{len(set(values))} (relu)" in forced.stdout


# ------------------------------------------------------------------------------ plot

@pytest.fixture
def figures(monkeypatch):
    """The figures the command saves, kept for inspection instead of written."""
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: saved.append(self))
    return saved


def lines_by_label(axes) -> dict:
    return {line.get_label(): line for line in axes.get_lines()}


def test_plot_marks_the_epoch_whose_weights_early_stopping_kept(tmp_path, figures):
    assert cli.main(["train", "--early-stopping", "--epochs", "40", "--plot", "e.png",
                     "--save", str(tmp_path / "m.npz"), "--quiet"]) == 0
    scores = fastmlp.load(tmp_path / "m.npz").validation_scores_
    kept = int(np.argmax(scores)) + 1
    loss_axes, accuracy_axes = figures[0].axes
    lines = lines_by_label(accuracy_axes)
    np.testing.assert_array_equal(lines["fastmlp"].get_ydata(), scores)
    marker = lines[f"fastmlp: weights of epoch {kept} kept"]
    assert list(marker.get_xdata()) == [kept, kept]
    assert any(list(line.get_xdata()) == [kept, kept] for line in loss_axes.get_lines())
    assert accuracy_axes.get_ylabel() == "validation accuracy"


def test_plot_compares_the_accuracy_curves_with_scikit_learn(figures, capsys):
    assert cli.main(["train", "--compare-sklearn", "--epochs", "4", "--plot", "c.png"]) == 0
    out = capsys.readouterr().out
    loss_axes, accuracy_axes = figures[0].axes
    assert accuracy_axes.get_ylabel() == "test accuracy"
    curves = lines_by_label(accuracy_axes)
    assert set(curves) == {"fastmlp", "scikit-learn"}
    for column, name in enumerate(("fastmlp", "scikit-learn")):
        accuracy = curves[name].get_ydata()
        assert len(accuracy) == 4 and len(lines_by_label(loss_axes)[name].get_ydata()) == 4
        # The last epoch's test accuracy is the one the summary reports.
        assert f"{accuracy[-1]:.4f}" == summary_value(out, "test accuracy", column)
    assert summary_value(out, "epochs", 1) == "4 of 4"


# ------------------------------------------------------------------------------ errors

ERRORS = [
    (["train", "missing.csv"], "missing.csv: No such file or directory"),
    (["train", "good.csv", "--target", "nope"], "has no column 'nope'; its columns are: a, b, y"),
    (["train", "text.csv"], "column 'b' must be numeric, but line 3 has 'high' (text in 1 of "
                            "2 rows): encode it as numbers"),
    (["train", "hole.csv"], "column 'a' has 1 missing value(s), the first on line 2 (empty): "
                            "fill them in (e.g. with the column's mean) or drop those rows"),
    (["train", "nan.csv"], "column 'a' has 1 missing value(s), the first on line 3 ('nan')"),
    (["train", "inf.csv"], "column 'a', line 3: 'inf' is not a finite number"),
    (["train", "header_only.csv"], "header_only.csv has a header but no data rows"),
    (["train", "regression.csv"], "the target column 'y' holds 8 distinct numbers, not all "
                                  "integers (0.5, 1.5, 2.5, ...): a regression target"),
    (["train", "regression.csv", "--test-size", "0"], "add --task classification"),
    (["train", "good.csv", "--task", "regression"], "fits classifiers only"),
    (["train", "regression.csv", "--task", "classification"],
     "cannot make a stratified test split: 8 of the 8 classes have a single row (e.g. '0.5')"),
    (["train", "ragged.csv"], "line 3: 2 fields, but the header has 3"),
    (["train", "empty.csv"], "is empty"),
    (["train", "one_class.csv", "--test-size", "0"], "only one class: 'u'."),
    (["train", "model.bin"], "is not a UTF-8 text (CSV) file"),
    (["train", "good.csv", "--dataset", "moons"], "give a CSV file or --dataset, not both"),
    (["train", "--target", "y"], "--target names a column of a CSV file"),
    (["train", "--n-samples", "50"], "apply to --dataset moons only"),
    (["train", "--header", "no"], "--delimiter and --header describe a CSV file"),
    (["train", "--dataset", "loan", "--test-size", "0.3"], "--test-size does not apply"),
    (["train", "--save", "no/such/dir/m.npz"], "the directory does not exist"),
    (["train", "--plot", "curve.xyz"], "matplotlib cannot write .xyz files"),
    (["predict", "missing.npz", "good.csv"], "missing.npz: No such file or directory"),
    (["predict", "model.bin", "good.csv"], "is not a valid fastmlp model file"),
    (["predict", "good.csv", "good.csv"], "not a readable zip archive"),
]


@pytest.fixture
def error_files(tmp_path) -> Path:
    write_csv(tmp_path / "good.csv", ["a", "b", "y"], [[1, 2, "u"], [3, 4, "v"]] * 4)
    write_csv(tmp_path / "text.csv", ["a", "b", "y"], [[1, 2, "u"], [3, "high", "v"]])
    write_csv(tmp_path / "hole.csv", ["a", "b", "y"], [["", 2, "u"], [3, 4, "v"]])
    write_csv(tmp_path / "nan.csv", ["a", "b", "y"], [[1, 2, "u"], ["nan", 4, "v"]])
    write_csv(tmp_path / "inf.csv", ["a", "b", "y"], [[1, 2, "u"], ["inf", 4, "v"]])
    write_csv(tmp_path / "header_only.csv", ["a", "b", "y"], [])
    write_csv(tmp_path / "regression.csv", ["a", "y"], [[i, i + 0.5] for i in range(8)])
    write_csv(tmp_path / "one_class.csv", ["a", "b", "y"], [[1, 2, "u"], [3, 4, "u"]])
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,u\n3,4\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 4)
    return tmp_path


@pytest.mark.parametrize("args, message", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_user_mistakes_are_one_line_errors(error_files, args, message):
    assert_one_line_error(run(*args, cwd=error_files), message)


@pytest.mark.parametrize("args, message", [
    (["train", "--activation", "bogus"], "argument --activation: invalid choice: 'bogus'"),
    (["train", "--lr", "-1"], "argument --lr: expected a positive number, got '-1'"),
    (["train", "--batch-size", "0"], "expected a positive integer or 'full', got '0'"),
    (["train", "--hidden", "8,x"], "argument --hidden: expected a positive integer, got 'x'"),
    (["train", "--momentum", "1"], "expected a number in [0, 1)"),
    (["train", "--dataset", "iris"], "invalid choice: 'iris'"),
    (["train", "--seed", "-3"], "expected an integer in [0, 2**32)"),
    (["train", "--delimiter", "ab"], "argument --delimiter: expected one character"),
    (["train", "--task", "ranking"], "argument --task: invalid choice: 'ranking'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required"),
])
def test_bad_command_lines_are_one_line_errors(tmp_path, args, message):
    assert_one_line_error(run(*args, cwd=tmp_path), message, status=2)


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path):
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    result = run("train", "--plot", "c.png", cwd=tmp_path,
                 env={"PYTHONPATH": str(tmp_path / "fake")})
    assert_one_line_error(result, "--plot needs matplotlib", "pip install 'fastmlp[plot]'")
    assert not (tmp_path / "c.png").exists()


def test_ctrl_c_ends_with_status_130(tmp_path):
    parent, child = terminal()      # so that the progress bar shows
    process = subprocess.Popen(
        [sys.executable, "-m", "fastmlp.cli", "train", "--dataset", "moons", "--n-samples",
         "100000", "--hidden", "64", "--epochs", "100000", "--tol", "0"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=child,
        # A shell's background job (a CI script's) inherits SIGINT ignored: Ctrl-C as at a
        # terminal needs its default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(child)
    seen = read_terminal(parent, until="FastMLP")   # the bar is up: training has started
    assert "FastMLP" in seen, "the command ended before training started"
    process.send_signal(signal.SIGINT)
    stderr = seen + read_terminal(parent)
    assert process.wait(timeout=60) == 130
    assert "fastmlp: interrupted" in stderr and "Traceback" not in stderr


def test_ctrl_c_in_process(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.datasets, "load_dataset", interrupted)
    assert cli.main(["train", "--quiet"]) == 130
    assert "fastmlp: interrupted" in capsys.readouterr().err


# ------------------------------------------------------------------------------ bench & script

def test_bench_prints_a_comparison_table(tmp_path):
    result = run("bench", "--seconds", "0.02", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "fastmlp (numba)" in lines[1] and "scikit-learn" in lines[1]
    for network, line in zip(("3-5-1", "30-16-1", "100-64-1"), lines[2:5]):
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[0] == network and cells[-1].endswith("x") and len(cells) == 6


@pytest.mark.skipif(shutil.which("fastmlp") is None, reason="console script not installed")
def test_console_script(tmp_path):
    result = subprocess.run(["fastmlp", "--version"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.stdout.strip() == f"fastmlp {fastmlp.__version__}"


# ------------------------------------------------------------------------------ compile

def cache_files(cache: Path) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in cache.rglob("*") if path.is_file()}


def test_compile_fills_the_cache_that_a_later_fit_loads(tmp_path):
    # The default configuration in float64 only (the whole list takes a minute of compiling).
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    code = ("import sys; from fastmlp import cli, warmup; full = warmup.configurations; "
            "warmup.configurations = lambda: full()[:2]; "
            "sys.exit(cli.main(['compile', '--jobs', '2']))")
    compiled = subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=300, env={**os.environ, **env})
    assert compiled.returncode == 0, compiled.stderr
    assert "float64  binary     defaults" in compiled.stdout
    assert "float64  multiclass defaults" in compiled.stdout
    filled = cache_files(cache)
    assert any(name.endswith(".nbc") for name in filled)
    fit = ("import numpy as np; from fastmlp.warmup import warm_up_one; "
           "warm_up_one({}, 'binary', 'float64'); warm_up_one({}, 'multiclass', 'float64')")
    subprocess.run([sys.executable, "-c", fit], check=True, timeout=300,
                   env={**os.environ, **env})
    assert cache_files(cache) == filled     # loaded, nothing compiled or written anew


def test_train_warms_up_the_batch_kernel_it_trains_with(tmp_path, monkeypatch):
    # With batches of 32 or more the BLAS path trains: the warm-up must run it too.
    fits = []
    real_fit = FastMLP.fit
    monkeypatch.setattr(FastMLP, "fit", lambda self, X, y: fits.append(len(y)) or
                        real_fit(self, X, y))
    assert cli.main(["train", "--batch-size", "64", "--epochs", "2", "--quiet"]) == 0
    # Two warm-up fits: the second compiles the many-epochs kernel (sgd_epochs_due).
    *warm_up_rows, training_rows = fits
    assert len(warm_up_rows) == 2 and min(warm_up_rows) >= 64 and training_rows == 426


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to overlap")
def test_prediction_compiles_aside_into_the_cache_that_train_loads(tmp_path):
    """`fastmlp train`'s warm-up starts prediction's compile in a process of its own (while
    it compiles training's kernels): that process saves the kernel to the cache, and the
    parent compiles none itself; once the kernel is cached, no process is started."""
    code = """
import numpy as np
from fastmlp import warmup
from fastmlp.kernels import dispatch, predict
X = np.linspace(-1, 1, 12).reshape(4, 3).astype("float32")
y = np.array([0, 1, 0, 1])
process = warmup.compile_prediction_aside({"hidden_layer_sizes": (4,)}, X, y)
process.join(240)
print(process.exitcode, dispatch.prediction_compiled("float32"),
      dispatch.prediction_compiled("float64"), len(predict.forward.overloads),
      warmup.compile_prediction_aside({}, X, y))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path,
                            env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True", "False", "0", "None"]


# ------------------------------------------------------------------------------ streaming


def test_streamed_training_is_partial_fit_over_the_chunks(tmp_path):
    """--chunksize: each pass over the file is one partial_fit per chunk in file order,
    exactly the Python loop over pandas' chunks of the same file (a last chunk of 30 rows,
    three classes, a blank line that the chunk it falls in skips)."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(230, 3))
    y = np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5])
    path = write_csv(tmp_path / "big.csv", [*FEATURES, "kind"],
                     [[*(repr(float(v)) for v in row), label] for row, label in zip(X, y)])
    with open(path, "a") as file:
        file.write("\n")
    result = run("train", path, "--chunksize", 50, "--test-size", 0, "--no-standardize",
                 "--epochs", 3, "--hidden", 6, "--seed", 7, "--save", "model.npz",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    streamed = fastmlp.load(tmp_path / "model.npz")

    looped = FastMLP((6,), max_iter=3, random_state=7)
    assert {name: value for name, value in streamed.get_params().items()
            if name not in ("hidden_layer_sizes",)} == \
        {name: value for name, value in looped.get_params().items()
         if name not in ("hidden_layer_sizes",)}
    for _ in range(3):
        for chunk in pd.read_csv(path, chunksize=50):
            looped.partial_fit(chunk[FEATURES], chunk["kind"], classes=[0, 1, 2])
    for found, expected in zip([*streamed.coefs_, *streamed.intercepts_],
                               [*looped.coefs_, *looped.intercepts_], strict=True):
        np.testing.assert_array_equal(found, expected)
    assert streamed.loss_curve_ == looped.loss_curve_
    assert float(summary_value(result.stdout, "train loss (last pass)")) == pytest.approx(
        np.average(looped.loss_curve_[-5:], weights=[50, 50, 50, 50, 30]), abs=1e-4)


def test_streamed_statistics_and_test_rows(tmp_path):
    """The first pass's mean and standard deviation are numpy's over the training rows; the
    held-out rows are the same in every pass, disjoint from the training rows, and about
    --test-size of the file."""
    from fastmlp import streaming

    X, labels = make_table(n=1000, seed=2)
    X = X * [1e3, 1, 1] + [1e6, 0, 0]      # a large mean: the merged update stays exact
    path = write_csv(tmp_path / "big.csv", [*FEATURES, "decision"],
                     [[*(repr(float(v)) for v in row), label]
                      for row, label in zip(X, labels)])
    source = streaming.ChunkedCsv(path, 64, "decision", datasets.sniff_format(path), 0.3, 1)
    source.survey()

    def rows(test):
        return [np.concatenate(part) for part in zip(*source.chunks(False, test=test))]

    train, test = rows(False), rows(True)
    assert len(train[0]) == source.n_train and len(test[0]) == source.n_test
    assert source.n_train + source.n_test == 1000
    assert abs(source.n_test - 300) < 5 * np.sqrt(1000 * 0.3 * 0.7)
    np.testing.assert_allclose(source.mean, train[0].mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(source.scale, train[0].std(axis=0), rtol=1e-10)
    for again, first in zip(rows(True), test):
        np.testing.assert_array_equal(again, first)
    together = np.concatenate([train[0], test[0]])
    assert len(np.unique(together, axis=0)) == 1000
    assert sorted(source.classes.tolist()) == ["approve", "reject"]
    standardised = np.concatenate([X for X, _ in source.chunks(True)])
    np.testing.assert_allclose(standardised, (train[0] - source.mean) / source.scale)


def test_streaming_refuses_what_needs_the_data_in_memory(tmp_path):
    X, labels = make_table()
    path = write_csv(tmp_path / "t.csv", [*FEATURES, "decision"],
                     [[*map(str, row), label] for row, label in zip(X, labels)])
    assert_one_line_error(run("train", "--chunksize", 10, cwd=tmp_path), "--chunksize",
                          "CSV")
    assert_one_line_error(run("train", path, "--chunksize", 10, "--early-stopping",
                              cwd=tmp_path), "--early-stopping", "in memory")
