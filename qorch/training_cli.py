"""The training side of the ``qorch`` command: live epoch progress, metrics and their plot,
prediction, dataset upload, and the training part of the demo."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qorch.client import Client, Job, JobStatus, Metric
from qorchestra.examples import example

console = Console()

#: The demo's classifier: 4 qubits, angle encoding re-uploaded before each of 3 layers, trained
#: on local-sv with the adjoint gradient (the agents return each sample's exact gradient).
DEMO_CLASSIFIER: dict[str, Any] = {
    **copy.deepcopy(example("moons-classifier")),
    "name": "demo: moons classifier",
}
DEMO_CLASSIFIER["training"]["gradient"] = "adjoint"


def _step_time(metrics: dict[str, float]) -> str:
    """' (1.25 s/step)' from a step event's ``step_time_s``; empty from an older server."""
    seconds = metrics.get("step_time_s")
    return "" if seconds is None else f" ({seconds:.2f} s/step)"


def watch_training(client: Client, job: Job, from_seq: int = 0) -> JobStatus:
    """Follow a train or minimize job: a bar over epochs (or steps) with the live loss, and a
    line per epoch (``Client.watch`` resumes a dropped stream). Returns the final status."""
    training = job.kind == "train"
    unit = "epochs" if training else "steps"
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
    )
    status = job.status
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(status.lower(), total=None)
        for event in client.watch(job.id, from_seq):
            status = event.status
            m = event.metrics
            if event.type == "step" and training:
                progress.update(
                    task,
                    total=m.get("epochs"),
                    completed=m["epoch"] - 1,
                    description=f"epoch {int(m['epoch'])} step {int(m['step'])} "
                    f"loss {m['loss']:.4f}" + _step_time(m),
                )
            elif event.type == "step":
                progress.update(
                    task,
                    total=m.get("steps"),
                    completed=m["step"],
                    description=f"step {int(m['step'])} energy {m['energy']:.6f}" + _step_time(m),
                )
            elif event.type == "epoch":
                progress.update(task, completed=m["epoch"])
                progress.console.print(f"  {event.message}")
            elif event.type in ("redispatched", "failed", "cancelled", "succeeded"):
                progress.console.print(f"  {event.type}: {event.message}")
            if event.terminal:
                break
    return status


def print_metrics(client: Client, job_id: str) -> list[Metric]:
    """A table of the epoch metrics (minimisation: every 10th step); returns the history."""
    history = client.metrics(job_id).data
    epochs = [m for m in history if m.kind == "epoch"]
    rows = epochs or [m for m in history if m.kind != "epoch"][::10]
    if not rows:
        console.print("no metrics yet")
        return history
    keys = [k for k in rows[-1].values if k not in ("epochs", "steps")]
    table = Table(title=f"metrics of {job_id}")
    for key in keys:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*(f"{row.values.get(k, float('nan')):.4g}" for k in keys))
    console.print(table)
    return history


def step_time(history: Sequence[Metric]) -> str:
    """'32 steps, 0.08 s/step (median 0.07)' from the steps' ``step_time_s``; empty without."""
    times = sorted(m.values["step_time_s"] for m in history if "step_time_s" in m.values)
    if not times:
        return ""
    mean, median = sum(times) / len(times), times[len(times) // 2]
    return f"{len(times)} steps, {mean:.3f} s/step (median {median:.3f})"


def plot_metrics(history: Sequence[Metric], path: Path) -> None:
    """Loss (and accuracy, for classifiers) curves to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m for m in history if m.kind == "step"]
    epochs = [m for m in history if m.kind == "epoch"]
    panels = 2 if epochs else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    loss_ax = axes[0][0]
    key = "energy" if steps and "energy" in steps[0].values else "loss"
    loss_ax.plot([m.step for m in steps], [m.values[key] for m in steps], label=f"step {key}")
    if epochs:
        at = [m.step for m in epochs]
        for name in ("train_loss", "val_loss"):
            if name in epochs[0].values:
                loss_ax.plot(at, [m.values[name] for m in epochs], "o-", label=name)
        acc_ax = axes[0][1]
        for name in ("train_accuracy", "val_accuracy"):
            if name in epochs[0].values:
                acc_ax.plot(
                    [m.epoch for m in epochs],
                    [m.values[name] for m in epochs],
                    "o-",
                    label=name,
                )
        acc_ax.set_xlabel("epoch")
        acc_ax.set_ylabel("accuracy")
        acc_ax.set_ylim(0, 1.02)
        acc_ax.legend()
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel(key)
    loss_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_metrics(args: argparse.Namespace, client: Client) -> int:
    """``qorch metrics JOB [--plot file.png]``."""
    history = print_metrics(client, args.job_id)
    if args.plot:
        plot_metrics(history, Path(args.plot))
        console.print(f"curves written to {args.plot}")
    return 0


def cmd_predict(args: argparse.Namespace, client: Client) -> int:
    """``qorch predict JOB '[[x, y], ...]'`` (or a JSON file)."""
    text = Path(args.samples).read_text() if Path(args.samples).is_file() else args.samples
    samples = json.loads(text)
    answer = client.predict(args.job_id, samples)
    table = Table(title=f"predictions (job {answer.job_id})")
    table.add_column("sample")
    table.add_column("class")
    table.add_column("probabilities")
    for sample, p in zip(samples, answer.predictions, strict=True):
        probs = ", ".join(f"{k}: {v:.3f}" for k, v in p.probabilities.items())
        table.add_row(str(sample), p.class_, probs)
    console.print(table)
    return 0


def cmd_dataset_upload(args: argparse.Namespace, client: Client) -> int:
    """``qorch dataset upload FILE.csv [--label-column label] [--name NAME]``."""
    dataset = client.upload_dataset(
        Path(args.file).read_text(),
        name=args.name or Path(args.file).stem,
        label_column=args.label_column,
    )
    console.print(
        f"dataset [cyan]{dataset.id}[/cyan]: {dataset.rows} rows, features "
        f"{dataset.feature_names}, classes {dataset.classes}"
    )
    return 0


def add_commands(sub: Any, wrap: Any) -> None:
    """Register the training commands on the ``qorch`` parser (``wrap`` gives them a client)."""
    metrics = sub.add_parser("metrics", help="a training job's metrics; --plot draws curves")
    metrics.add_argument("job_id")
    metrics.add_argument("--plot", default=None, metavar="PNG", help="write loss/accuracy curves")
    metrics.set_defaults(func=wrap(cmd_metrics))
    predict = sub.add_parser("predict", help="classify samples with a trained model")
    predict.add_argument("job_id")
    predict.add_argument("samples", help="JSON list of feature rows, or a file holding one")
    predict.set_defaults(func=wrap(cmd_predict))
    dataset = sub.add_parser("dataset", help="datasets for training jobs")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True)
    upload = dataset_sub.add_parser("upload", help="upload a CSV (header row, numeric features)")
    upload.add_argument("file")
    upload.add_argument("--label-column", default="label")
    upload.add_argument("--name", default="")
    upload.set_defaults(func=wrap(cmd_dataset_upload))
