"""The run summary and report: what a swarm run did, as a table, a JSON object and an HTML page.

:class:`RunLog` (``run_log``) collects per-task results as they stream back (in any order),
per-batch retrieval and background-loop timings and per-agent adapter-drift snapshots;
:meth:`RunLog.summary` condenses them into the summary (one flat JSON-able dict);
:func:`format_summary` (``table``, with :func:`human` numbers) prints it as a table;
:func:`write_report` (``html_report``) writes ``summary.json``, the PNG plots of ``plots``
(matplotlib, the ``report`` extra) and ``index.html`` into a directory; ``bank_files`` reads an
embedded bank's pattern count and size on disk without opening it.

Summary fields: ``tasks``, ``success_rate``, ``window``, ``success_first_window``,
``success_last_window``, ``spend_usd``, ``strongest_model``, ``spend_always_strongest_usd``,
``spend_ratio``, ``routing_share`` (model -> share), ``patterns_stored``, ``patterns_reused``
(tasks that ran with at least one retrieved pattern), ``reuse_rate``,
``learning_overhead_us_median``, ``retrieval_ms_median`` (one batched retrieval call),
``retrieval_us_per_task_median``, ``elapsed_s``, ``tasks_per_s``, ``hook_failures``,
``agents`` (id -> tasks, success_rate), ``background_cycles``, ``background_ms_median``,
``learning_us_per_task`` and whatever the caller adds (topology, seed, bank...).

Learning cost: ``learning_overhead_us_median`` is the median over tasks of the instant-loop
step (each task's share of its chunk's ``learn`` call, background cycles excluded);
the background loop runs every N trajectories and is reported per cycle
(``background_ms_median``); ``learning_us_per_task`` is all learning time (instant steps
plus background cycles) divided by the tasks. ``elapsed_s`` / ``tasks_per_s`` cover the
task stream, from :meth:`RunLog.start` (the first dispatch) to :meth:`RunLog.finish`.

Example:
    >>> log = RunLog(window=2, model_costs={"small": 0.001, "large": 0.02}, strongest_model="large")
    >>> for i, ok in enumerate([False, True, True, True]):
    ...     log.add({"task_id": str(i), "agent_id": "a", "model": "small", "success": ok,
    ...              "reward": float(ok), "cost_usd": 0.001, "patterns": i % 2, "learn_s": 1e-5}, index=i)
    >>> s = log.summary()
    >>> s["success_first_window"], s["success_last_window"], s["routing_share"]
    (0.5, 1.0, {'small': 1.0})
    >>> round(s["spend_ratio"], 3)
    0.05
"""

from swarm_sona.app.report.bank_files import bank_count, dir_bytes
from swarm_sona.app.report.html_report import SUMMARY_SCHEMA_VERSION, write_report
from swarm_sona.app.report.plots import PLOTS, render_plots
from swarm_sona.app.report.run_log import SUMMARY_FIELDS, RunLog
from swarm_sona.app.report.table import format_bytes, format_summary, human, summary_rows

__all__ = ["RunLog", "format_summary", "write_report", "SUMMARY_FIELDS", "PLOTS", "human", "dir_bytes",
           "bank_count", "format_bytes", "summary_rows", "render_plots", "SUMMARY_SCHEMA_VERSION"]
