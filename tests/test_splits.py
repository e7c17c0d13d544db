"""Fold assignment, fold splits and leakage guards (axial_monai.crossval.splits / leakage) on small hand-made tables.

The expected folds are those the module documents: scikit-learn's ``StratifiedGroupKFold`` over subjects with
the documented strata and seeds (rebuilt here from the documentation), or the documented round-robin fallbacks.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from axial_monai.crossval.leakage import check_no_leakage, check_transfer_leakage, split_subjects
from axial_monai.crossval.splits import SPLITS, assign_folds, check_table, make_folds, split_fold
from axial_monai.errors import InputError, SettingsError


def _table(labels: dict[str, int], scans: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per scan: subject, session, label (2 scans per subject unless ``scans`` says otherwise)."""
    rows = []
    for subject, label in labels.items():
        for visit in range((scans or {}).get(subject, 2)):
            rows.append({"subject": subject, "session": f"ses-M{12 * visit:03d}", "label": label})
    return pd.DataFrame(rows)


#: 12 subjects, 6 of each class
BALANCED = _table({f"s{i:02d}": i % 2 for i in range(12)})


def _documented_folds(frame: pd.DataFrame, n_splits: int, seed: int) -> list[set[str]]:
    """Test subjects of each fold as the module documents them (StratifiedGroupKFold, seeded shuffle)."""
    strata = pd.factorize(frame["stratum"])[0]
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    splits = splitter.split(np.zeros(len(frame)), strata, groups=frame["subject"].to_numpy())
    return [set(frame["subject"].iloc[test]) for _, test in splits]


def test_split_names():
    assert SPLITS == ("training", "validation", "test")


def test_check_table_names_missing_columns_and_rows():
    with pytest.raises(InputError, match=r"no column \['label'\]; it has \['subject'\]"):
        check_table(pd.DataFrame({"subject": ["a"]}))
    with pytest.raises(InputError, match=r"no column \['image'\]"):
        check_table(BALANCED, ("subject", "label", "image"))
    check_table(BALANCED)
    check_table(pd.DataFrame({"subject": ["a", None], "label": [0, 1]}), ("label",))  # subject not required
    for column in ("subject", "label"):
        broken = BALANCED.copy()
        broken.loc[3, column] = None
        with pytest.raises(InputError, match=f"rows without {column}: rows .*3"):
            check_table(broken)


@pytest.mark.parametrize("k, seed", [(2, 0), (3, 1), (4, 7)])
def test_assign_folds_is_the_documented_stratified_group_split(k, seed):
    folds = assign_folds(BALANCED, k, seed)
    assert folds.name == "fold" and folds.index.name == "subject" and folds.dtype == int
    assert list(folds.index) == sorted(BALANCED["subject"].unique())
    frame = pd.DataFrame({"subject": BALANCED["subject"], "stratum": [f"0:{v}" for v in BALANCED["label"]]})
    expected = _documented_folds(frame, k, seed)
    assert [set(folds.index[folds == f]) for f in range(k)] == expected
    # stratified: every fold gets both classes
    for f in range(k):
        assert set(BALANCED.loc[BALANCED["subject"].map(folds) == f, "label"]) == {0, 1}


def test_assign_folds_strata_are_per_table_and_label():
    """The same label in two tables is two strata: subject s of table 1 label 0 is not pooled with table 0's."""
    other = _table({f"m{i:02d}": i % 2 for i in range(8)})
    folds = assign_folds([BALANCED, other], 4, 3)
    frames = [
        pd.DataFrame({"subject": t["subject"], "stratum": [f"{n}:{v}" for v in t["label"]]})
        for n, t in enumerate((BALANCED, other))
    ]
    expected = _documented_folds(pd.concat(frames, ignore_index=True), 4, 3)
    assert [set(folds.index[folds == f]) for f in range(4)] == expected


