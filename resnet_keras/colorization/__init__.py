"""Image colorization: colour maths (`color`), the autoencoder and U-Net (`models`), their
data and inference (`data`), the runs (`task`), metrics, the linear probe and the report."""
