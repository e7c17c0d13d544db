"""Cross-validation runner, fold assignment, leakage guards and double transfer learning (axial_monai.crossval).

The data: a small Clinica-style BIDS tree written here (``participants.tsv``, ``sessions.tsv`` and tiny 3D NIfTI
volumes), labelled with :mod:`axial_monai.data.clinica` for both tasks. MCI converters have AD sessions too,
so they are in both tables, as in ADNI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

import axial_monai.crossval.runner as runner
from axial_monai.configs import config_path
from axial_monai.crossval import (
    LEVELS,
    assign_folds,
    baseline_scans,
    check_no_leakage,
    check_transfer_leakage,
    level_scores,
    make_folds,
    run_cross_validation,
    split_fold,
)
from axial_monai.crossval.__main__ import main as crossval_main
from axial_monai.data.clinica import clinica_task_table
from axial_monai.errors import SettingsError
from axial_monai.metrics import METRICS, classification_scores
from axial_monai.networks import AxialNet, MeanPoolNet, init_from_checkpoint
from axial_monai.run import load_weights

K = 3
TINY = {"num_slices": 4, "image_size": 32, "batch_size": 2, "num_workers": 0, "epochs": 1}
#: subject -> [(session, diagnosis)]: 6 CN, 4 AD, 4 converters (pMCI, with AD sessions), 4 stable MCI
DESIGN = {
    **{f"sub-CN{i:02d}": [("ses-M000", "CN"), ("ses-M012", "CN")] for i in range(1, 7)},
    **{f"sub-AD{i:02d}": [("ses-M000", "AD"), ("ses-M012", "AD")] for i in range(1, 5)},
    **{
        f"sub-CV{i:02d}": [("ses-M000", "MCI"), ("ses-M012", "MCI"), ("ses-M036", "AD"), ("ses-M048", "AD")]
        for i in range(1, 5)
    },
    **{f"sub-ST{i:02d}": [("ses-M000", "MCI"), ("ses-M036", "MCI")] for i in range(1, 5)},
}


def _volume(seed: int) -> nib.Nifti1Image:
    """A 20 x 24 x 20 "brain": a noisy positive ellipsoid on a zero background, 4 mm voxels."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in (20, 24, 20)), indexing="ij"))
    inside = (grid**2).sum(0) < 0.8
    data = np.where(inside, rng.uniform(0.2, 1.0, inside.shape), 0.0).astype(np.float32)
    return nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0]))


def write_tree(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "participants.tsv").write_text("participant_id\n" + "\n".join(DESIGN) + "\n")
    for number, (subject, sessions) in enumerate(DESIGN.items()):
        (root / subject).mkdir()
        lines = ["session_id\tdiagnosis"] + [f"{s}\t{d}" for s, d in sessions]
        (root / subject / f"{subject}_sessions.tsv").write_text("\n".join(lines) + "\n")
        for visit, (session, _) in enumerate(sessions):
            anat = root / subject / session / "anat"
            anat.mkdir(parents=True)
            nib.save(_volume(100 * number + visit), anat / f"{subject}_{session}_T1w.nii.gz")
    return root


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    bids = write_tree(tmp_path_factory.mktemp("cv") / "bids")
    return bids, clinica_task_table(bids, "ADvsCN"), clinica_task_table(bids, "pMCIvsSMCI")


@pytest.fixture(scope="module")
def adcn_run(tables, tmp_path_factory):
    """AD vs CN, 3 folds x 1 epoch, folds assigned jointly with the MCI subjects."""
    _, adcn, mci = tables
    out = tmp_path_factory.mktemp("cv") / "adcn"
    run_cross_validation(adcn, out, k=K, seed=0, overrides=TINY, assign_with=[mci], progress=False)
    return out