def test_assign_folds_keeps_fixed_subjects_and_assigns_the_rest():
    fixed = {"s00": 2, "s01": 0, "gone": 1}  # a fixed subject need not be in the tables
    folds = assign_folds(BALANCED, 3, 5, fixed=fixed)
    assert folds["s00"] == 2 and folds["s01"] == 0 and folds["gone"] == 1
    rest = BALANCED[~BALANCED["subject"].isin(fixed)].reset_index(drop=True)
    frame = pd.DataFrame({"subject": rest["subject"], "stratum": [f"0:{v}" for v in rest["label"]]})
    expected = _documented_folds(frame, 3, 5)
    assert [set(folds.drop(list(fixed)).index[folds.drop(list(fixed)) == f]) for f in range(3)] == expected


def test_too_few_new_subjects_are_dealt_round_robin():
    """2 new subjects for 3 folds next to fixed ones: shuffled with the seed, then folds 0, 1 in turn."""
    table = _table({"a": 0, "b": 1, "c": 0, "d": 1})
    folds = assign_folds(table, 3, 4, fixed={"a": 2, "b": 2})
    order = np.random.default_rng(4).permutation(["c", "d"])
    assert {s: folds[s] for s in order} == {order[0]: 0, order[1]: 1}
    assert folds["a"] == folds["b"] == 2
    with pytest.raises(SettingsError, match="3-fold cross-validation needs at least 3 subjects; the tables have 2"):
        assign_folds(table[table["subject"].isin(["c", "d"])], 3)
    # every subject fixed: nothing left to assign
    assert assign_folds(table, 3, fixed={"a": 0, "b": 1, "c": 2, "d": 0}).to_dict() == {"a": 0, "b": 1, "c": 2, "d": 0}


def test_too_few_scans_per_class_to_stratify_deals_subjects_with_a_warning():
    """3 subjects of one scan per class for 4 folds: no stratum has 4 rows, so subjects are dealt in turn."""
    table = _table({"a": 0, "b": 1, "c": 0, "d": 1, "e": 0, "f": 1}, scans=dict.fromkeys("abcdef", 1))
    with pytest.warns(UserWarning, match="Too few scans per class to stratify 4 folds"):
        folds = assign_folds(table, 4, 9)
    order = np.random.default_rng(9).permutation(sorted("abcdef"))
    assert folds.to_dict() == {s: i % 4 for i, s in enumerate(order)}


@pytest.mark.parametrize("k", [1, 0, -2, 2.5, "3"])
def test_assign_folds_refuses_bad_k(k):
    with pytest.raises(SettingsError, match=f"k must be an integer >= 2, not {k!r}"):
        assign_folds(BALANCED, k)


def test_assign_folds_refuses_no_table_and_bad_fixed_folds():
    with pytest.raises(SettingsError, match="at least one table"):
        assign_folds([], 2)
    for bad in (3, -1):
        with pytest.raises(SettingsError, match=rf"Fixed folds must be in 0\.\.2; got \{{'s00': {bad}\}}"):
            assign_folds(BALANCED, 3, fixed={"s00": bad, "s01": 2})
    assert assign_folds(BALANCED, 3, fixed={"s00": 0, "s01": 2})["s01"] == 2  # both ends are valid
    assert assign_folds(BALANCED, 3.0).max() == 2  # an integral float is an integer k


@pytest.mark.parametrize("fold", [0, 1, 2])
@pytest.mark.parametrize("val_fraction, n_inner", [(0.2, 5), (0.25, 4), (0.5, 2), (0.9, 2), (0.34, 3)])
def test_split_fold_is_the_documented_split(fold, val_fraction, n_inner):
    folds = assign_folds(BALANCED, 3, 0)
    splits = split_fold(BALANCED, folds, fold, val_fraction, seed=11)
    assert list(splits) == list(SPLITS)
    in_test = BALANCED["subject"].map(folds) == fold
    pd.testing.assert_frame_equal(splits["test"], BALANCED[in_test])
    rest = BALANCED[~in_test]
    frame = pd.DataFrame({"subject": rest["subject"].to_numpy(), "stratum": rest["label"].to_numpy()})
    n_rest = rest["subject"].nunique()
    validation = _documented_folds(frame, min(n_inner, n_rest), 11 + fold)[0]
    pd.testing.assert_frame_equal(splits["validation"], rest[rest["subject"].isin(validation)])
    pd.testing.assert_frame_equal(splits["training"], rest[~rest["subject"].isin(validation)])


