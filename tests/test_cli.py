"""The `leadscore` command: synth and train (serve is exercised as a real process in test_e2e.py)."""

from __future__ import annotations

import json
from importlib import metadata

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from leadscore.api.security import generate_key, parse_keys
from leadscore.cli import app
from leadscore.model.bundle import MANIFEST_FILE, Manifest, load_bundle
from leadscore.model.saved import ONEDAL_FILE
from leadscore.training.contract import OUTCOME, read_table
from leadscore.training.synth import synthesize, write_table


@pytest.fixture
def runner() -> CliRunner:
    """A CLI runner (stdout and stderr captured apart)."""
    return CliRunner()


@pytest.fixture
def training_file(tmp_path):
    """A small synthetic training file."""
    path = tmp_path / "train.parquet"
    write_table(synthesize(800, seed=5), path)
    return path


@pytest.mark.parametrize("name", ["leads.parquet", "leads.csv"])
def test_synth_writes_a_file(runner, tmp_path, name):
    """`leadscore synth` writes the requested number of rows, with an outcome, as Parquet or CSV."""
    out = tmp_path / "nested" / name
    result = runner.invoke(app, ["synth", "--out", str(out), "--rows", "120", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert f"wrote 120 rows to {out}" in result.stdout
    table = read_table(out)
    assert table.num_rows == 120
    assert OUTCOME in table.column_names


def test_synth_is_deterministic(runner, tmp_path):
    """The same seed writes the same data."""
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (first, second):
        assert runner.invoke(app, ["synth", "--out", str(out), "--rows", "50", "--seed", "9"]).exit_code == 0
    assert pq.read_table(first).equals(pq.read_table(second))


def test_train_writes_a_bundle_and_prints_metrics(runner, tmp_path, training_file):
    """`leadscore train` writes a loadable bundle and prints its version and held-out metrics as JSON."""
    out = tmp_path / "bundle"
    result = runner.invoke(
        app,
        ["train", str(training_file), "--out", str(out), "--rounds", "3", "--max-depth", "2", "--version", "cli-1"],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["version"] == "cli-1"
    assert printed["bundle"] == str(out)
    assert {"log_loss", "accuracy", "macro_auc", "rows", "train_rows"} <= set(printed["metrics"])
    assert "confusion_matrix" not in printed["metrics"]
    scorer = load_bundle(out)
    assert scorer.version == "cli-1"
    assert scorer.manifest.metrics["accuracy"] == printed["metrics"]["accuracy"]
    assert scorer.manifest.num_boost_round == 3
    assert scorer.manifest.training_data["source"] == "train.parquet"


def test_train_on_csv_with_reference_time(runner, tmp_path):
    """Training reads CSV too, and --as-of (naive means UTC) is recorded as the recency reference."""
    data = tmp_path / "train.csv"
    write_table(synthesize(400, seed=6), data)
    out = tmp_path / "bundle"
    result = runner.invoke(
        app, ["train", str(data), "--out", str(out), "--rounds", "2", "--max-depth", "2", "--as-of", "2025-06-01T00:00"]
    )
    assert result.exit_code == 0, result.output
    manifest = Manifest.from_json((out / MANIFEST_FILE).read_text())
    assert manifest.training_data["as_of"] == "2025-06-01T00:00:00+00:00"


def test_train_reads_a_csv_excel_saved_on_windows_with_its_encoding(runner, tmp_path):
    """A Windows-1252 CSV fails as UTF-8 naming --encoding, and trains with --encoding cp1252."""
    data = tmp_path / "excel.csv"
    write_table(synthesize(400, seed=6), tmp_path / "utf8.csv")
    text = (tmp_path / "utf8.csv").read_text("utf-8")
    accented = text.replace("Director of Marketing", "Directeur Général du Marketing")
    assert accented != text
    data.write_bytes(accented.encode("cp1252"))
    tiny = ["--rounds", "2", "--max-depth", "2"]
    refused = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "no"), *tiny])
    assert refused.exit_code == 2
    assert "the file is not UTF-8: name its encoding with --encoding" in refused.stderr
    assert not (tmp_path / "no").exists()
    trained = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "b"), "--encoding", "cp1252", *tiny])
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "b" / MANIFEST_FILE).is_file()


