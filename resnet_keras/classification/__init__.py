"""Image classification: the CIFAR ResNets and PlainNets (`models`), a run's settings
(`config`) and the run (`task`), its metrics and report, the converted reference
networks (`pretrained`, `conversion`, `torch_checkpoint`, `weights/`)."""