def test_split_fold_caps_the_inner_folds_at_the_subjects_left():
    """4 subjects, 2 folds: 2 left for training + validation; 1 / 0.1 = 10 inner folds capped at 2."""
    table = _table({"a": 0, "b": 1, "c": 0, "d": 1})
    folds = pd.Series({"a": 0, "b": 0, "c": 1, "d": 1})
    splits = split_fold(table, folds, 1, val_fraction=0.1, seed=0)
    assert set(splits["training"]["subject"]) | set(splits["validation"]["subject"]) == {"a", "b"}
    assert splits["training"]["subject"].nunique() == splits["validation"]["subject"].nunique() == 1
    assert set(splits["test"]["subject"]) == {"c", "d"}


def test_split_fold_accepts_a_mapping_and_string_subjects():
    table = _table({1: 0, 2: 1, 3: 0, 4: 1, 5: 0, 6: 1})
    splits = split_fold(table, {"1": 0, "2": 0, "3": 1, "4": 1, "5": 1, "6": 1}, 0, 0.5)
    assert sorted(splits["test"]["subject"].unique()) == [1, 2]


def test_split_fold_refusals():
    folds = assign_folds(BALANCED, 3, 0)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(SettingsError, match=f"val_fraction must be in \\(0, 1\\), not {bad!r}"):
            split_fold(BALANCED, folds, 0, bad)
    with pytest.raises(InputError, match=r"Subjects without a fold: \['s00', 's01'\]\.$"):
        split_fold(BALANCED, folds.drop(["s00", "s01"]), 0)
    many = _table({f"u{i:02d}": i % 2 for i in range(12)})
    with pytest.raises(InputError, match=r"Subjects without a fold: \['u00', .*'u09'\] \.\.\.\.$"):
        split_fold(many, folds, 0)
    with pytest.raises(InputError, match="Fold 5 has no test scan"):
        split_fold(BALANCED, folds, 5)
    with pytest.raises(InputError, match=r"Fold 0 leaves 1 subject\(s\) for training and validation"):
        split_fold(_table({"a": 0, "b": 1}), {"a": 0, "b": 1}, 0)


def test_make_folds_is_every_split_fold():
    folds = assign_folds(BALANCED, 3, 2)
    made = make_folds(BALANCED, 3, seed=2, val_fraction=0.25)
    assert len(made) == 3
    for fold, splits in enumerate(made):
        expected = split_fold(BALANCED, folds, fold, 0.25, 2)
        for name in SPLITS:
            pd.testing.assert_frame_equal(splits[name], expected[name])
    given = make_folds(BALANCED, 3, seed=2, folds={s: 0 if s < "s04" else 1 if s < "s08" else 2 for s in folds.index})
    assert set(given[0]["test"]["subject"]) == {"s00", "s01", "s02", "s03"}


# --- leakage guards ---------------------------------------------------------------------------------------------


def test_split_subjects_of_tables_and_items():
    assert split_subjects(pd.DataFrame({"subject": ["a", "b", "a", 7]})) == {"a", "b", "7"}
    assert split_subjects([{"subject": "a"}, {"subject": 3}]) == {"a", "3"}
    assert split_subjects([]) == set()
    with pytest.raises(InputError, match="Every scan of the test split needs a subject id"):
        split_subjects(pd.DataFrame({"image": ["x"]}), "test split")
    with pytest.raises(InputError, match="Every scan of the split needs"):
        split_subjects(pd.DataFrame({"subject": ["a", None]}))
    for missing in ({"image": "x.nii"}, {"image": "x.nii", "subject": None}, {"image": "x.nii", "subject": ""}):
        with pytest.raises(InputError, match=r"A datalist item of the training has no 'subject' \(x\.nii\)"):
            split_subjects([{"subject": "a"}, missing], "training")
    with pytest.raises(InputError, match=r"has no 'subject' \(\{'label': 1\}\)"):
        split_subjects([{"label": 1}])
    assert split_subjects([{"subject": 0}]) == {"0"}  # a falsy but real id


