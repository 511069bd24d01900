"""The filter job over both stores, the CLI on folders, and the process/thread pools."""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.datasets import DatasetRepository
from services.common.jobs import JobContext, JobRepository
from services.common.settings import Settings
from services.common.storage import ObjectStore, sha256_hex
from services.filter import analysis
from services.filter.params import FilterParams
from services.filter.tasks import run_filter
from tests.filter.fixtures import blurred, encoded, recompressed, rescaled, scene, with_text


def _dataset(store: ObjectStore) -> tuple[str, dict[str, str]]:
    """Four good pictures and one of each kind of reject; returns the dataset id and sha256 → role."""
    repository = DatasetRepository(store)
    dataset_id = repository.create("filter-test").id
    pictures = {f"good-{seed}": encoded(scene(seed)) for seed in range(4)}
    pictures |= {
        "exact-copy": encoded(scene(0), "BMP"),  # same pixels as good-0, other file bytes
        "near-copy": encoded(recompressed(rescaled(scene(1), 0.6)), "JPEG"),
        "blurred": encoded(blurred(scene(10))),
        "text": encoded(with_text(scene(11))),
        "tiny": encoded(scene(12, (120, 90))),
    }
    roles = {}
    for role, data in pictures.items():
        character = "Kiki" if role in ("good-0", "good-1", "good-2", "exact-copy") else "Totoro"
        record, _ = repository.add_raw_image(
            dataset_id, data, source=f"test:{role}", character=character, movie="Kiki's Delivery Service"
        )
        roles[record.sha256] = role
    return dataset_id, roles


def _run(store: ObjectStore, settings: Settings, **params: object) -> tuple[dict, JobContext]:
    job = JobRepository(store).create("filter", params)
    context = JobContext(job, FilterParams.model_validate(params), store, settings)
    return run_filter(context), context


def test_the_job_keeps_the_good_drops_the_rest_with_reasons_and_reruns_without_duplicates(
    any_store: ObjectStore, local_settings: Settings
) -> None:
    dataset_id, roles = _dataset(any_store)
    result, context = _run(any_store, local_settings, dataset_id=dataset_id)

    assert context.job.progress.step > 0
    assert result["kept"] == 4 and result["dropped"] == 5
    assert result["reasons"] == {"exact_duplicate": 1, "near_duplicate": 1, "blurry": 1, "text": 1, "too_small": 1}
    manifest = any_store.get_json(result["manifest"])
    assert manifest["dataset_id"] == dataset_id and manifest["job_id"] == context.job.id
    kept_roles = {roles[image["source_sha256"]] for image in manifest["images"]}
    # good-0 and exact-copy have the same pixels: either one is kept, never both.
    assert kept_roles - {"good-0", "exact-copy"} == {"good-1", "good-2", "good-3"}
    assert len(kept_roles & {"good-0", "exact-copy"}) == 1
    for image in manifest["images"]:
        assert image["key"] == f"images/clean/{image['sha256'][:2]}/{image['sha256']}.jpg"
        assert (image["width"], image["height"]) == (512, 512)
        assert image["character"] in ("Kiki", "Totoro") and image["movie"] == "Kiki's Delivery Service"
        assert any_store.exists(image["key"])

    report = any_store.get_json(result["report"])
    by_role = {roles[entry["source_sha256"]]: entry for entry in report["entries"]}
    twins = sorted((by_role["good-0"], by_role["exact-copy"]), key=lambda entry: entry["status"])
    assert twins[0]["reason"] == "exact_duplicate" and twins[0]["duplicate_of"] == twins[1]["source_sha256"]
    assert by_role["near-copy"]["reason"] == "near_duplicate"
    assert by_role["near-copy"]["duplicate_of"] == by_role["good-1"]["source_sha256"]
    assert by_role["blurred"]["status"] == "dropped"
    assert {row["name"]: row["kept"] for row in report["balance"]["character"]} == {"Kiki": 3, "Totoro": 1}
    page = any_store.get_bytes(result["report_html"]).decode()
    assert "near_duplicate" in page and "data:image/jpeg;base64," in page

    rerun, _ = _run(any_store, local_settings, dataset_id=dataset_id)
    assert rerun["kept"] == 4
    assert len(list(any_store.list("images/clean/"))) == 4
    assert len(any_store.get_json(rerun["manifest"])["images"]) == 4


