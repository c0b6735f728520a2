"""Prefect tasks of tunelib (imported lazily; see tasks.iteration)."""
