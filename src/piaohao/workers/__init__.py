"""Background workers: each has run_once(); the runner loops them on threads."""