def test_check_no_leakage_lists_every_shared_subject_with_its_splits():
    splits = {
        "training": pd.DataFrame({"subject": ["a", "b", "c"]}),
        "validation": [{"subject": "b"}, {"subject": "d"}],
        "test": [{"subject": "c"}, {"subject": "b"}, {"subject": "e"}],
    }
    with pytest.raises(InputError) as err:
        check_no_leakage(splits, fold=2)
    assert str(err.value) == (
        "Subject leakage in fold 2: 2 subject(s) in two splits: b in training and validation and test; "
        "c in training and test."
    )
    with pytest.raises(InputError, match=r"^Subject leakage in the splits: 1 subject\(s\)"):
        check_no_leakage({"training": [{"subject": "a"}], "test": [{"subject": "a"}]})
    check_no_leakage({"training": [{"subject": "a"}], "validation": [], "test": [{"subject": "b"}]})
    with pytest.raises(InputError, match="fold 1: test split"):
        check_no_leakage({"test": [{"image": "x"}]}, fold=1)


def test_check_transfer_leakage(tmp_path):
    source = tmp_path / "datalist.json"
    source.write_text(
        json.dumps(
            {
                "training": [{"subject": "a"}, {"subject": "b"}],
                "validation": [{"subject": "c"}, {"subject": "b"}],
                "test": [{"subject": "t"}],
            }
        )
    )
    check_transfer_leakage({"t", "u"}, source)  # the source's own test subjects may be tested again
    with pytest.raises(SettingsError) as err:
        check_transfer_leakage(["b", "c", "z"], source, fold=4)
    message = str(err.value)
    assert message.startswith(
        f"Fold 4: 2 test subject(s) of this fold were in the training/validation data of the "
        f"model to transfer from ({source}): b (training and validation); c (validation)."
    )
    assert "same fold assignment" in message
    with pytest.raises(SettingsError, match=r"^1 test subject\(s\) .*: a \(training\)\."):
        check_transfer_leakage({"a"}, str(source))
    with pytest.raises(FileNotFoundError, match="absent.json of the run to transfer from does not exist"):
        check_transfer_leakage({"a"}, tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InputError, match="Cannot read the datalist .*broken.json"):
        check_transfer_leakage({"a"}, broken)
    no_ids = tmp_path / "no_ids.json"
    no_ids.write_text(json.dumps({"validation": [{"image": "v.nii"}]}))
    with pytest.raises(InputError, match="validation split of .*no_ids.json has no 'subject'"):
        check_transfer_leakage({"a"}, no_ids)


def test_round_robin_uses_the_seed_and_defaults_are_five_folds_seed_0():
    """4 new subjects for 5 folds: their order is the seeded permutation (1 in 24 to match by chance)."""
    table = _table({"a": 0, "b": 1, "c": 0, "d": 1, "e": 0, "f": 1})
    for seed in (0, 7):
        folds = assign_folds(table, 5, seed, fixed={"a": 4, "b": 4})
        order = np.random.default_rng(seed).permutation(["c", "d", "e", "f"])
        assert [folds[s] for s in order] == [0, 1, 2, 3], seed
    assert assign_folds(BALANCED).equals(assign_folds(BALANCED, 5, 0))
    assert not assign_folds(BALANCED).equals(assign_folds(BALANCED, 5, 1))
    default, explicit = make_folds(BALANCED), make_folds(BALANCED, 5, 0)
    assert len(default) == 5
    for mine, theirs in zip(default, explicit, strict=True):
        for name in SPLITS:
            pd.testing.assert_frame_equal(mine[name], theirs[name])
