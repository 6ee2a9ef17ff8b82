"""The network is exactly the specified stack."""

import pytest

from classifier.architecture import INPUT_SIZE, LAST_CONV_LAYER, build_model

EXPECTED = [
    # name, class, filters/units, kernel, activation, output shape
    ("conv1", "Conv2D", 32, (3, 3), "relu", (None, 148, 148, 32)),
    ("pool1", "MaxPooling2D", None, None, None, (None, 74, 74, 32)),
    ("conv2", "Conv2D", 64, (3, 3), "relu", (None, 72, 72, 64)),
    ("pool2", "MaxPooling2D", None, None, None, (None, 36, 36, 64)),
    ("conv3", "Conv2D", 128, (3, 3), "relu", (None, 34, 34, 128)),
    ("pool3", "MaxPooling2D", None, None, None, (None, 17, 17, 128)),
    ("flatten", "Flatten", None, None, None, (None, 17 * 17 * 128)),
    ("dropout1", "Dropout", None, None, None, (None, 17 * 17 * 128)),
    ("dense", "Dense", 128, None, "relu", (None, 128)),
    ("dropout2", "Dropout", None, None, None, (None, 128)),
    ("probability", "Dense", 1, None, "sigmoid", (None, 1)),
]


@pytest.fixture(scope="module")
def model():
    return build_model(seed=0)


def test_it_has_the_specified_layers_in_order(model):
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert [layer.name for layer in layers] == [row[0] for row in EXPECTED]
    for layer, (name, cls, width, kernel, activation, shape) in zip(layers, EXPECTED, strict=True):
        assert type(layer).__name__ == cls, name
        assert tuple(layer.output.shape) == shape, name
        if cls == "Conv2D":
            assert (layer.filters, tuple(layer.kernel_size)) == (width, kernel), name
        if cls == "Dense":
            assert layer.units == width, name
        if activation:
            assert layer.activation.__name__ == activation, name
        if cls == "MaxPooling2D":
            assert tuple(layer.pool_size) == (2, 2), name


def test_it_takes_150px_rgb_and_names_the_gradcam_layer(model):
    assert tuple(model.input_shape) == (None, INPUT_SIZE, INPUT_SIZE, 3)
    assert tuple(model.output_shape) == (None, 1)
    assert model.get_layer(LAST_CONV_LAYER).name == "conv3"


def test_dropout_is_half_and_inactive_at_inference(model):
    import numpy as np

    assert model.get_layer("dropout1").rate == model.get_layer("dropout2").rate == 0.5
    x = np.random.default_rng(0).random((2, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)
    first, second = model(x, training=False).numpy(), model(x, training=False).numpy()
    assert np.array_equal(first, second)
