"""What the tests share: tiny models, tiny data, runs of the real commands, the SLURM and disk set-ups."""