def test_train_without_outcome_fails_clearly(runner, tmp_path):
    """Training data without an `outcome` column fails with exit code 2 and a message naming the column."""
    data = tmp_path / "no-outcome.parquet"
    write_table(synthesize(100, seed=5).drop_columns([OUTCOME]), data)
    result = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 2
    assert "no `outcome` column" in result.stderr
    assert not (tmp_path / "bundle").exists()


def test_train_on_missing_file_fails_clearly(runner, tmp_path):
    """A training file that does not exist fails with exit code 2 naming it."""
    result = runner.invoke(app, ["train", str(tmp_path / "nope.parquet")])
    assert result.exit_code == 2
    assert "error: no such file" in result.stderr


def test_train_with_bad_reference_time_fails_clearly(runner, training_file, tmp_path):
    """An --as-of that is not ISO 8601 fails with exit code 2 and says what was expected."""
    result = runner.invoke(app, ["train", str(training_file), "--out", str(tmp_path / "b"), "--as-of", "last tuesday"])
    assert result.exit_code == 2
    assert "--as-of" in result.stderr


def test_train_on_unreadable_file_fails_clearly(runner, tmp_path):
    """A file that is not Parquet fails with exit code 2 and a message naming it, not a traceback."""
    data = tmp_path / "broken.parquet"
    data.write_bytes(b"this is not parquet")
    result = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 2
    assert f"error: cannot read {data} as Parquet" in result.stderr


TINY_TRAIN = ["--rounds", "2", "--max-depth", "2", "--version", "cli-t"]


def test_train_refuses_to_overwrite_a_bundle_without_force(runner, tmp_path, training_file):
    """A second train to the same --out fails before training and keeps the first bundle; --force replaces it."""
    out = tmp_path / "bundle"
    assert runner.invoke(app, ["train", str(training_file), "--out", str(out), *TINY_TRAIN]).exit_code == 0
    first = (out / MANIFEST_FILE).read_text()
    again = runner.invoke(app, ["train", str(training_file), "--out", str(out), "--rounds", "3"])
    assert again.exit_code == 2
    assert "already a model bundle; pass --force" in again.stderr
    assert (out / MANIFEST_FILE).read_text() == first
    forced = runner.invoke(app, ["train", str(training_file), "--out", str(out), "--rounds", "3", "--force"])
    assert forced.exit_code == 0, forced.output
    assert Manifest.from_json((out / MANIFEST_FILE).read_text()).num_boost_round == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "train.parquet"]


def test_train_refuses_an_out_that_is_a_file_before_reading_the_data(runner, tmp_path):
    """--out naming a file fails at once (the data file is not even read)."""
    out = tmp_path / "model.json"
    out.write_text("{}")
    data = tmp_path / "broken.parquet"
    data.write_bytes(b"not parquet")
    result = runner.invoke(app, ["train", str(data), "--out", str(out)])
    assert result.exit_code == 2
    assert "is a file, not a bundle directory" in result.stderr


def test_train_reports_progress_on_stderr(runner, tmp_path, training_file):
    """Training prints its phases and boosting rounds on stderr; stdout keeps only the JSON result."""
    result = runner.invoke(app, ["train", str(training_file), "--out", str(tmp_path / "b"), "--rounds", "20"])
    assert result.exit_code == 0, result.output
    assert "checked 800 rows" in result.stderr
    assert "round 10/20 (50%)" in result.stderr
    assert "round 20/20 (100%)" in result.stderr
    json.loads(result.stdout)


def test_train_refuses_a_csv_with_a_bad_boolean_naming_the_row(runner, tmp_path):
    """A CSV whose existing_customer has a `maybe` fails with exit 2 naming row and field, and writes no bundle."""
    data = tmp_path / "leads.csv"
    write_table(synthesize(50, seed=2, missing_rate=0.0), data)
    header, *lines = data.read_text().splitlines()
    column = header.split(",").index('"existing_customer"')
    cells = lines[6].split(",")
    cells[column] = "maybe"
    lines[6] = ",".join(cells)
    data.write_text("\n".join([header, *lines]) + "\n")
    result = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "row 7, existing_customer: Input should be a valid boolean" in result.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("name", ["x.json", "x"])