@pytest.fixture(scope="module")
def mci_run(tables, adcn_run, tmp_path_factory):
    """sMCI vs pMCI from the AD-vs-CN folds; the whole backbone frozen so that it must stay the source's."""
    _, _, mci = tables
    out = tmp_path_factory.mktemp("cv") / "mci"
    settings = {**TINY, "class_names": ["sMCI", "pMCI"], "freeze": 1.0}
    run_cross_validation(mci, out, k=K, seed=0, overrides=settings, init_from=adcn_run, progress=False)
    return out


def _datalist(run_dir: Path, fold: int) -> dict:
    return json.loads((run_dir / f"fold-{fold}" / "datalist.json").read_text())


def _subjects(items: list[dict]) -> set[str]:
    return {item["subject"] for item in items}


# --- fold assignment and splits -----------------------------------------------------------------------------


def _random_table(rng: np.random.Generator, n_subjects: int, prefix: str = "s") -> pd.DataFrame:
    rows = []
    for i in range(n_subjects):
        label = int(rng.integers(2))
        for visit in range(int(rng.integers(1, 4))):
            rows.append({"subject": f"{prefix}{i:03d}", "session": f"ses-M{12 * visit:03d}", "label": label})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_generated_folds_never_share_a_subject_between_splits(k, seed):
    rng = np.random.default_rng(seed)
    table = _random_table(rng, 40)
    other = pd.concat([_random_table(rng, 20, "m"), table.sample(15, random_state=seed)], ignore_index=True)
    folds = assign_folds([table, other], k, seed)
    assert set(folds.index) == set(table["subject"]) | set(other["subject"])  # union of both tables
    assert set(folds) == set(range(k))
    for t in (table, other):
        splits = make_folds(t, k, seed, folds=folds)
        test_subjects = [_subjects(s["test"].to_dict("records")) for s in splits]
        # every subject is tested exactly once over the folds, in the fold it was assigned to (both tables)
        assert sorted(s for subjects in test_subjects for s in subjects) == sorted(t["subject"].unique())
        for i, fold in enumerate(splits):
            assert all(folds[s] == i for s in test_subjects[i])
            members = [set(fold[name]["subject"]) for name in ("training", "validation", "test")]
            assert not (members[0] & members[1]) and not (members[0] & members[2]) and not (members[1] & members[2])
            assert all(len(m) for m in members)
            assert sum(len(fold[name]) for name in fold) == len(t)  # every scan in exactly one split
            check_no_leakage(fold, fold=i)


def test_assignment_is_seeded_stratified_and_keeps_fixed_subjects():
    table = _random_table(np.random.default_rng(3), 60)
    assert assign_folds(table, 5, seed=4).equals(assign_folds(table, 5, seed=4))
    assert not assign_folds(table, 5, seed=4).equals(assign_folds(table, 5, seed=5))
    folds = assign_folds(table, 5, seed=4)
    share = table.assign(fold=table["subject"].map(folds)).groupby("fold")["label"].mean()
    assert share.max() - share.min() < 0.25  # label balance across folds
    fixed = {"s000": 4, "s001": 0}
    new = assign_folds(pd.concat([table, _random_table(np.random.default_rng(4), 10, "n")]), 5, 0, fixed=fixed)
    assert new["s000"] == 4 and new["s001"] == 0 and {f"n{i:03d}" for i in range(10)} <= set(new.index)
    with pytest.raises(ValueError, match="at least 5 subjects"):
        assign_folds(table[table["subject"].isin(["s000", "s001"])], 5)


def test_validation_split_is_about_a_fifth_of_the_training_subjects():
    table = _random_table(np.random.default_rng(0), 100)
    folds = assign_folds(table, 5, 0)
    splits = split_fold(table, folds, 2, val_fraction=0.2, seed=0)
    n_val, n_train = splits["validation"]["subject"].nunique(), splits["training"]["subject"].nunique()
    assert 0.15 < n_val / (n_val + n_train) < 0.25


# --- leakage guards -----------------------------------------------------------------------------------------


