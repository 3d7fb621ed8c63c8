"""The data every family shares: CIFAR and image folders (`cifar`, `image_folders`), and
the tf.data input pipeline of the classifiers (`pipeline`)."""
