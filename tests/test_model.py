"""build_model, preprocessing_fn and the three serving signatures, without a TFX run."""

from __future__ import annotations

import io

import numpy as np
import pytest

import modules  # noqa: F401
from modules import features
from modules.hparams import HParams


def test_hparams_round_trip_and_validation() -> None:
    hp = HParams(hidden_units_1=192, dropout=0.4, optimizer="sgd")
    assert HParams.from_dict(hp.to_dict()) == hp
    # KerasTuner-style dicts carry strings/floats and unknown keys.
    assert HParams.from_dict({"epochs": "3", "augment": "false", "tuner/trial_id": "7"}).epochs == 3
    assert HParams.from_dict({"augment": "false"}).augment is False
    with pytest.raises(ValueError, match="dropout"):
        HParams(dropout=1.5)
    with pytest.raises(ValueError, match="optimizer"):
        HParams(optimizer="rmsprop")


def test_build_model_shapes_and_parameters() -> None:
    from modules.model import build_model

    model = build_model(HParams(filters_1=4, filters_2=8, hidden_units_1=16, hidden_units_2=8))
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    out = model.predict(np.zeros((3, 28, 28, 1), np.float32), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    dense = {layer.name: layer for layer in model.layers}
    assert dense["hidden1"].units == 16 and dense["hidden2"].units == 8
    assert "aug_shift" in dense  # augmentation on by default, inert at inference
    assert "aug_shift" not in {layer.name for layer in build_model(HParams(augment=False)).layers}


def test_affine_augmentation_and_two_convs_per_block() -> None:
    from modules.model import build_model

    model = build_model(HParams(filters_1=4, filters_2=8, hidden_units_1=8, hidden_units_2=8,
                                augmentation="affine", convs_per_block=2))
    names = {layer.name for layer in model.layers}
    assert "aug_affine" in names
    assert {"conv1", "conv1_2", "conv2", "conv2_2", "bn1_2", "bn2_2"} <= names
    image = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)
    # inert at inference: the same input gives the same output every call
    np.testing.assert_allclose(model(image, training=False), model(image, training=False))
    one = build_model(HParams(filters_1=4, filters_2=8, hidden_units_1=8, hidden_units_2=8,
                              convs_per_block=1))
    assert "conv1_2" not in {layer.name for layer in one.layers}
    with pytest.raises(ValueError, match="augmentation must be one of"):
        HParams(augmentation="rotate")


def test_input_blur_is_fixed_and_lighter_while_training() -> None:
    from modules.model import TRAIN_BLUR_FRACTION, InputBlur, build_model

    model = build_model(HParams(filters_1=4, filters_2=4, hidden_units_1=8, hidden_units_2=8,
                                augment=False, input_blur=1.0))
    blur = model.get_layer("input_blur")
    assert not blur.trainable and blur.weights == []  # nothing for the optimizer to move
    dot = np.zeros((1, 28, 28, 1), np.float32)
    dot[0, 14, 14, 0] = 1.0
    centre = np.zeros((1, 28, 28, 1), np.float32)
    centre[0, 15, 15, 0] = 1.0  # input pixel 15 is the centre of output pixel 7 at stride 2
    served = blur(centre, training=False).numpy()[0, :, :, 0]
    trained = blur(centre, training=True).numpy()[0, :, :, 0]
    assert served.shape == trained.shape == (14, 14)  # 1 px and more: read at half resolution
    assert blur.train_sigma == 1.0 * TRAIN_BLUR_FRACTION
    # the same light spreads wider at serving: less of it stays on the dot's own pixel
    assert 0 < served[7, 7] < trained[7, 7] and served[7, 8] > trained[7, 8] > 0
    out = InputBlur(0.5)(dot).numpy()[0, :, :, 0]  # below 1 px: full resolution, blurred
    assert abs(out.sum() - 1.0) < 1e-5 and 0.5 < out[14, 14] < 0.7 and out[14, 15] > 0.05
    assert InputBlur.from_config(blur.get_config()).train_sigma == blur.train_sigma
    half = build_model(HParams(filters_1=4, filters_2=4, hidden_units_1=8, hidden_units_2=8,
                               input_blur=1.0, convs_per_block=2, augmentation="affine"))
    assert half.predict(dot, verbose=0).shape == (1, 10)
    plain = build_model(HParams(filters_1=4, filters_2=4, hidden_units_1=8, hidden_units_2=8,
                                augment=False, input_blur=0.0))
    assert "input_blur" not in {layer.name for layer in plain.layers}