def test_leakage_guard_names_the_subject_and_splits():
    splits = {
        "training": [{"image": "a", "subject": "sub-01"}, {"image": "b", "subject": "sub-02"}],
        "validation": [{"image": "c", "subject": "sub-03"}],
        "test": [{"image": "d", "subject": "sub-04"}, {"image": "e", "subject": "sub-02"}],
    }
    with pytest.raises(ValueError, match=r"fold 3: .*sub-02 in training and test") as err:
        check_no_leakage(splits, fold=3)
    assert "sub-01" not in str(err.value) and "sub-04" not in str(err.value)
    splits["test"] = splits["test"][:1]
    check_no_leakage(splits)  # no overlap: no error
    with pytest.raises(ValueError, match="no 'subject'"):
        check_no_leakage({"training": [{"image": "x"}], "test": []})


def test_runner_refuses_a_leaky_fold_before_training(tables, tmp_path, monkeypatch):
    _, adcn, _ = tables

    def leaky(table, folds, fold, val_fraction, seed):
        splits = split_fold(table, folds, fold, val_fraction, seed)
        intruder = splits["training"].iloc[:1]
        return {**splits, "test": pd.concat([splits["test"], intruder])}

    def no_training(*args, **kwargs):
        raise AssertionError("a leaky fold reached training")

    monkeypatch.setattr(runner, "split_fold", leaky)
    monkeypatch.setattr(runner, "run_fold", no_training)
    intruder = leaky(adcn, assign_folds(adcn, K, 0), 0, 0.2, 0)["test"]["subject"].iloc[-1]
    with pytest.raises(ValueError, match=f"fold 0: .*{intruder} in training and test"):
        run_cross_validation(adcn, tmp_path, k=K, overrides=TINY, progress=False)
    assert not (tmp_path / "fold-0" / "datalist.json").exists()


# --- the cross-validation run ---------------------------------------------------------------------------------


def test_cross_validation_writes_fold_and_summary_tables(adcn_run, tables):
    _, adcn, _ = tables
    folds = pd.read_csv(adcn_run / "folds.csv")
    assert len(folds) == K * len(LEVELS)
    assert sorted(zip(folds["fold"], folds["level"])) == sorted((i, lv) for i in range(K) for lv in LEVELS)
    assert set(METRICS) <= set(folds.columns)
    for i in range(K):
        datalist = _datalist(adcn_run, i)
        assert all(os.path.isabs(item["image"]) for split in datalist.values() for item in split)
        assert all({"subject", "session", "label"} <= set(item) for split in datalist.values() for item in split)
        check_no_leakage(datalist)
        assert (adcn_run / f"fold-{i}" / "models" / "model.pt").is_file()
        rows = folds[folds["fold"] == i].set_index("level")
        test = datalist["test"]
        assert rows.loc["scan", "n_scans"] == len(test)
        assert rows.loc["subject", "n_scans"] == rows.loc["subject", "n_subjects"] == len(_subjects(test))
        # recompute from the predictions: all test scans, and each subject's earliest test session
        preds = pd.read_csv(adcn_run / f"fold-{i}" / "eval-test" / "predictions.csv").set_index("file")
        frame = pd.DataFrame(test).assign(month=lambda f: f["session"].str[5:].astype(int))
        probs = preds.loc[frame["image"], ["prob_CN", "prob_AD"]].to_numpy()
        scan = classification_scores(probs, frame["label"].to_numpy())
        first = frame.sort_values("month").groupby("subject").head(1)
        subject = classification_scores(preds.loc[first["image"], ["prob_CN", "prob_AD"]].to_numpy(), first["label"])
        for name in METRICS:
            np.testing.assert_allclose(rows.loc["scan", name], scan[name], equal_nan=True)
            np.testing.assert_allclose(rows.loc["subject", name], subject[name], equal_nan=True)
    # every AD/CN subject tested exactly once
    tested = [s for i in range(K) for s in _subjects(_datalist(adcn_run, i)["test"])]
    assert sorted(tested) == sorted(adcn["subject"].unique())
    summary = pd.read_csv(adcn_run / "summary.csv")
    assert sorted(zip(summary["level"], summary["metric"])) == sorted((lv, m) for lv in LEVELS for m in METRICS)
    acc = summary.set_index(["level", "metric"]).loc[("scan", "accuracy")]
    scan_acc = folds.loc[folds["level"] == "scan", "accuracy"]
    assert acc["mean"] == pytest.approx(scan_acc.mean()) and acc["sd"] == pytest.approx(scan_acc.std(ddof=1))
    report = json.loads((adcn_run / "summary.json").read_text())
    assert set(report["levels"]) == set(LEVELS) and set(report["levels"]["subject"]) == set(METRICS)


