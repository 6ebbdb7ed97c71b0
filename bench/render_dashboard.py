"""Draw the main panels of the Grafana dashboard from real Prometheus data into docs/dashboard.png.

Starts the exporter in demo mode and Debian's ``prometheus`` on 127.0.0.1 (scraping every 2 s),
lets data flow for ``--duration`` seconds, then runs the dashboard's own panel queries
(files/dashboard.json, variables substituted) as range queries and plots them with matplotlib.
With ``--prometheus URL`` it reuses a running Prometheus instead. Run by hand (needs matplotlib):

    pip install matplotlib && python bench/render_dashboard.py [--duration 150] [--out docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "helm" / "signalwire-video-exporter" / "files" / "dashboard.json"
PANELS = [  # dashboard panel titles to draw, in order (full rows of COLUMNS)
    "Active sessions by quality / fps",
    "Member capacity by quality / fps",
    "Longest-running session",
    "Completed sessions per hour by quality / fps",
    "Cost per hour",
    "Session duration percentiles by quality / fps (last hour)",
    "Participants per session (last hour)",
    "Participant-minutes per hour by quality / fps",
    "Live members by quality / fps",
    "Capacity utilization p95 by quality / fps (last hour)",
    "Sessions at capacity (last hour)",
    "Pending recordings",
    "Recordings per hour",
    "Recorded minutes per hour",
    "Recording cost per hour",
    "Month to date, projection and budget",
    "Day and month by source",
    "Charges per hour by description",
    "API request latency",
    "Poll errors by reason",
    "Time since last successful poll",
]
COLUMNS = 3
UNIT_LABELS = {"s": "seconds", "currencyUSD": "US dollars", "percentunit": "share", None: ""}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(tmp: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    exporter_port, prom_port = _free_port(), _free_port()
    (tmp / "exporter.yaml").write_text(f'server: {{listen_address: "127.0.0.1:{exporter_port}"}}\n')
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 2s}\nscrape_configs:\n  - job_name: signalwire-video-exporter\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    binary = shutil.which("prometheus") or sys.exit("prometheus not installed (apt-get install prometheus)")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "exporter", "--demo", "--config", str(tmp / "exporter.yaml")],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    return f"http://127.0.0.1:{prom_port}", procs


def _range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params = {"query": expr, "start": start, "end": end, "step": step}
    body = httpx.get(f"{url}/api/v1/query_range", params=params, timeout=30).json()
    if body["status"] != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]  # type: ignore[no-any-return]


def _legend(fmt: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        fmt = fmt.replace("{{" + key + "}}", value)
    return fmt


def render(url: str, out: Path, start: float, end: float, space: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker

    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "timeseries"}
    step = max(2.0, (end - start) / 300)
    rows = math.ceil(len(PANELS) / COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(6 * COLUMNS, 4 * rows), constrained_layout=True)
    fig.suptitle(
        f"SignalWire Video dashboard, demo space, {datetime.fromtimestamp(start):%Y-%m-%d %H:%M}"
        f"-{datetime.fromtimestamp(end):%H:%M} (real Prometheus data)",
        fontsize=14,
    )
    for ax, title in zip(axes.flat, PANELS, strict=True):
        panel = panels[title]
        unit = panel["fieldConfig"]["defaults"].get("unit")
        drawn = 0
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "30s").replace("$space", space)
            for series in _range(url, expr, start, end, step):
                points = [(float(t), float(v)) for t, v in series["values"] if not math.isnan(float(v))]
                values = [v for _, v in points]
                if not points or (len(panel["targets"]) > 1 and max(values) == 0 == min(values)):
                    continue
                if "quality" in series["metric"] and max(values) == 0 and "errors" not in title:
                    continue  # the always-published zero series of unused quality/fps pairs
                times = [datetime.fromtimestamp(t) for t, _ in points]
                ax.plot(times, values, label=_legend(target["legendFormat"], series["metric"]), linewidth=1.5)
                drawn += 1
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(UNIT_LABELS.get(unit, unit or ""))
        if unit == "percentunit":
            ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        if drawn:
            ax.legend(fontsize=7, loc="upper left", ncol=2 if drawn > 4 else 1)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", help="URL of a running Prometheus scraping the exporter")
    parser.add_argument("--duration", type=float, default=150, help="seconds of data to collect (own setup)")
    parser.add_argument("--space", default=".*", help="value of the $space variable (regex)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    if args.prometheus:
        end = time.time()
        render(args.prometheus, args.out, end - args.duration, end, args.space)
        return
    with tempfile.TemporaryDirectory() as tmp:
        url, procs = _start(Path(tmp))
        try:
            start = time.time()
            print(f"collecting {args.duration:.0f} s of data from the demo exporter via {url} ...")
            time.sleep(args.duration)
            render(url, args.out, start, time.time(), args.space)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(15)


if __name__ == "__main__":
    main()