def test_learning_rate_schedules() -> None:
    from modules.model import epoch_learning_rate, schedule_callbacks

    cosine = HParams(learning_rate=0.01, epochs=8)
    rates = [epoch_learning_rate(cosine, e) for e in range(8)]
    assert rates[0] == pytest.approx(0.01) and 0 < rates[-1] < 0.001
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True))
    constant = cosine.replace(lr_schedule="constant")
    assert {epoch_learning_rate(constant, e) for e in range(8)} == {0.01}
    assert schedule_callbacks(constant) == [] and len(schedule_callbacks(cosine)) == 1
    with pytest.raises(ValueError, match="lr_schedule"):
        HParams(lr_schedule="step")


def test_smoothed_sparse_crossentropy_matches_keras_one_hot_smoothing() -> None:
    import tensorflow as tf

    from modules.model import SmoothedSparseCrossentropy, build_model

    probabilities = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    labels = np.array([0, 2, 1])
    one_hot = tf.one_hot(labels, 3)
    for smoothing in (0.0, 0.1, 0.3):
        ours = SmoothedSparseCrossentropy(smoothing, 3)
        keras = tf.keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
        expected = float(keras(one_hot, probabilities))
        assert float(ours(labels, probabilities)) == pytest.approx(expected, rel=1e-6)
        assert float(ours(labels[:, None], probabilities)) == pytest.approx(expected, rel=1e-6)
    plain = float(tf.keras.losses.SparseCategoricalCrossentropy()(labels, probabilities))
    assert float(SmoothedSparseCrossentropy(0.0, 3)(labels, probabilities)) == pytest.approx(plain)
    # Smoothing penalises over-confidence: a sure, right answer no longer costs ~0.
    sure = tf.constant([[1.0 - 2e-7, 1e-7, 1e-7]])
    assert float(SmoothedSparseCrossentropy(0.1, 3)(np.array([0]), sure)) > 0.3
    clone = tf.keras.losses.deserialize(tf.keras.losses.serialize(SmoothedSparseCrossentropy(0.1, 3)))
    assert (clone.smoothing, clone.num_classes) == (0.1, 3)

    small = dict(filters_1=4, filters_2=8, hidden_units_1=16, hidden_units_2=8, augment=False)
    smoothed = build_model(HParams(**small, label_smoothing=0.1), num_classes=4)
    assert isinstance(smoothed.loss, SmoothedSparseCrossentropy) and smoothed.loss.num_classes == 4
    assert build_model(HParams(**small)).loss == "sparse_categorical_crossentropy"
    assert build_model(HParams(**small, label_smoothing=0.0)).loss == "sparse_categorical_crossentropy"


def test_model_learns_a_separable_problem() -> None:
    import tensorflow as tf

    from modules.model import build_model
    from tests.datagen import synthetic_images

    # Seeded: CI once saw 0.795 after 8 unseeded epochs. Chance is 0.1; the bar is 6x that.
    tf.keras.utils.set_random_seed(7)
    labels = np.repeat(np.arange(10), 20)
    x = synthetic_images(labels, seed=1)[..., None].astype(np.float32) / 255.0
    model = build_model(HParams(filters_1=8, filters_2=8, hidden_units_1=32, hidden_units_2=16,
                                epochs=1, augment=False, learning_rate=3e-3))
    history = model.fit(x, labels, epochs=12, batch_size=20, verbose=0)
    accuracy = history.history["sparse_categorical_accuracy"]
    assert accuracy[-1] > 0.6 and accuracy[-1] > accuracy[0]