def test_baseline_scan_is_the_earliest_session_per_subject():
    frame = pd.DataFrame(
        {
            "subject": ["a", "a", "a", "b", "b"],
            "session": ["ses-M024", "ses-M12", "ses-M006", "ses-M036", "ses-M000"],
            "label": [1, 1, 1, 0, 0],
            "prob_0": [0.9, 0.9, 0.1, 0.2, 0.8],
            "prob_1": [0.1, 0.1, 0.9, 0.8, 0.2],
        }
    )
    base = baseline_scans(frame)
    assert dict(zip(base["subject"], base["session"])) == {"a": "ses-M006", "b": "ses-M000"}
    scores = level_scores(frame)
    assert scores["subject"]["accuracy"] == 1.0 and scores["subject"]["n_scans"] == 2
    assert scores["scan"]["accuracy"] == pytest.approx(2 / 5) and scores["scan"]["n_subjects"] == 2


def test_rerun_skips_finished_folds(adcn_run, tables, monkeypatch):
    _, adcn, mci = tables
    models = sorted(adcn_run.glob("fold-*/models/model.pt"))
    before = {p: p.stat().st_mtime_ns for p in models}
    summary = pd.read_csv(adcn_run / "summary.csv")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(runner, "run_fold", no_training)
    again = run_cross_validation(adcn, adcn_run, k=K, seed=0, overrides=TINY, assign_with=[mci], progress=False)
    assert {p: p.stat().st_mtime_ns for p in models} == before
    pd.testing.assert_frame_equal(again, summary, check_dtype=False)
    # other folds than those on disk: refused, not silently mixed
    with pytest.raises(SettingsError, match=r"Fold 0 of .* other settings .*seed: 0 -> 1"):
        run_cross_validation(adcn, adcn_run, k=K, seed=1, overrides=TINY, assign_with=[mci], progress=False)
    # the same settings on another table (a subject less): the finished splits differ, refused too
    fewer = adcn[adcn["subject"] != adcn["subject"].iloc[0]]
    with pytest.raises(RuntimeError, match="differs from this run's split"):
        run_cross_validation(fewer, adcn_run, k=K, seed=0, overrides=TINY, assign_with=[mci], progress=False)


