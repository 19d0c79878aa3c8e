"""TableExecutor and the routing-table loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.executors.table import (
    ROUTELLM_STRONG,
    ROUTELLM_WEAK,
    RoutingTable,
    TableError,
    TableExecutor,
    load_routing_table,
)
from swarm_sona.routing.router import LLMRouter

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routellm_mmlu"


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "table"
    _write(d, "mmlu_algebra.csv", 'prompt,weak,strong\n"Solve x+1=2\nA. 1\nB. 2\nAnswer:",False,True\n'
                                  '"What is 3*3?",True,True\n')
    _write(d, "mmlu_history.csv", "prompt,weak,strong\nWho was first?,true,FALSE\nWhat is 3*3?,0,1\n")
    return d


def test_load_folder(folder: Path) -> None:
    t = load_routing_table(folder)
    assert t.models == ("weak", "strong")
    assert len(t) == 4
    assert t.subjects == ("algebra", "algebra", "history", "history")
    assert t.subject_names == ["algebra", "history"]
    assert t.correct.tolist() == [[False, True], [True, True], [True, False], [False, True]]
    assert t.accuracy() == {"weak": 0.5, "strong": 0.75}
    assert t.prompts[0].startswith("Solve x+1=2\nA. 1")  # multi-line quoted prompts survive
    tasks = list(t.tasks())
    assert tasks[2].task_type == "history" and tasks[2].metadata == {"row": 2}
    with pytest.raises(ValueError):
        t.correct[0, 0] = True  # read-only


def test_executor_answers_from_the_table(folder: Path) -> None:
    ex = TableExecutor(folder, prices={"weak": 1.0, "strong": 10.0}, latency_s={"strong": 2.0})
    out = ex(Task("Who was first?"), "weak", [])
    assert isinstance(out, Outcome)
    assert out.success and out.reward == 1.0 and out.output == "correct"
    # tokens = ceil(14 / 4) + 1 = 5
    assert out.cost_usd == pytest.approx(1.0 * 5 / 1e6)
    assert out.latency_s == 0.0
    out2 = ex(Task("Who was first?"), "strong", [])
    assert not out2.success and out2.reward == 0.0 and out2.latency_s == 2.0
    assert out2.cost_usd == pytest.approx(10.0 * 5 / 1e6)
    assert ex.solved("Who was first?", "weak") and not ex.solved("Who was first?", "strong")
    assert ex.cost("Who was first?", "strong") == pytest.approx(5e-5)


def test_duplicate_prompts_by_row_and_by_text(folder: Path) -> None:
    ex = TableExecutor(folder, prices={"weak": 1.0, "strong": 1.0})
    tasks = list(ex.table.tasks())
    # "What is 3*3?" appears twice with different weak outcomes: row ids are exact
    assert ex(tasks[1], "weak", []).success is True
    assert ex(tasks[3], "weak", []).success is False
    assert ex.solved("What is 3*3?", "weak") is True  # by text: the first row
    with pytest.raises(TableError, match="row"):
        ex(Task("Who was first?", metadata={"row": 0}), "weak", [])


def test_unknown_prompt_or_model(folder: Path) -> None:
    ex = TableExecutor(folder, prices={"weak": 1.0, "strong": 1.0})
    with pytest.raises(TableError, match="prompt not in the table"):
        ex(Task("never asked"), "weak", [])
    with pytest.raises(TableError, match="unknown model 'gpt-5'"):
        ex.solved("Who was first?", "gpt-5")


def test_prices_are_required_and_validated(folder: Path) -> None:
    with pytest.raises(TableError, match="no price"):
        TableExecutor(folder)  # the RouteLLM defaults do not name these models
    with pytest.raises(TableError, match="price of 'weak'"):
        TableExecutor(folder, prices={"weak": -1.0, "strong": 1.0})
    with pytest.raises(TableError, match="latency_s: unknown model"):
        TableExecutor(folder, prices={"weak": 1.0, "strong": 1.0}, latency_s={"x": 1.0})


@pytest.mark.parametrize(("files", "match"), [
    ({}, "holds no .csv file"),
    ({"a.csv": "prompt,m1,m2\nq,True,False\n", "b.csv": "prompt,m1,m3\nq,True,False\n"}, "differ"),
    ({"a.csv": "prompt,m1\nq,maybe\n"}, r"a.csv:2: expected True or False, got 'maybe'"),
    ({"a.csv": "question,m1\nq,True\n"}, "header must be prompt"),
    ({"a.csv": "prompt,m1,m2\nq,True\n"}, "expected 3 columns"),
    ({"a.csv": ""}, "empty file"),
])
def test_malformed_tables(tmp_path: Path, files: dict[str, str], match: str) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    for name, text in files.items():
        _write(d, name, text)
    with pytest.raises(TableError, match=match):
        load_routing_table(d)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="does not exist.*--data"):
        load_routing_table(tmp_path / "nope")


def test_model_specs_feed_a_router(folder: Path) -> None:
    ex = TableExecutor(folder, prices={"weak": 0.5, "strong": 15.0})
    specs = ex.model_specs({"strong": 0.9})
    assert specs[1] == {"name": "strong", "cost": 15.0, "cost_unit": "1m_tokens", "quality": 0.9}
    r = LLMRouter({"models": specs, "strategy": "quality", "exploration": "none", "output_tokens": 1}, dim=16)
    d = r.route("Who was first?")
    assert d.model == "strong" and d.estimated_cost == pytest.approx(ex.cost("Who was first?", "strong"))
    with pytest.raises(TableError, match="unknown model"):
        ex.model_specs({"nope": 0.5})


def test_in_memory_table() -> None:
    t = RoutingTable(("a", "b"), ("w", "s"), np.array([[True, False], [False, True]]), ("x", "x"))
    ex = TableExecutor(t, prices={"w": 0.0, "s": 0.0})
    assert [ex.solved(p, "s") for p in ("a", "b")] == [False, True]


@pytest.mark.skipif(not REAL.is_dir(), reason="RouteLLM MMLU data not present")
def test_real_routellm_table() -> None:
    t = load_routing_table(REAL)
    assert len(t) == 11892 and len(t.subject_names) == 47
    acc = t.accuracy()
    assert acc[ROUTELLM_WEAK] == pytest.approx(0.668, abs=5e-4)
    assert acc[ROUTELLM_STRONG] == pytest.approx(0.796, abs=5e-4)
    ex = TableExecutor(t)  # default RouteLLM prices
    task = next(t.tasks())
    assert ex(task, ROUTELLM_STRONG, []).cost_usd == pytest.approx(
        20.0 * ex.cost(task, ROUTELLM_WEAK) / 0.6)


def test_recorded_response_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('prompt,m,m::response\n"q1",True,"The answer is 4."\n"q2",False,""\n')
    table = load_routing_table(tmp_path)
    assert table.models == ("m",) and table.responses["m"] == ("The answer is 4.", "")
    assert TableExecutor(table, prices={"m": 1.0}).solved("q2", "m") is False
    (tmp_path / "a.csv").write_text('prompt,m,x::response\n"q1",True,"hi"\n')
    with pytest.raises(TableError, match="response column\\(s\\) for unknown model\\(s\\) \\['x'\\]"):
        load_routing_table(tmp_path)
