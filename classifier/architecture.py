"""The CNN: three conv blocks and a small dense head, P(parasitized) from a sigmoid.

Input 150x150x3 in [0, 1]. Dropout before the dense layers is active only in training (the model
card says so); at inference the network is exactly the specified stack.
"""

INPUT_SIZE = 150
LAST_CONV_LAYER = "conv3"


def build_model(learning_rate: float = 1e-3, dropout: float = 0.5, seed: int | None = None):
    """Build and compile the network. Imports Keras lazily: the web process never loads it."""
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(128, 3, activation="relu", name=LAST_CONV_LAYER)(x)
    x = layers.MaxPooling2D(2, name="pool3")(x)
    x = layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout2")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(inputs, outputs, name="malaria_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    return model