def test_resume_trains_only_the_unfinished_fold(adcn_run, tables, tmp_path, monkeypatch):
    _, adcn, mci = tables
    for i in (0, 2):  # folds 0 and 2 finished, fold 1 never ran
        (tmp_path / f"fold-{i}").mkdir()
        for name in ("datalist.json", "done.json"):
            shutil.copy(adcn_run / f"fold-{i}" / name, tmp_path / f"fold-{i}" / name)
    trained = []

    def replay(config_files, out_dir, datalist, *args, **kwargs):
        """Stand-in for training: the finished run's predictions of the same fold."""
        trained.append(Path(out_dir).name)
        assert json.loads(Path(datalist).read_text()) == _datalist(adcn_run, 1)
        shutil.copytree(adcn_run / Path(out_dir).name / "eval-test", Path(out_dir) / "eval-test")

    monkeypatch.setattr(runner, "run_fold", replay)
    run_cross_validation(adcn, tmp_path, k=K, seed=0, overrides=TINY, assign_with=[mci], progress=False)
    assert trained == ["fold-1"]
    assert (tmp_path / "fold-1" / "done.json").is_file()
    pd.testing.assert_frame_equal(pd.read_csv(adcn_run / "folds.csv"), pd.read_csv(tmp_path / "folds.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(adcn_run / "summary.csv"), pd.read_csv(tmp_path / "summary.csv"))


def _finished_copy(run_dir: Path, target: Path) -> Path:
    """The settings, fold assignment and finished-fold records of a run (no checkpoints) in a new folder."""
    target.mkdir()
    for name in ("crossval.json", "fold_assignment.csv"):
        shutil.copy(run_dir / name, target / name)
    for i in range(K):
        (target / f"fold-{i}").mkdir()
        for name in ("datalist.json", "done.json"):
            shutil.copy(run_dir / f"fold-{i}" / name, target / f"fold-{i}" / name)
    return target


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*.json"))}


def test_each_fold_records_the_hash_of_its_full_settings(adcn_run, tables):
    _, adcn, mci = tables
    settings = json.loads((adcn_run / "crossval.json").read_text())
    expected = runner.run_settings([runner.TRAIN_CONFIG], TINY, K, 0, 0.2, 1)
    assert settings["settings_sha256"] == expected["settings_sha256"] and len(expected["settings_sha256"]) == 64
    for i in range(K):
        done = json.loads((adcn_run / f"fold-{i}" / "done.json").read_text())
        assert done["settings_sha256"] == expected["settings_sha256"]
        assert done["settings"]["overrides"] == TINY
    # every part of the settings changes the hash; an override equal to the config's own value does not
    changed = [
        runner.run_settings([runner.TRAIN_CONFIG], {**TINY, "epochs": 2}, K, 0, 0.2, 1),
        runner.run_settings([runner.TRAIN_CONFIG], TINY, K + 1, 0, 0.2, 1),
        runner.run_settings([runner.TRAIN_CONFIG], TINY, K, 1, 0.2, 1),
        runner.run_settings([runner.TRAIN_CONFIG], TINY, K, 0, 0.25, 1),
        runner.run_settings([runner.TRAIN_CONFIG], TINY, K, 0, 0.2, 0),
        runner.run_settings([runner.TRAIN_CONFIG], TINY, K, 0, 0.2, 1, "/runs/adcn", "f" * 64),
        runner.run_settings([runner.TRAIN_CONFIG, str(config_path("paper"))], TINY, K, 0, 0.2, 1),
    ]
    digests = {c["settings_sha256"] for c in changed} | {expected["settings_sha256"]}
    assert len(digests) == len(changed) + 1
    same = runner.run_settings([runner.TRAIN_CONFIG], {**TINY, "class_names": ["CN", "AD"]}, K, 0, 0.2, 1)
    assert same["settings_sha256"] == expected["settings_sha256"]


def test_rerun_with_changed_settings_is_refused_and_overwrites_nothing(adcn_run, tables, tmp_path, monkeypatch):
    _, adcn, mci = tables
    out = _finished_copy(adcn_run, tmp_path / "cv")
    before = _snapshot(out)

    def no_training(*args, **kwargs):
        raise AssertionError("a fold was trained although the settings changed")

    monkeypatch.setattr(runner, "run_fold", no_training)
    run = {"k": K, "seed": 0, "assign_with": [mci], "progress": False}
    with pytest.raises(SettingsError, match=r"Fold 0 .*other settings .*overrides\.epochs: 1 -> 2.*retrain_changed"):
        run_cross_validation(adcn, out, overrides={**TINY, "epochs": 2}, **run)
    with pytest.raises(SettingsError, match=r"overrides\.dropout: '\(unset\)' -> 0\.5"):
        run_cross_validation(adcn, out, overrides={**TINY, "dropout": 0.5}, **run)
    with pytest.raises(SettingsError, match="positive: 1 -> 0"):
        run_cross_validation(adcn, out, overrides=TINY, positive=0, **run)
    # an edited copy of train.json: same overrides, other content
    edited = tmp_path / "train.json"
    config = json.loads(Path(runner.TRAIN_CONFIG).read_text())
    edited.write_text(json.dumps({**config, "weight_decay": 0.01}))
    with pytest.raises(SettingsError, match=r"the content of the bundle config\(s\)"):
        run_cross_validation(adcn, out, overrides=TINY, config_files=[str(edited)], **run)
    assert _snapshot(out) == before  # crossval.json and every done.json untouched
    # an unedited copy of train.json elsewhere: the same settings, every fold skipped
    edited.write_text(Path(runner.TRAIN_CONFIG).read_text())
    run_cross_validation(adcn, out, overrides=TINY, config_files=[str(edited)], **run)
    after = _snapshot(out)
    assert all(after[name] == content for name, content in before.items() if name.startswith("fold-"))
    old, new = json.loads(before["crossval.json"]), json.loads(after["crossval.json"])
    assert new["settings_sha256"] == old["settings_sha256"] and new["config_files"] == [str(edited)]


def test_rerun_with_retrain_changed_trains_every_changed_fold_again(adcn_run, tables, tmp_path, monkeypatch):
    _, adcn, mci = tables
    out = _finished_copy(adcn_run, tmp_path / "cv")
    old = json.loads((out / "crossval.json").read_text())
    trained = []

    def replay(config_files, out_dir, datalist, overrides, *args, **kwargs):
        trained.append((Path(out_dir).name, overrides["epochs"]))
        shutil.copytree(adcn_run / Path(out_dir).name / "eval-test", Path(out_dir) / "eval-test")

    monkeypatch.setattr(runner, "run_fold", replay)
    settings = {**TINY, "epochs": 2}
    run_cross_validation(adcn, out, k=K, overrides=settings, assign_with=[mci], progress=False, retrain_changed=True)
    assert trained == [(f"fold-{i}", 2) for i in range(K)]
    new = json.loads((out / "crossval.json").read_text())
    assert new["overrides"]["epochs"] == 2 and new["settings_sha256"] != old["settings_sha256"]
    assert json.loads((out / f"crossval-{old['settings_sha256'][:12]}.json").read_text()) == old
    for i in range(K):
        assert json.loads((out / f"fold-{i}" / "done.json").read_text())["settings_sha256"] == new["settings_sha256"]
    trained.clear()
    run_cross_validation(adcn, out, k=K, overrides=settings, assign_with=[mci], progress=False)
    assert trained == []  # now finished with these settings: skipped


def test_auc_of_single_class_folds_is_null_per_scan_and_per_subject(tables, tmp_path, monkeypatch):
    """Only CN scans: every fold's AUC is undefined; it must read null (JSON) / empty (CSV), not a number."""
    _, adcn, _ = tables
    only_cn = adcn[adcn["label"] == 0]

    def predict(config_files, out_dir, datalist, *args, **kwargs):
        """Stand-in for training: CN right for every other scan."""
        items = json.loads(Path(datalist).read_text())["test"]
        prob_ad = [0.2 if n % 2 == 0 else 0.8 for n in range(len(items))]
        frame = pd.DataFrame({"file": [i["image"] for i in items], "prob_CN": [1 - p for p in prob_ad]})
        (Path(out_dir) / "eval-test").mkdir(parents=True)
        frame.assign(prob_AD=prob_ad).to_csv(Path(out_dir) / "eval-test" / "predictions.csv", index=False)

    monkeypatch.setattr(runner, "run_fold", predict)
    run_cross_validation(only_cn, tmp_path, k=K, overrides=TINY, progress=False)
    for i in range(K):
        scores = json.loads((tmp_path / f"fold-{i}" / "done.json").read_text())["scores"]
        for level in LEVELS:
            assert "auc" in scores[level] and scores[level]["auc"] is None, (i, level)
            assert 0 < scores[level]["accuracy"] <= 1 and scores[level]["sensitivity"] is None
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert folds["auc"].isna().all() and folds["accuracy"].notna().all()
    summary = json.loads((tmp_path / "summary.json").read_text())["levels"]
    for level in LEVELS:
        assert summary[level]["auc"] == {"mean": None, "sd": None, "n_folds": 0}
        assert summary[level]["specificity"]["n_folds"] == K
    assert "NaN" not in (tmp_path / "summary.json").read_text()


def test_runner_reads_the_output_paths_from_the_bundle_config(adcn_run, tables, tmp_path, monkeypatch):
    """A config that moves the evaluation folder still works: the runner parses ``eval_dir``, it assumes nothing."""
    _, adcn, mci = tables
    moved = {**TINY, "eval_dir": "$os.path.join(@output_dir, 'moved-eval')"}

    def replay(config_files, out_dir, datalist, *args, **kwargs):
        """Stand-in for training: the finished run's predictions, where the moved config writes them."""
        shutil.copytree(adcn_run / Path(out_dir).name / "eval-test", Path(out_dir) / "moved-eval")

    monkeypatch.setattr(runner, "run_fold", replay)
    run_cross_validation(adcn, tmp_path, k=K, seed=0, overrides=moved, assign_with=[mci], progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(adcn_run / "folds.csv"), pd.read_csv(tmp_path / "folds.csv"))
    assert not list(tmp_path.glob("fold-*/eval-test"))


def test_cli_reuses_the_same_joint_folds(adcn_run, tables, monkeypatch, capsys):
    bids, _, _ = tables

    def no_training(*args, **kwargs):
        raise AssertionError("the CLI made other folds than the Python run")

    monkeypatch.setattr(runner, "run_fold", no_training)
    argv = [str(bids), str(adcn_run), "--task", "ADvsCN", "--k", str(K), "--overrides", json.dumps(TINY)]
    with pytest.raises(ValueError, match=r"No --derivatives_dir: .* raw T1w scans .*preprocess first"):
        crossval_main(argv + ["--noprogress"])  # raw BIDS images: refused before anything runs
    argv.insert(2, "--raw_images")  # these test images are tiny "brains" on one grid already
    assert crossval_main(argv + ["--noprogress"]) == 0
    assert "accuracy" in capsys.readouterr().out
    with pytest.raises(ValueError, match="may not set"):
        crossval_main(argv[:-1] + [json.dumps({"output_dir": "x"})])


# --- double transfer learning ---------------------------------------------------------------------------------


def _load(path: Path) -> dict[str, torch.Tensor]:
    return load_weights(path)


def test_double_transfer_starts_each_fold_from_the_same_fold(mci_run, adcn_run, tables):
    _, _, mci = tables
    sources = [_load(adcn_run / f"fold-{i}" / "models" / "model.pt") for i in range(K)]
    backbone = [k for k in sources[0] if k.startswith("encoder.backbone.") and k.endswith(".weight")]
    assert backbone and not torch.equal(sources[0][backbone[0]], sources[1][backbone[0]])  # folds differ
    for i in range(K):
        done = json.loads((mci_run / f"fold-{i}" / "done.json").read_text())
        assert done["init_ckpt"] == str((adcn_run / f"fold-{i}" / "models" / "model.pt").resolve())
        tuned = _load(mci_run / f"fold-{i}" / "models" / "model.pt")
        for key in (k for k in tuned if k.startswith("encoder.backbone.")):  # frozen: exactly the source fold's
            assert torch.equal(tuned[key], sources[i][key]), key
        for j in set(range(K)) - {i}:
            assert not torch.equal(tuned[backbone[0]], sources[j][backbone[0]])
        assert not torch.equal(tuned["head.weight"], sources[i]["head.weight"])  # re-initialised, then trained
        # same folds for both tasks: this fold's MCI test subjects never trained or validated the source model
        seen = _subjects(_datalist(adcn_run, i)["training"]) | _subjects(_datalist(adcn_run, i)["validation"])
        assert not seen & _subjects(_datalist(mci_run, i)["test"])
    tested = [s for i in range(K) for s in _subjects(_datalist(mci_run, i)["test"])]
    assert sorted(tested) == sorted(mci["subject"].unique())
    summary = pd.read_csv(mci_run / "summary.csv")
    assert set(summary["level"]) == set(LEVELS) and summary["mean"].notna().any()


def test_transfer_refuses_a_source_that_trained_on_a_test_subject(adcn_run, tables, tmp_path, monkeypatch):
    _, _, mci = tables
    source = tmp_path / "adcn"
    source.mkdir()
    for name in ("fold_assignment.csv", "crossval.json"):
        shutil.copy(adcn_run / name, source / name)
    folds = pd.read_csv(adcn_run / "fold_assignment.csv").set_index("subject")["fold"]
    stable = sorted(s for s in mci["subject"].unique() if s.startswith("sub-ST") and folds[s] == 0)[0]
    for i in range(K):
        datalist = _datalist(adcn_run, i)
        if i == 0:  # this MCI test subject of fold 0 "was" in the AD/CN training data of fold 0
            datalist["training"].append({"image": "/elsewhere.nii.gz", "label": 0, "subject": stable, "session": "x"})
        (source / f"fold-{i}").mkdir()
        (source / f"fold-{i}" / "datalist.json").write_text(json.dumps(datalist))

    def no_training(*args, **kwargs):
        raise AssertionError("a leaky transfer reached training")

    monkeypatch.setattr(runner, "run_fold", no_training)
    with pytest.raises(ValueError, match=f"Fold 0: 1 test subject.*{stable} \\(training\\)"):
        run_cross_validation(mci, tmp_path / "mci", k=K, overrides=TINY, init_from=source, progress=False)
    with pytest.raises(ValueError, match="has 3 folds"):
        run_cross_validation(mci, tmp_path / "mci", k=2, overrides=TINY, init_from=source, progress=False)
    with pytest.raises(ValueError, match="sub-X"):
        check_transfer_leakage({"sub-X"}, _write(tmp_path / "d.json", {"validation": [{"subject": "sub-X"}]}))


def _write(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path


def _tiny_net(seed: int, net=AxialNet, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return net(backbone="resnet18", num_slices=4, image_size=32, freeze=0.0, **kwargs)


def test_init_from_checkpoint_copies_all_but_the_head_and_freezes(tmp_path):
    source = _tiny_net(0)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    target = _tiny_net(1)
    fresh_head = target.head.weight.detach().clone()
    assert init_from_checkpoint(target, path, reset=("head",), freeze=0.5) is target
    loaded, original = target.state_dict(), source.state_dict()
    for key, value in original.items():
        if key.startswith("head."):
            assert not torch.equal(loaded[key], value)
        else:
            assert torch.equal(loaded[key], value), key
    assert not torch.equal(target.head.weight, fresh_head)  # re-drawn by reset_parameters, not left as built
    flags = [p.requires_grad for p in target.encoder.backbone.parameters()]
    assert not flags[0] and flags[-1] and 0.3 < flags.count(False) / len(flags) < 0.7
    assert all(p.requires_grad for p in target.head.parameters())
    untouched = _tiny_net(2)
    state = {k: v.clone() for k, v in untouched.state_dict().items()}
    assert init_from_checkpoint(untouched, None, freeze=0.5) is untouched
    assert all(torch.equal(state[k], v) for k, v in untouched.state_dict().items())
    assert all(p.requires_grad for p in untouched.parameters())


def test_init_from_checkpoint_mismatch_names_the_file(tmp_path):
    other = tmp_path / "meanpool.pt"
    torch.save(_tiny_net(0, MeanPoolNet).state_dict(), other)
    with pytest.raises(ValueError, match=r"meanpool\.pt does not match AxialNet.*attention"):
        init_from_checkpoint(_tiny_net(1), other)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        init_from_checkpoint(_tiny_net(1), tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="'classifier'"):
        init_from_checkpoint(_tiny_net(1), other, reset=("classifier",))
