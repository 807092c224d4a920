"""kernelos OS core: kernel DAG, memory planner, scheduler, device image format, image builder."""