def test_the_cap_keeps_the_sharpest_of_each_character(local_store: ObjectStore, local_settings: Settings) -> None:
    dataset_id, _ = _dataset(local_store)
    result, _ = _run(local_store, local_settings, dataset_id=dataset_id, max_per_character=2, text_detector="none")
    assert result["reasons"]["over_cap"] == 1  # Kiki had 3 good pictures
    assert {row["name"]: row["kept"] for row in result["balance"]["character"]} == {"Kiki": 2, "Totoro": 2}


def test_an_unknown_dataset_fails_with_a_clear_error(local_store: ObjectStore, local_settings: Settings) -> None:
    with pytest.raises(Exception, match="ds-missing"):
        _run(local_store, local_settings, dataset_id="ds-missing")


@pytest.mark.parametrize("daemonic", [False, True], ids=["processes", "threads-in-daemon"])
def test_parallel_analysis_matches_and_resumes_from_its_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemonic: bool
) -> None:
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", daemonic, raising=False)
    config = analysis.AnalysisConfig(FilterParams(dataset_id="x", text_detector="none"), max_pixels=10**7)
    items = [(f"{seed:064x}", (lambda seed=seed: encoded(scene(seed, (300, 300))))) for seed in range(4)]
    with analysis._make_executor(2, config) as executor:
        expected_kind = "Thread" if daemonic else "Process"
        assert type(executor).__name__.startswith(expected_kind)
    results = analysis.analyse_all(items, config, tmp_path, workers=2)
    assert sorted(results) == sorted(item_id for item_id, _ in items)
    assert all(sha256_hex(result.read_clean(tmp_path)) == result.clean_sha256 for result in results.values())
    assert len(list(tmp_path.glob("clean-*.pack"))) == 1  # four pictures, one batch: one file for their images

    def must_not_load() -> bytes:
        raise AssertionError("a cached analysis was redone")

    again = analysis.analyse_all([(item_id, must_not_load) for item_id, _ in items], config, tmp_path, workers=2)
    assert {key: value.phash for key, value in again.items()} == {key: value.phash for key, value in results.items()}


def test_a_journal_line_cut_short_by_a_crash_is_redone_and_the_rest_reused(tmp_path: Path) -> None:
    config = analysis.AnalysisConfig(FilterParams(dataset_id="x", text_detector="none"), max_pixels=10**7)
    items = [(f"{seed:064x}", (lambda seed=seed: encoded(scene(seed, (300, 300))))) for seed in range(3)]
    first = analysis.analyse_all(items, config, tmp_path, workers=1)
    journal = tmp_path / analysis.JOURNAL
    journal.write_text(journal.read_text()[:-40])  # killed while writing the last line
    loads: list[str] = []

    def loader(item_id: str, load: Callable[[], bytes]) -> Callable[[], bytes]:
        return lambda: loads.append(item_id) or load()

    again = analysis.analyse_all([(item_id, loader(item_id, load)) for item_id, load in items], config, tmp_path, 1)
    assert loads == [items[-1][0]]
    assert {key: value.phash for key, value in again.items()} == {key: value.phash for key, value in first.items()}
    assert len(analysis.load_journal(tmp_path)) == 3  # the redone line was appended after the cut one


