"""How trials run: the Slots seam, the local process pool and its workers' start-up, and
run_trial, the one function every executor runs."""
