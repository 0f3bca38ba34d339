"""Mixed tables: categorical columns beside numeric ones (issue 30)."""

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

import skae
from skae import (
    AutoEncoderImputer,
    AutoEncoderOutlierDetector,
    AutoEncoderTransformer,
    VariationalAutoEncoderTransformer,
)
from skae._scaling import ColumnStats
from skae._tabular import Layout, constant_loss, mixed_loss

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def table(n=240, seed=0, holes=0.0):
    """Numbers and categories that go together: "kind" is the sign of "a", "big" follows b."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.normal(size=n) * 100 + 500
    frame = pd.DataFrame(
        {
            "a": a,
            "kind": pd.Categorical(np.where(a > 0, "up", "down")),
            "b": b,
            "colour": rng.choice(["red", "green", "blue"], n).astype(object),
            "big": b > 500,
            "c": a * 3 + rng.normal(size=n) * 0.1,
        }
    )
    if holes:
        hide = rng.random(frame.shape) < holes
        frame = frame.astype({"big": object})
        for j, name in enumerate(frame.columns):
            frame.loc[hide[:, j], name] = None if frame[name].dtype == object else np.nan
    return frame


def small(cls=AutoEncoderTransformer, **params):
    defaults = dict(n_components=3, hidden_layer_sizes=(16,), max_iter=10, random_state=0,
                    device="cpu")  # fmt: skip
    return cls(**{**defaults, **params})


# -- the loss weighs the columns alike ---------------------------------------------------------


def test_each_cell_counts_one_at_the_mean_and_uniform_predictions():
    # 2 standardised numbers and a 4-category column: at the mean (0) and uniform logits every
    # cell's term is about 1, so the loss is about 1 whatever the number of categories.
    layout = Layout(3, categorical=(2,), n_categories=(4,))
    rng = np.random.default_rng(0)
    numbers = rng.normal(size=(4000, 2))
    one_hot = np.eye(4)[rng.integers(4, size=4000)]
    x = torch.as_tensor(np.hstack([numbers, one_hot]), dtype=torch.float32)
    loss = mixed_loss(torch.zeros_like(x), x, layout)
    assert abs(float(loss) - 1.0) < 0.03
    stats = ColumnStats.of(x.numpy().astype(np.float64))
    assert abs(constant_loss(stats, layout) - 1.0) < 0.01  # uniform frequencies: entropy log 4


def test_missing_cells_and_hidden_weight():
    layout = Layout(2, categorical=(1,), n_categories=(2,))
    x = torch.tensor([[1.0, 1.0, 0.0], [math.nan, math.nan, math.nan]])
    output = torch.tensor([[0.0, 0.0, 0.0], [5.0, 9.0, -9.0]])
    # The second row is missing throughout: only the first row's two cells count.
    expected = (1.0 + math.log(2) / math.log(2)) / 2
    assert float(mixed_loss(output, x, layout)) == pytest.approx(expected)
    # The number hidden from the network weighs 3.
    x_in = torch.tensor([[math.nan, 1.0, 0.0], [math.nan] * 3])
    assert float(mixed_loss(output, x, layout, x_in, 3.0)) == pytest.approx((3 + 1) / 4)


# -- AutoEncoderTransformer --------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    frame = table()
    return small().fit(frame), frame


def test_transformer_reads_categorical_columns_from_dtypes(fitted):
    ae, frame = fitted
    assert_array_equal(ae.is_categorical_, [False, True, False, True, True, False])
    assert [list(c) for c in ae.categories_] == [["down", "up"], ["blue", "green", "red"],
                                                 [False, True]]  # fmt: skip
    plan = ae.fit_plan_
    assert plan.categorical == (1, 3, 4) and plan.n_categories == (2, 3, 2)
    assert plan.width == 3 + 7 and plan.scaling == "standardised" and plan.step == "autograd"
    assert "3 categorical" in str(plan)
    assert ae.transform(frame).shape == (len(frame), 3)


def test_inverse_transform_gives_categories_in_a_frame_like_the_training_one(fitted):
    ae, frame = fitted
    back = ae.inverse_transform(ae.transform(frame))
    assert isinstance(back, pd.DataFrame)
    assert list(back.columns) == list(frame.columns)
    assert (back.dtypes == frame.dtypes).all()
    assert set(back["colour"]) <= {"red", "green", "blue"}
    # "kind" is the sign of "a", which the codes keep: it comes back mostly right.
    assert (back["kind"] == frame["kind"]).mean() > 0.8


def test_score_samples_is_minus_the_mean_cell_loss(fitted):
    ae, frame = fitted
    scores = ae.score_samples(frame)
    assert scores.shape == (len(frame),) and np.all(scores <= 0) and np.isfinite(scores).all()
    # A row whose category contradicts its numbers scores lower.
    odd = frame.iloc[:1].copy()
    odd["kind"] = "down" if odd["kind"].iloc[0] == "up" else "up"
    assert ae.score_samples(odd)[0] < scores[0]


def test_pickle_and_model_files_keep_a_mixed_model(fitted, tmp_path):
    ae, frame = fitted
    codes = ae.transform(frame)
    clone = pickle.loads(pickle.dumps(ae))
    assert_array_equal(clone.transform(frame), codes)
    path = tmp_path / "mixed.safetensors"
    ae.save(path)
    loaded = skae.load(path)
    assert_array_equal(loaded.transform(frame), codes)
    assert loaded.fit_plan_ == ae.fit_plan_
    pd.testing.assert_frame_equal(loaded.inverse_transform(codes), ae.inverse_transform(codes))


def test_unseen_category_is_refused_by_a_network_fitted_on_complete_data(fitted):
    ae, frame = fitted
    odd = frame.iloc[:3].copy()
    odd["colour"] = ["red", "purple", "blue"]
    with pytest.raises(ValueError, match="category 'purple' in feature 'colour'.*did not see"):
        ae.transform(odd)


def test_unseen_category_reads_as_missing_where_the_network_reads_the_mask():
    frame = table(holes=0.1)
    ae = small().fit(frame)
    odd, missing = frame.iloc[:5].copy(), frame.iloc[:5].copy()
    odd["colour"] = "purple"
    missing["colour"] = None
    assert_array_equal(ae.transform(odd), ae.transform(missing))


def test_an_empty_categorical_column_is_refused_like_an_empty_numeric_one():
    frame = table()
    frame["colour"] = None
    with pytest.raises(ValueError, match=r"every value missing.*feature\(s\) colour.*drop them"):
        small().fit(frame)


def test_explicit_categorical_features_on_an_object_array():
    frame = table(n=120)
    array = frame.to_numpy(dtype=object)
    by_index = small(categorical_features=[1, 3, 4]).fit(array)
    mask = np.isin(np.arange(6), [1, 3, 4])
    by_mask = small(categorical_features=mask).fit(array)
    assert_array_equal(by_index.transform(array), by_mask.transform(array))
    back = by_index.inverse_transform(by_index.transform(array))
    assert back.dtype == object and set(back[:, 3]) <= {"red", "green", "blue"}
    by_name = small(categorical_features=["kind", "colour", "big"]).fit(frame)
    assert_array_equal(by_name.is_categorical_, mask)


@pytest.mark.parametrize(
    "value, message",
    [
        ("auto", "categorical_features='auto' is invalid"),
        ([7], "index 7, out of range"),
        ([True, False], "boolean mask of 2 values, but X has 6 features"),
        (["nope"], "names 'nope', which is not a column"),
    ],
)
def test_invalid_categorical_features(value, message):
    with pytest.raises(ValueError, match=message):
        small(categorical_features=value).fit(table(n=40))


def test_names_need_a_frame():
    with pytest.raises(ValueError, match="X has no column names"):
        small(categorical_features=["kind"]).fit(table(n=40).to_numpy(dtype=object))


def test_text_without_categorical_features_names_the_way_out():
    array = table(n=40).to_numpy(dtype=object)
    with pytest.raises(ValueError, match="categorical_features"):
        small().fit(array)


def test_text_in_a_column_not_named_categorical_is_named():
    array = table(n=40).to_numpy(dtype=object)
    with pytest.raises(ValueError, match="Column 3 holds '(red|green|blue)'.*not among"):
        small(categorical_features=[1, 4]).fit(array)


# -- AutoEncoderImputer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imputed():
    frame = table(n=400, holes=0.15, seed=1)
    imputer = small(AutoEncoderImputer, n_components=4, hidden_layer_sizes=(64,), max_iter=150)
    return imputer, frame, imputer.fit_transform(frame)


def test_imputer_gives_the_frame_back_filled(imputed):
    imputer, frame, filled = imputed
    assert isinstance(filled, pd.DataFrame)
    assert list(filled.columns) == list(frame.columns)
    assert (filled.dtypes == frame.dtypes).all()
    assert filled.index.equals(frame.index)
    assert not filled.isna().any().any()
    observed = frame.notna()
    for name in frame.columns:
        kept = observed[name].to_numpy()
        assert_array_equal(filled[name].to_numpy()[kept], frame[name].to_numpy()[kept])
    assert set(filled["colour"]) == {"red", "green", "blue"}
    assert set(filled["big"]) == {False, True}


def test_imputer_fills_categories_and_numbers_from_the_other_columns(imputed):
    imputer, frame, filled = imputed
    truth = table(n=400, seed=1)
    holes = frame["kind"].isna().to_numpy()
    # "kind" is the sign of "a" (and of "c"): far better than its most frequent category.
    accuracy = (filled["kind"][holes] == truth["kind"][holes]).mean()
    assert accuracy > 0.85
    # "c" is 3 "a" plus a little noise: where "a" is observed, "c" is filled from it, far
    # better than by its mean (1; this short fit: 0.28, the default schedule 0.08).
    holes = (frame["c"].isna() & frame["a"].notna()).to_numpy()
    error = np.sqrt(np.mean((filled["c"][holes] - truth["c"][holes]) ** 2)) / truth["c"].std()
    assert error < 0.4


def test_imputer_on_an_object_array_and_with_an_indicator():
    frame = table(n=120, holes=0.15)
    array = frame.to_numpy(dtype=object)
    imputer = small(AutoEncoderImputer, categorical_features=[1, 3, 4], add_indicator=True)
    filled = imputer.fit_transform(array)
    assert filled.dtype == object and filled.shape == (120, 12)
    assert not pd.isna(filled).any()
    assert_array_equal(filled[:, 6:].astype(float), pd.isna(array).astype(float))
    named = small(AutoEncoderImputer, add_indicator=True).fit(frame).transform(frame)
    assert list(named.columns[6:]) == [f"missingindicator_{c}" for c in frame.columns]


def test_imputer_keeps_an_unseen_category_and_reads_it_as_missing(imputed):
    imputer, frame, _ = imputed
    odd = frame.iloc[:4].copy()
    odd["colour"] = "purple"
    filled = imputer.transform(odd)
    assert (filled["colour"] == "purple").all()
    assert not filled.drop(columns="colour").isna().any().any()


@pytest.mark.parametrize("keep", [False, True])
def test_imputer_with_an_empty_categorical_column(keep):
    frame = table(n=80, holes=0.1)
    frame["colour"] = None
    imputer = small(AutoEncoderImputer, keep_empty_features=keep)
    filled = imputer.fit_transform(frame)
    assert ("colour" in filled.columns) == keep
    assert not filled.drop(columns="colour", errors="ignore").isna().any().any()
    assert list(imputer.get_feature_names_out()) == list(filled.columns)


def test_imputer_pickle_and_model_file(imputed, tmp_path):
    imputer, frame, filled = imputed
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(imputer)).transform(frame), filled)
    path = tmp_path / "imputer.safetensors"
    imputer.save(path)
    pd.testing.assert_frame_equal(skae.load(path).transform(frame), filled)


# -- AutoEncoderOutlierDetector ----------------------------------------------------------------


def test_detector_flags_rows_whose_category_contradicts_their_numbers(tmp_path):
    frame = table(n=300, seed=3)
    odd = frame.copy()
    # The first 15 rows' "kind" is the opposite of the sign of their "a".
    kinds = np.array(odd["kind"], dtype=object)
    kinds[:15] = np.where(kinds[:15] == "up", "down", "up")
    odd["kind"] = pd.Categorical(kinds)
    detector = small(AutoEncoderOutlierDetector, max_iter=60).fit(odd)
    scores = detector.score_samples(odd)
    # Every contradicting row scores below the median training row.
    assert np.all(scores[:15] < np.median(scores[15:]))
    assert np.array_equal(pickle.loads(pickle.dumps(detector)).score_samples(odd), scores)
    path = tmp_path / "detector.safetensors"
    detector.save(path)
    # (The file holds the codes' statistics in float32, as for any detector.)
    assert_allclose(skae.load(path).score_samples(odd), scores, rtol=1e-6)


# -- VariationalAutoEncoderTransformer ---------------------------------------------------------


@pytest.mark.parametrize("holes", [0.0, 0.1])
def test_vae_learns_a_mixed_table_and_samples_categories(holes):
    frame = table(n=300, holes=holes)
    vae = small(VariationalAutoEncoderTransformer, max_iter=40).fit(frame)
    # The objective (nats per row) falls below that of the means and frequencies.
    layout = vae._layout()
    encoded = vae._table(frame, reset=False)[0]
    stats = ColumnStats.of(encoded)
    assert vae.loss_curve_[-1] < vae._constant_loss(stats, None, 1.0, layout)
    samples = vae.sample(20, random_state=0)
    assert (
        list(samples.columns) == list(frame.columns)
        and (samples.dtypes == vae._feature_dtypes).all()
    )
    assert set(samples["colour"]) <= {"red", "green", "blue"}
    assert np.isfinite(vae.score_samples(frame)).all()