def test_preprocessing_fn_scales_and_reshapes() -> None:
    import tensorflow as tf

    from modules.preprocessing import preprocessing_fn

    pixels = tf.constant([[0] * 783 + [255], [51] * 784], tf.int64)
    out = preprocessing_fn({"image": pixels, "label": tf.constant([[3], [7]], tf.int64)})
    image = out[features.IMAGE_XF_KEY].numpy()
    assert image.shape == (2, 28, 28, 1) and image.dtype == np.float32
    assert image[0, 27, 27, 0] == pytest.approx(1.0) and image[0, 0, 0, 0] == 0.0
    assert image[1].max() == pytest.approx(0.2)
    assert out[features.LABEL_XF_KEY].numpy().tolist() == [3, 7]


def test_preprocessing_fn_in_a_tft_graph(tmp_path) -> None:
    """preprocessing_fn runs under tf.Transform's own Beam implementation."""
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from modules.preprocessing import preprocessing_fn

    raw = [{"image": [i % 256] * 784, "label": [i % 10]} for i in range(4)]
    spec = {"image": tf.io.FixedLenFeature([784], tf.int64),
            "label": tf.io.FixedLenFeature([1], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        (transformed, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
    assert len(transformed) == 4
    assert np.asarray(transformed[3][features.IMAGE_XF_KEY]).reshape(-1)[0] == pytest.approx(3 / 255)
    assert transformed[2][features.LABEL_XF_KEY] == 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from modules.model import build_model
    from modules.signatures import export_serving_model

    # Label smoothing on (the budget's choice for large classes): the export carries the
    # compiled custom loss too, so the signatures below also show that it saves and loads.
    model = build_model(HParams(filters_1=4, filters_2=8, hidden_units_1=16, hidden_units_2=8,
                                augment=False, label_smoothing=0.1))
    path = tmp_path_factory.mktemp("sm") / "model"
    export_serving_model(model, str(path), class_names=features.FASHION_MNIST_CLASS_NAMES)
    return path, model


def test_three_signatures_agree_on_one_image(exported) -> None:
    import tensorflow as tf
    from PIL import Image

    from datasources.readers import to_tf_example
    from tests.datagen import synthetic_images

    path, model = exported
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "serving_examples", "serving_images"}
    image = synthetic_images([4], seed=3)[0]
    by_tensor = loaded.signatures["serving_default"](
        images=tf.constant(image[None, ..., None] / 255.0, tf.float32))["probabilities"].numpy()
    by_example = loaded.signatures["serving_examples"](
        examples=tf.constant([to_tf_example(image, 4)]))["probabilities"].numpy()
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    by_png = loaded.signatures["serving_images"](
        image_bytes=tf.constant([png.getvalue()]))["probabilities"].numpy()
    direct = model(image[None, ..., None].astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(by_tensor, direct, atol=1e-6)
    np.testing.assert_allclose(by_example, by_tensor, atol=1e-6)
    np.testing.assert_allclose(by_png, by_tensor, atol=1e-6)
    assert by_tensor.shape == (1, 10)


def test_images_signature_converts_colour_and_size(exported) -> None:
    import tensorflow as tf
    from PIL import Image

    path, _ = exported
    loaded = tf.saved_model.load(str(path))
    rgb = io.BytesIO()
    Image.new("RGB", (56, 56), (255, 255, 255)).save(rgb, format="JPEG")
    grey = io.BytesIO()
    Image.new("L", (28, 28), 255).save(grey, format="PNG")
    a = loaded.signatures["serving_images"](image_bytes=tf.constant([rgb.getvalue()]))["probabilities"]
    b = loaded.signatures["serving_images"](image_bytes=tf.constant([grey.getvalue()]))["probabilities"]
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-3)


def test_dictionary_travels_with_the_model(exported) -> None:
    from contracts.dictionary import read_model_dictionary

    path, _ = exported
    assert read_model_dictionary(str(path))[9] == "ankle boot"
    assert (path / "assets.extra" / "dict.tsv").read_text().startswith("label\ttag\n0\tt-shirt/top")


def test_parse_dictionary_accepts_iris_one_hot() -> None:
    text = "label\ttag\n1,0,0\tzero\n0,1,0\tone\n0,0,1\ttwo\n"
    assert features.parse_dictionary(text) == ["zero", "one", "two"]
    with pytest.raises(ValueError, match="line 2"):
        features.parse_dictionary("label\ttag\nbroken\n")


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"),
                                           ("PNG", "LA"), ("BMP", "L"), ("BMP", "RGB"),
                                           ("GIF", "L"), ("GIF", "P")])
