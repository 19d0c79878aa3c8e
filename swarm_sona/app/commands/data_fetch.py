"""``swarm-sona data fetch routellm DIR``: the RouteLLM MMLU outcomes, downloaded and verified.

The routing benchmarks (``swarm-sona bench routing|ablation|shift --data DIR``) read RouteLLM's
MMLU response files: per prompt, whether Mixtral-8x7B-Instruct and GPT-4-1106 answered it
correctly (``mmlu_<subject>.csv``; the 47 subjects, 11,892 prompts the project's benchmarks
use; Apache-2.0). They come from the RouteLLM repository (github.com/lm-sys/RouteLLM, folder
``routellm/evals/mmlu/responses/``) at the pinned commit :data:`ROUTELLM_COMMIT`; every file is
checked against the SHA-256 kept here (:data:`ROUTELLM_FILES`) before it is kept.

A file already in DIR with the right checksum is not downloaded again; one with another checksum
is replaced (``--force`` downloads everything). A download goes to ``NAME.part`` and is renamed
only once verified, so DIR never holds a partial or unverified file. Offline (the source cannot
be reached) the command exits 1 with the manual steps. ``--source URL`` reads from a mirror (or
a ``file://`` copy) laid out like the repository.

Example:
    >>> len(ROUTELLM_FILES), sorted(ROUTELLM_FILES)[0]
    (48, 'LICENSE')
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TextIO

__all__ = ["add_arguments", "run", "FetchReport", "fetch_routellm", "ROUTELLM_COMMIT", "ROUTELLM_SOURCE",
           "ROUTELLM_FILES", "DataFetchError"]

ROUTELLM_COMMIT = "0b64fdafe049e596a3f5657c219329f24af24198"
ROUTELLM_SOURCE = f"https://raw.githubusercontent.com/lm-sys/RouteLLM/{ROUTELLM_COMMIT}/"

# path in the repository -> SHA-256 of the file at ROUTELLM_COMMIT
ROUTELLM_FILES: dict[str, str] = {
    "routellm/evals/mmlu/responses/mmlu_abstract_algebra.csv": "67e564eea42e71fbfcaf616972df952c316e5538376da1c16d691177458b96b9",
    "routellm/evals/mmlu/responses/mmlu_anatomy.csv": "53ebea8257805eeecc25713728264b8235cffad7b720962a3eafc92fd27ef537",
    "routellm/evals/mmlu/responses/mmlu_business_ethics.csv": "13a45bed754ffe8f0e7f0348e69085c648a1ae0e91aa76cd5e6906fa45f7ec8e",
    "routellm/evals/mmlu/responses/mmlu_clinical_knowledge.csv": "5ea37709bfbad4df7a3fcbd8973413f7645a2adfef9772490f09d3f293ffe882",
    "routellm/evals/mmlu/responses/mmlu_college_biology.csv": "c38620db5b9f6f1b0fde7bc8d8299b8e2305c4dacbb1567c904cd51618d627d5",
    "routellm/evals/mmlu/responses/mmlu_college_chemistry.csv": "78ca6ba22ff25c8fdb93e1c6e84384e72522106c73ed5ee9fed620928ce395ce",
    "routellm/evals/mmlu/responses/mmlu_college_computer_science.csv": "8a7b2a87a36b428c9d1a8f12ce3b01cf7920f0a7146d6f8a111da6749c332da3",
    "routellm/evals/mmlu/responses/mmlu_college_medicine.csv": "63d71d29e630fc6538e1705a51f4267bdbbdea0fa7ee85056ad7d6f8f10d3987",
    "routellm/evals/mmlu/responses/mmlu_college_physics.csv": "8162a0660d4ef7b963088e0a176d4b8630096127a0d0b5ed003f649cbad34455",
    "routellm/evals/mmlu/responses/mmlu_computer_security.csv": "26446faf7460f03aa2d82a05c170faedb5cbf6d7bdda133b1146229107097d1c",
    "routellm/evals/mmlu/responses/mmlu_conceptual_physics.csv": "ea40473704b64cb60d564ffe91962848ec6fc3106b40089d08cebc98d5c7226d",
    "routellm/evals/mmlu/responses/mmlu_econometrics.csv": "927b4d877cec8697f3b8378bb7e7c7a279babaea2edacf350ea50908701907b9",
    "routellm/evals/mmlu/responses/mmlu_elementary_mathematics.csv": "88697ff0d238b5852c7a959379dc8b0b45c3554ed4b2ee7cbb7ffc34e06c7cf5",
    "routellm/evals/mmlu/responses/mmlu_formal_logic.csv": "094a462626468569ad595c03e66e73a299188cfa175248b499dba94e005506e6",
    "routellm/evals/mmlu/responses/mmlu_global_facts.csv": "6f75ddf7d6eb94ac0471529a85ff7f8b738c9f4055185b3114eed26393222d06",
    "routellm/evals/mmlu/responses/mmlu_high_school_biology.csv": "444982fc2c750ab8cbc6942a0c0267040aa5023c1d2364247d20e2a28b4e325d",
    "routellm/evals/mmlu/responses/mmlu_high_school_chemistry.csv": "ae5e62479365dcd056354c568f60da65b1df9f1de57dda3953a8e9933a6f12e4",
    "routellm/evals/mmlu/responses/mmlu_high_school_european_history.csv": "c64afd6c5e30ef0cd5c10beab961ac05e7ba55d6b48cd93bf6ad0a45f90515bf",
    "routellm/evals/mmlu/responses/mmlu_high_school_geography.csv": "21b12044be4a6b9813880ad46372006dc0846e7f85fa46883bb73dbd90fba30a",
    "routellm/evals/mmlu/responses/mmlu_high_school_government_and_politics.csv": "2791689acc61775a5857f4f3a5fd248d30552553c3a96f6ee63dc28285437259",
    "routellm/evals/mmlu/responses/mmlu_high_school_macroeconomics.csv": "73b931a2a06ba74a5c9f1e005d45a25004e36be5d075d98f8ebcf89b3fda367b",
    "routellm/evals/mmlu/responses/mmlu_high_school_mathematics.csv": "151b2a736981b7b20f3bad99de6a573e4692d68cf87020e943b601b70bb37390",
    "routellm/evals/mmlu/responses/mmlu_high_school_physics.csv": "1e2103fc8f7f1cfac7c00952b26db2418acab092486af78a9c51c551ae2ff9be",
    "routellm/evals/mmlu/responses/mmlu_high_school_psychology.csv": "d11604f2c7a2425258d5b9a285ef71737c011cc3a91456890f088a0ee4c55212",
    "routellm/evals/mmlu/responses/mmlu_high_school_statistics.csv": "de6642bcd93d7a80e7bbd73d987a44d67b6e537b47749ddc518122fd582703bb",
    "routellm/evals/mmlu/responses/mmlu_high_school_us_history.csv": "a71186d143363e203b2f216d78c9d21f10cca51de455ef176c9c01b77f546592",
    "routellm/evals/mmlu/responses/mmlu_high_school_world_history.csv": "e9c52305977dc37b3e48eee727ad933b2d24d96ca3a06aec865a8900b1e87d2c",
    "routellm/evals/mmlu/responses/mmlu_human_sexuality.csv": "20916037e3012731883f926738daf47ed994f74ba25518fdb7f0df72a81143fd",
    "routellm/evals/mmlu/responses/mmlu_international_law.csv": "e389b886e3e1570bfdf798f6f56dc3c675350200c5baf0f41a0766294ff312eb",
    "routellm/evals/mmlu/responses/mmlu_jurisprudence.csv": "7e94c3849231be7b2654db11e44ee51531f8474e300fe83b1e05438df3038f0b",
    "routellm/evals/mmlu/responses/mmlu_logical_fallacies.csv": "fa2d94cd2e901621aaebd0a7e64560b5dbbe4249086795398533eed2561c0c1e",
    "routellm/evals/mmlu/responses/mmlu_machine_learning.csv": "9301e928481be6e20b3541e1ac112b25a4a71338b21592978c0d219cb6240020",
    "routellm/evals/mmlu/responses/mmlu_marketing.csv": "3ee0b6560ebe0eb4f14ce63227d6f6ec8cb8b6e57e345eae9460be742672f36c",
    "routellm/evals/mmlu/responses/mmlu_medical_genetics.csv": "7c830f87dcbc0029137b3400cf361931831cb57dda55717a64e72ad74663d5df",
    "routellm/evals/mmlu/responses/mmlu_miscellaneous.csv": "c2e1a5b0394a8429f55b6340e1865166ac17ec6b3571523005e413b3b2843b9f",
    "routellm/evals/mmlu/responses/mmlu_moral_disputes.csv": "8b2b973b1987b724f39fd10970604d7f1150747a0db9ce766c193bd978c9d0c4",
    "routellm/evals/mmlu/responses/mmlu_moral_scenarios.csv": "78ded6fdca1cd0d5c4ed16a5ed4aebf2e98401b9c00b20e565e6cce5bf1153c7",
    "routellm/evals/mmlu/responses/mmlu_philosophy.csv": "2f30ad01ab529ddea00dff4ff87e950fef838a78754c94f6884120628a7d0591",
    "routellm/evals/mmlu/responses/mmlu_prehistory.csv": "afc816d4b78814627bae9b8c3730a9bb72bd958ff6259fd36c981777cfe83753",
    "routellm/evals/mmlu/responses/mmlu_professional_accounting.csv": "fe5ee976a625832ecf624086103619523d063a3a728c60681b6a53c55b638a37",
    "routellm/evals/mmlu/responses/mmlu_professional_law.csv": "60a4308df4f481ff8840590b29061835207b50a9f06a9fc68baf12b114f7e2e0",
    "routellm/evals/mmlu/responses/mmlu_professional_medicine.csv": "6fda30b523e4e2ce8b1f18e871a0722190a4ac81ec377a75fbba4a63e0b510f7",
    "routellm/evals/mmlu/responses/mmlu_public_relations.csv": "2196279ea2535fbda62509c3156209b764459a3d515a9ba84b69cf16bb4c27d0",
    "routellm/evals/mmlu/responses/mmlu_security_studies.csv": "1354bb17649f95b7dd8ef3179e22329abe6bef84e639d63370ae9e80b2509905",
    "routellm/evals/mmlu/responses/mmlu_sociology.csv": "903ba6259b13f2877607abef22b7b19cb575104268d4ced615e3129d3caafb47",
    "routellm/evals/mmlu/responses/mmlu_us_foreign_policy.csv": "f1c1d266753a3f161e2018c16c6948fb78c7f5e506a10b4fc0441049962a6c69",
    "routellm/evals/mmlu/responses/mmlu_virology.csv": "d525f1ba88982befd42140e73822fe940e73db82bbdcdd569d95f26c3dd41e68",
    "LICENSE": "43070e2d4e532684de521b885f385d0841030efa2b1a20bafb76133a5e1379c1",
}

_CHUNK = 1 << 16


class DataFetchError(RuntimeError):
    """A download that could not be completed (offline, missing file, checksum mismatch)."""


@dataclasses.dataclass(frozen=True)
class FetchReport:
    """What a fetch did: ``fetched`` (downloaded and verified now), ``kept`` (already present and
    verified), ``directory`` and ``source``."""

    directory: str
    source: str
    fetched: tuple[str, ...]
    kept: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """Plain data (JSON-ready)."""
        return {"schema_version": 1, **dataclasses.asdict(self)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``swarm-sona data fetch routellm DIR [--source URL] [--force] [--json]``."""
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    fetch = sub.add_parser("fetch", help="download a data set into a directory, verified by checksums",
                           description="Download a data set (routellm: RouteLLM's MMLU outcomes, 47 files + LICENSE) "
                                       "into DIR, each file verified by the SHA-256 kept in swarm_sona.")
    fetch.add_argument("dataset", choices=("routellm",), help="the data set")
    fetch.add_argument("directory", metavar="DIR", help="where the files go (created)")
    fetch.add_argument("--source", metavar="URL", default=ROUTELLM_SOURCE,
                       help="base URL laid out like the RouteLLM repository (default: its pinned commit on GitHub)")
    fetch.add_argument("--force", action="store_true", help="download every file again")
    fetch.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per connection (default 30)")
    fetch.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona data``."""
    if getattr(args, "data_command", None) != "fetch":
        sys.stderr.write("swarm-sona data: give a subcommand: fetch routellm DIR\n")
        return 2
    if args.timeout <= 0:
        raise ValueError(f"--timeout: must be > 0, got {args.timeout}")
    try:
        report = fetch_routellm(args.directory, source=args.source, force=args.force, timeout_s=args.timeout,
                                progress=None if args.json else sys.stderr)
    except DataFetchError as exc:
        sys.stderr.write(f"swarm-sona: error: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"{report.directory}: {len(report.fetched)} file(s) downloaded, {len(report.kept)} already "
                         f"present, all {len(ROUTELLM_FILES)} verified (SHA-256)\n"
                         f"use it with: swarm-sona bench routing --data {report.directory}\n")
    return 0


def fetch_routellm(directory: str | os.PathLike[str], *, source: str = ROUTELLM_SOURCE, force: bool = False,
                   timeout_s: float = 30.0, progress: TextIO | None = None,
                   files: Mapping[str, str] | None = None) -> FetchReport:
    """Download ``files`` (path in the repository -> SHA-256; default :data:`ROUTELLM_FILES`) from
    ``source`` into ``directory`` (flat: file names only), verifying each; a
    :class:`DataFetchError` says what failed (offline: with the manual steps).

    Example:
        >>> fetch_routellm("/tmp/x", source="file:///nonexistent/")   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        swarm_sona.app.commands.data_fetch.DataFetchError: cannot read file:///nonexistent/LICENSE: ...
    """
    d = Path(directory)
    base = source if source.endswith("/") else source + "/"
    fetched: list[str] = []
    kept: list[str] = []
    for rel, digest in sorted((ROUTELLM_FILES if files is None else files).items()):
        name = PurePosixPath(rel).name
        target = d / name
        if not force and target.is_file() and _sha256(target) == digest:
            kept.append(name)
            continue
        d.mkdir(parents=True, exist_ok=True)
        _download(base + rel, target, digest, timeout_s)
        fetched.append(name)
        if progress is not None:
            progress.write(f"  {name} ok\n")
    return FetchReport(directory=str(d), source=base, fetched=tuple(fetched), kept=tuple(kept))


def _download(url: str, target: Path, digest: str, timeout_s: float) -> None:
    part = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(part, "wb") as out:
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise DataFetchError(_unreachable(url, exc)) from exc
    if h.hexdigest() != digest:
        part.unlink(missing_ok=True)
        raise DataFetchError(f"{url}: checksum mismatch (SHA-256 {h.hexdigest()}, expected {digest}); "
                             "nothing was kept for this file")
    os.replace(part, target)


def _unreachable(url: str, exc: Exception) -> str:
    why = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
    return (f"cannot read {url}: {why}. Offline? Fetch the files by hand on a connected machine: "
            f"git clone https://github.com/lm-sys/RouteLLM && git -C RouteLLM checkout {ROUTELLM_COMMIT[:12]} && "
            "cp RouteLLM/routellm/evals/mmlu/responses/mmlu_*.csv RouteLLM/LICENSE DIR, "
            "then run this command again: it verifies the copies and downloads nothing")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