def test_synth_refuses_a_suffix_it_does_not_write(runner, tmp_path, name):
    """`synth --out x.json` fails saying which suffixes it writes, and writes nothing."""
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / name), "--rows", "20"])
    assert result.exit_code == 2
    assert ".parquet or .csv" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_version_prints_the_package_version(runner):
    """`leadscore --version` prints the installed version and exits 0."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"leadscore {metadata.version('leadscore')}"


def test_tools_run_in_prod_without_api_keys(runner, tmp_path, monkeypatch):
    """With LEADSCORE_ENV=prod and no keys, synth, train, keys list and --version still work: keys are for serving."""
    monkeypatch.setenv("LEADSCORE_ENV", "prod")
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    monkeypatch.delenv("LEADSCORE_API_KEYS_FILE", raising=False)
    data = tmp_path / "d.parquet"
    assert runner.invoke(app, ["synth", "--out", str(data), "--rows", "300"]).exit_code == 0
    assert runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "b"), *TINY_TRAIN]).exit_code == 0
    assert runner.invoke(app, ["keys", "list"]).exit_code == 0
    assert runner.invoke(app, ["--version"]).exit_code == 0


@pytest.fixture
def two_keys() -> list[str]:
    """Two fresh key entries (id:label:sha256)."""
    return [generate_key(label)[1].entry() for label in ("crm-sync", "reports")]


def test_keys_list_shows_ids_labels_and_sources_but_no_hashes(runner, tmp_path, two_keys):
    """`keys list` names each key of the variable and of the file with its source, never its hash."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# mounted secret\n{two_keys[1]}\n")
    result = runner.invoke(
        app, ["keys", "list", "--keys-file", str(keys_file)], env={"LEADSCORE_API_KEYS": two_keys[0]}
    )
    assert result.exit_code == 0, result.output
    ids = [entry.split(":")[0] for entry in two_keys]
    assert f"{ids[0]}  crm-sync  LEADSCORE_API_KEYS" in result.stdout
    assert f"{ids[1]}  reports   {keys_file}" in result.stdout
    assert not any(entry.split(":")[2] in result.stdout for entry in two_keys)


def test_keys_list_as_json(runner, two_keys):
    """`keys list --output json` prints the keys as JSON objects."""
    result = runner.invoke(app, ["keys", "list", "--output", "json"], env={"LEADSCORE_API_KEYS": ",".join(two_keys)})
    assert [k["label"] for k in json.loads(result.stdout)] == ["crm-sync", "reports"]


def test_an_output_format_outside_its_choices_is_refused(runner):
    """`--output xml` is a usage error, not silently a table."""
    result = runner.invoke(app, ["keys", "list", "--output", "xml"])
    assert result.exit_code == 2
    assert "'xml' is not one of" in " ".join(result.output.replace("│", " ").split())


def test_keys_revoke_edits_the_keys_file_keeping_the_rest(runner, tmp_path, two_keys):
    """Revoking a key of the keys file removes its entry only; comments and the other key stay."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# mounted secret\n{two_keys[0]}  # sync job\n{two_keys[1]}\n")
    key_id = two_keys[0].split(":")[0]
    result = runner.invoke(app, ["keys", "revoke", key_id, "--keys-file", str(keys_file)])
    assert result.exit_code == 0, result.output
    assert keys_file.read_text() == f"# mounted secret\n# sync job\n{two_keys[1]}\n"
    assert [k.key_id for k in parse_keys(keys_file.read_text())] == [two_keys[1].split(":")[0]]


def test_keys_revoke_prints_the_new_variable_value(runner, two_keys):
    """Revoking a key of LEADSCORE_API_KEYS prints the variable's new value, without that key."""
    result = runner.invoke(
        app, ["keys", "revoke", two_keys[0].split(":")[0]], env={"LEADSCORE_API_KEYS": ",".join(two_keys)}
    )
    assert result.exit_code == 0, result.output
    assert f"LEADSCORE_API_KEYS={two_keys[1]}" in result.stdout