def test_serving_images_decodes_every_listed_format(fmt: str, mode: str) -> None:
    # GIF and BMP were refused ("channels must be 0, 3 or 4 for BMP") though documented.
    import io

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from modules.signatures import decode_image_bytes

    pixels = np.zeros((28, 28), np.uint8)
    pixels[5:20, 10:15] = 255
    encoded = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(encoded, format=fmt)
    decoded = decode_image_bytes(tf.constant([encoded.getvalue()])).numpy()
    assert decoded.shape == (1, 28, 28, 1)
    np.testing.assert_allclose(decoded[0, ..., 0], pixels / 255.0, atol=1e-6)


def test_mixed_bfloat16_trains_in_bfloat16_and_exports_float32() -> None:
    import tensorflow as tf

    from modules.model import build_model, float32_twin

    hp = HParams(filters_1=4, filters_2=8, hidden_units_1=8, hidden_units_2=8,
                 precision="mixed_bfloat16", input_blur=1.0, convs_per_block=2,
                 augmentation="affine")
    model = build_model(hp)
    layers = {layer.name: layer for layer in model.layers}
    assert layers["conv1"].compute_dtype == "bfloat16"
    assert layers["conv1"].variable_dtype == "float32"  # weights stay float32
    assert layers[features.OUTPUT_PROBABILITIES].compute_dtype == "float32"  # the softmax too
    assert layers["input_blur"].compute_dtype == "float32"
    rng = np.random.default_rng(0)
    images = rng.random((16, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    model.fit(images, labels, epochs=1, batch_size=8, verbose=0)
    served = float32_twin(model, hp, 10)
    assert served is not model
    assert all(layer.compute_dtype == "float32" for layer in served.layers
               if hasattr(layer, "compute_dtype"))
    for ours, theirs in zip(model.get_weights(), served.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    mixed = model.predict(images, verbose=0)
    exact = served.predict(images, verbose=0)
    assert exact.dtype == np.float32
    np.testing.assert_allclose(exact, mixed, atol=0.05)  # bfloat16 keeps ~3 significant digits
    plain = build_model(HParams(filters_1=4, filters_2=8, hidden_units_1=8, hidden_units_2=8))
    assert float32_twin(plain, HParams(), 10) is plain  # float32 already: itself
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # nothing global changed


def test_grouped_steps_train_the_same_weights() -> None:
    """``steps_per_execution`` only groups the steps: same data, same seed, same weights."""
    import tensorflow as tf

    from modules.model import MAX_STEPS_PER_EXECUTION, build_model, execution_steps

    rng = np.random.default_rng(0)
    x = rng.random((40, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    hp = HParams(filters_1=4, filters_2=4, hidden_units_1=8, hidden_units_2=8, augment=False,
                 dropout=0.0)
    weights, initial = [], []
    for steps in (1, 5):
        tf.keras.utils.set_random_seed(3)
        model = build_model(hp, steps_per_execution=steps)
        initial.append(model.get_weights())
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for one, grouped in zip(*weights, strict=True):
        np.testing.assert_allclose(one, grouped, rtol=1e-4, atol=1e-6)
    for first, second in zip(*initial, strict=True):
        np.testing.assert_array_equal(first, second)  # the same start...
    assert not np.allclose(initial[0][0], weights[0][0])  # ...and training moved the weights
    assert execution_steps(26) == 26  # a small epoch in one call
    assert execution_steps(375) == MAX_STEPS_PER_EXECUTION
    assert execution_steps(0) == 1
