"""Listener pieces without a network: config validation, spool durability rules, job decisions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydicom import dcmread

from aspects.errors import EXIT_USAGE, InputError
from listener.config import load_config, parse_config
from listener.jobs import RUN, SEND, WAIT, app_error_line, next_action
from listener.scp import STATUS_DATASET_MISMATCH, check_instance
from listener.sender import backoff_delays
from listener.spool import Spool, atomic_write, is_uid
from tests.support.listener_dicom import write_ct_series, write_ct_without_study_uid

REPO = Path(__file__).resolve().parent.parent


def _settings(tmp_path: Path) -> dict:
    return {
        "listener": {"ae_title": "ASPECTS", "port": 11112, "allowed_calling_aets": ["CT1"]},
        "spool_dir": "spool",
        "app": {"script": str(REPO / "app.py"), "models": str(tmp_path)},
        "destination": {"ae_title": "PACS", "host": "127.0.0.1", "port": 104},
    }


def test_config_resolves_relative_paths_against_the_config_file(tmp_path):
    cfg = parse_config(_settings(tmp_path), tmp_path)
    assert cfg.spool_dir == tmp_path / "spool"
    assert cfg.destination.retries == 5 and cfg.quiet_time_s == 30.0
    assert cfg.app.warm is False  # one app process per study unless asked


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["listener"].pop("port"), "missing 'listener.port'"),
    (lambda s: s["listener"].update(ae_title="A" * 17), "not a valid AE title"),
    (lambda s: s["listener"].update(allowed_calling_aets=[]), "allowed_calling_aets' is empty"),
    (lambda s: s["destination"].update(port=70000), "TCP port"),
    (lambda s: s.update(quiet_time_s=0), "must be > 0"),
    (lambda s: s.update(spool="x"), "unknown keys ['spool']"),
    (lambda s: s["app"].update(warm="yes"), "'app.warm' must be bool"),
])
def test_config_errors_are_one_clear_line(tmp_path, edit, message):
    s = _settings(tmp_path)
    edit(s)
    with pytest.raises(InputError) as exc:
        parse_config(s, tmp_path)
    assert exc.value.code == EXIT_USAGE and message in exc.value.one_line()


def test_dry_run_validates_config_and_paths(tmp_path):
    s = _settings(tmp_path)
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(s))
    s["app"]["models"] = str(tmp_path / "no-such-models")  # allowed: the app falls back to the atlas
    (tmp_path / "no-models.yaml").write_text(yaml.safe_dump(s))
    s["app"]["script"] = str(tmp_path / "no-such-app.py")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(s))
    run = lambda name: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "listener", "--config", str(tmp_path / name), "--dry-run"],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    ok, no_models, bad = run("ok.yaml"), run("no-models.yaml"), run("bad.yaml")
    assert ok.returncode == 0, ok.stderr
    assert no_models.returncode == 0, no_models.stderr
    assert "config OK: AE ASPECTS" in ok.stdout and "0 study/studies" in ok.stdout
    assert bad.returncode == EXIT_USAGE
    assert bad.stderr.strip().splitlines() == [f"error[2]: listener config: app script not found: {tmp_path}/no-such-app.py"]
    assert not (tmp_path / "spool").exists()  # --dry-run creates nothing


def test_load_config_reports_invalid_yaml(tmp_path):
    (tmp_path / "l.yaml").write_text("listener: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(tmp_path / "l.yaml")


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "state.json"
    atomic_write(p, b"old")
    atomic_write(p, b"new contents")
    assert p.read_bytes() == b"new contents"
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]


def test_spool_stores_by_study_and_sop_uid_and_rejects_unsafe_names(tmp_path):
    sp = Spool(tmp_path)
    path, new = sp.store_instance("1.2.3", "1.2.3.4", b"x")
    assert path == tmp_path / "1.2.3" / "incoming" / "1.2.3.4.dcm" and new
    assert sp.store_instance("1.2.3", "1.2.3.4", b"y") == (path, False)
    assert sp.studies() == ["1.2.3"] and sp.instances("1.2.3") == [path]
    for bad in ("../etc", "1.2.3/4", "", "1." * 40):
        assert not is_uid(bad)
        with pytest.raises(ValueError):
            sp.store_instance("1.2.3", bad, b"x")
    (tmp_path / "1.2.3" / "incoming" / ".1.2.3.5.dcm.abc.tmp").write_bytes(b"partial")
    assert sp.remove_temp_files() == 1 and sp.instances("1.2.3") == [path]


def test_next_action_decision_table():
    q = 10.0
    assert next_action(None, 5, 3.0, q, False) == WAIT  # still receiving
    assert next_action(None, 5, 12.0, q, False) == RUN
    assert next_action(None, 0, 99.0, q, False) == WAIT
    assert next_action({"state": "processing"}, 5, 12.0, q, False) == RUN  # interrupted run
    assert next_action({"state": "sending"}, 5, 0.0, q, False) == SEND  # never re-run
    assert next_action({"state": "sent", "input_instances": 5}, 5, 99.0, q, False) == WAIT
    assert next_action({"state": "sent", "input_instances": 5}, 6, 99.0, q, False) == RUN  # late instance
    assert next_action({"state": "failed", "input_instances": 5}, 5, 99.0, q, False) == WAIT  # kept
    assert next_action({"state": "failed", "input_instances": 5, "exit_code": 4}, 5, 99.0, q, True) == RUN
    assert next_action({"state": "failed", "input_instances": 5, "exit_code": 0, "results": [{}]},
                       5, 99.0, q, True) == SEND  # send failure: resend, do not re-run


def test_app_error_line_prefers_the_apps_one_line_error():
    text = "loading\nINFO step 2\nerror[4]: no head NCCT series in the input\n"
    assert app_error_line(text) == "error[4]: no head NCCT series in the input"
    assert app_error_line("a\nTraceback\nKeyError: 'x'\n") == "KeyError: 'x'"
    assert app_error_line("") is None


def test_backoff_doubles_and_is_capped():
    assert backoff_delays(5, 2.0, 10.0) == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delays(0, 2.0, 10.0) == []


def test_check_instance_accepts_ct_and_names_what_is_missing(tmp_path):
    ct = dcmread(write_ct_series(tmp_path / "ct", 1)[0])
    ts = str(ct.file_meta.TransferSyntaxUID)
    assert check_instance(ct, ts, ct.SOPInstanceUID) is None
    status, reason, _ = check_instance(ct, ts, "1.2.3")
    assert (status, reason) == (STATUS_DATASET_MISMATCH, "uid-mismatch")
    nostudy = dcmread(write_ct_without_study_uid(tmp_path / "x.dcm"))
    assert check_instance(nostudy, ts, nostudy.SOPInstanceUID)[1] == "missing-uid"
    ct.PixelData = ct.PixelData[:100]
    assert check_instance(ct, ts, ct.SOPInstanceUID)[1] == "truncated"


def test_status_lists_the_spool(tmp_path):
    s = _settings(tmp_path)
    (tmp_path / "l.yaml").write_text(yaml.safe_dump(s))
    sp = Spool(tmp_path / "spool")
    sp.store_instance("1.2.3", "1.2.3.4", b"x")
    sp.write_state("1.2.3", {"state": "failed", "reason": "app exited with code 4", "run": 1})
    r = subprocess.run([sys.executable, "-m", "listener", "--config", str(tmp_path / "l.yaml"), "--status"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0
    assert "1 study/studies" in r.stdout and "failed" in r.stdout and "app exited with code 4" in r.stdout
    assert json.loads((tmp_path / "spool" / "1.2.3" / "state.json").read_text())["state"] == "failed"
