"""The download engine: plan, claims, scheduler, policies, sources, probe, workers, transfer."""