def test_an_image_whose_pack_was_cut_short_is_redone(tmp_path: Path) -> None:
    config = analysis.AnalysisConfig(FilterParams(dataset_id="x", text_detector="none"), max_pixels=10**7)
    items = [(f"{seed:064x}", (lambda seed=seed: encoded(scene(seed, (300, 300))))) for seed in range(3)]
    first = analysis.analyse_all(items, config, tmp_path, workers=1)
    last = max(first.values(), key=lambda result: result.clean_offset)
    pack = tmp_path / (last.clean_pack or "")
    pack.write_bytes(pack.read_bytes()[:-10])  # the disk filled while the last image was written

    redone = analysis.load_journal(tmp_path)
    assert sorted(redone) == sorted(item_id for item_id, _ in items if item_id != last.item_id)
    with pytest.raises(ValueError, match="ends before"):
        last.read_clean(tmp_path)
    again = analysis.analyse_all(items, config, tmp_path, workers=1)[last.item_id]
    assert again.clean_pack != last.clean_pack  # written anew, into a pack of its own
    assert sha256_hex(again.read_clean(tmp_path)) == again.clean_sha256 == last.clean_sha256


def test_a_failed_write_starts_a_new_pack_and_damaged_bytes_are_refused(tmp_path: Path) -> None:
    class FullDisk:
        def write(self, data: bytes) -> int:
            return len(data) // 2  # the disk filled halfway through

        def close(self) -> None:
            pass

    with analysis.CleanPack(tmp_path) as pack:
        first_pack, first_offset = pack.append(b"first image")
        pack._file = FullDisk()  # type: ignore[assignment]
        with pytest.raises(OSError, match="short write"):
            pack.append(b"second image")
        second_pack, second_offset = pack.append(b"third image")
    assert (first_pack, first_offset) != (second_pack, second_offset) and second_offset == 0
    assert (tmp_path / second_pack).read_bytes() == b"third image"

    image = encoded(scene(1, (300, 300)))
    config = analysis.AnalysisConfig(FilterParams(dataset_id="x", text_detector="none"), max_pixels=10**7)
    result = analysis.analyse_all([("a" * 64, lambda: image)], config, tmp_path / "work", workers=1)["a" * 64]
    damaged = bytearray((tmp_path / "work" / (result.clean_pack or "")).read_bytes())
    damaged[result.clean_offset + result.clean_size // 2] ^= 0xFF
    (tmp_path / "work" / (result.clean_pack or "")).write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="not what was written"):
        result.read_clean(tmp_path / "work")


OWNER_SCRIPT = """
import os, time
from services.filter import analysis
from services.filter.params import FilterParams
config = analysis.AnalysisConfig(FilterParams(dataset_id="x", text_detector="none"), max_pixels=10**7)
executor = analysis._make_executor(2, config)
print(sorted({executor.submit(os.getpid).result() for _ in range(4)}), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent has not collected it


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc (Linux)")
def test_pool_workers_end_when_their_owner_is_killed() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    try:
        workers = json.loads(owner.stdout.readline())  # type: ignore[union-attr]
        assert workers and all(_running(pid) for pid in workers)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 10 * analysis.OWNER_CHECK_S
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers)


def test_the_cli_filters_a_folder(tmp_path: Path) -> None:
    source = tmp_path / "in" / "Kiki"
    source.mkdir(parents=True)
    for seed in range(3):
        (source / f"{seed}.png").write_bytes(encoded(scene(seed)))
    (source / "copy.jpg").write_bytes(encoded(scene(0), "JPEG", quality=90))
    (source / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    output = tmp_path / "out"
    outcome = CliRunner().invoke(app, ["filter", str(tmp_path / "in"), str(output), "--workers", "1"])
    assert outcome.exit_code == 0, outcome.output
    manifest = json.loads((output / "manifest.json").read_text())
    assert len(manifest["images"]) == 3 and {image["character"] for image in manifest["images"]} == {"Kiki"}
    assert len(list((output / "images").iterdir())) == 3
    assert manifest["counts"]["undecodable"] == 1 and manifest["counts"]["near_duplicate"] == 1
    assert (output / "report.html").read_text().count("<figure") == 5


def test_the_cli_needs_a_dataset_with_api() -> None:
    outcome = CliRunner().invoke(app, ["filter", "--api", "http://127.0.0.1:9"])
    assert outcome.exit_code == 2 and "--dataset" in outcome.output