def test_keys_revoke_of_an_unknown_id_fails(runner, two_keys):
    """An id that is not configured is an error naming it; nothing changes."""
    result = runner.invoke(app, ["keys", "revoke", "deadbeef"], env={"LEADSCORE_API_KEYS": two_keys[0]})
    assert result.exit_code == 2
    assert "no key deadbeef" in result.stderr


def test_revoking_the_last_key_warns_that_prod_will_not_start(runner, two_keys):
    """Removing the only key says that a prod service would refuse to start without keys."""
    result = runner.invoke(app, ["keys", "revoke", two_keys[0].split(":")[0]], env={"LEADSCORE_API_KEYS": two_keys[0]})
    assert result.exit_code == 0
    assert "no API keys are left" in result.stderr


def test_train_adds_a_category_map_file_to_the_packaged_map(runner, tmp_path, training_file):
    """`train --category-map crm.yaml` writes a bundle whose map has the file's forms and the packaged ones."""
    extra = tmp_path / "crm.yaml"
    extra.write_text("industry:\n  widgets: Manufacturing\n")
    out = tmp_path / "b"
    result = runner.invoke(
        app, ["train", str(training_file), "--out", str(out), *TINY_TRAIN, "--category-map", str(extra)]
    )
    assert result.exit_code == 0, result.output
    categories = load_bundle(out).categories
    assert categories.code("industry", "widgets") == categories.code("industry", "Manufacturing")
    assert categories.code("geography", "north_america") is not None


def test_train_refuses_a_category_map_naming_an_unknown_value(runner, tmp_path, training_file):
    """A map sending a form to a value outside the vocabulary fails the command, naming the value."""
    extra = tmp_path / "crm.json"
    extra.write_text('{"industry": {"widgets": "Gadgets"}}')
    result = runner.invoke(
        app, ["train", str(training_file), "--out", str(tmp_path / "b"), "--category-map", str(extra)]
    )
    assert result.exit_code == 2
    assert "'Gadgets', which is not one of" in result.stderr


def test_an_empty_keys_file_variable_means_no_file(runner, two_keys):
    """LEADSCORE_API_KEYS_FILE set but empty (a blank task-definition entry) is no file, as for the service."""
    result = runner.invoke(
        app, ["keys", "list"], env={"LEADSCORE_API_KEYS_FILE": "", "LEADSCORE_API_KEYS": two_keys[0]}
    )
    assert result.exit_code == 0, result.output
    assert "crm-sync" in result.stdout


def test_importance_is_recorded_in_the_manifest(runner, bundle_copy):
    """`leadscore importance` writes each field's mean |SHAP| into the bundle's manifest, which still loads."""
    manifest_path = bundle_copy / MANIFEST_FILE
    data = json.loads(manifest_path.read_text())
    data["importance"] = {}
    manifest_path.write_text(json.dumps(data))
    result = runner.invoke(app, ["importance", str(bundle_copy), "--rows", "200"])
    assert result.exit_code == 0, result.output
    recorded = Manifest.from_json(manifest_path.read_text()).importance
    assert recorded == json.loads(result.stdout)["importance"]
    assert len(recorded) == 50
    assert load_bundle(bundle_copy).manifest.importance == recorded


def test_importance_refuses_a_directory_without_a_bundle(runner, tmp_path):
    """A directory with no manifest is refused with exit code 2."""
    result = runner.invoke(app, ["importance", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a model bundle" in result.output


def test_onedal_saves_the_model_of_an_existing_bundle(runner, bundle_copy):
    """`leadscore onedal DIR` writes the oneDAL model for a bundle that has none, and the bundle then loads from it."""
    (bundle_copy / ONEDAL_FILE).unlink()
    result = runner.invoke(app, ["onedal", str(bundle_copy)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"bundle": str(bundle_copy), "saved": ONEDAL_FILE}
    assert load_bundle(bundle_copy).predictor_model_source == "bundle"


def test_onedal_refuses_a_directory_without_a_bundle(runner, tmp_path):
    """`leadscore onedal` on a directory that is not a bundle exits 2 and says what is missing."""
    result = runner.invoke(app, ["onedal", str(tmp_path)])
    assert result.exit_code == 2
    assert "missing manifest.json" in result.output
