"""A run directory and what keeps its work safe: one owner (lock, heartbeat), a decision what an existing
directory means (resume, finished, conflict), checkpoints written atomically, history kept across resumes,
and signals that stop a run at a safe point with a checkpoint."""
