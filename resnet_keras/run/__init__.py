"""The run contract every family shares: a run's config (`config`), the steps around its
training (`lifecycle`), its folder (`folders`), the resumable fit (`fit`), optimizers and
schedules (`optim`), its outputs (`publish`, `saving`, `tables`, `plots`), its record
(`provenance`), and the devices it runs on (`distribute`, `speedups`)."""
